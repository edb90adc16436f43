"""A blocking ``RemoteSigner``: one transit call per HMAC or signature, no batching.

    >>> key = RemoteKey("openbao", "keybroker-bn-1a2b", "hmac").bind(DirectSigner(bao, "transit"))
    >>> binance.PROFILE.sign(request, credential.replace(secret=key))

For tools and tests that sign outside a gateway; the gateway uses
``batcher.ThreadSigner``, which batches.
"""

from __future__ import annotations

from collections.abc import Sequence

from keybroker.openbao.client import OpenBao
from keybroker.openbao.transit import batch_body, batch_results, hmac_path, sign_path


class DirectSigner:
    """Signs through ``bao`` (whose token must allow the transit paths) one call at a time."""

    def __init__(self, bao: OpenBao, mount: str) -> None:
        self._bao = bao
        self._mount = mount

    def __repr__(self) -> str:
        return f"DirectSigner({self._bao.addr!r}, mount={self._mount!r})"

    def hmac(self, key_name: str, algorithm: str, message: bytes) -> bytes:
        data = self._bao.write(hmac_path(self._mount, key_name, algorithm), batch_body([message]))
        return _one(batch_results(data.get("data"), 1, "hmac"))

    def sign(self, key_name: str, key_type: str, message: bytes) -> bytes:
        data = self._bao.write(sign_path(self._mount, key_name), batch_body([message], key_type))
        return _one(batch_results(data.get("data"), 1, "signature", urlsafe=key_type == "es256"))


def _one(results: Sequence[bytes | Exception]) -> bytes:
    result = results[0]
    if isinstance(result, Exception):
        raise result
    return result
