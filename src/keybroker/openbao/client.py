"""HTTP to OpenBao: one translation of its answers into keybroker's errors, sync and async.

    >>> with OpenBao("http://127.0.0.1:8200", Secret(admin_token)) as bao:
    ...     bao.write("sys/policies/acl/keybroker-gw", {"policy": hcl})
    >>> data = await AsyncOpenBao(addr).write("transit/hmac/k/sha2-256", body, token)

``OpenBao`` (blocking, httpx) serves the CLI: setup, key import and
generation, with an operator's token. ``AsyncOpenBao`` serves the gateway:
unwrap, log in, renew, sign, on ``wire.Wire``'s kept-alive connections (a
signature's round trip is on every order's path, see wire.py for why not
httpx). Both send the token in ``X-Vault-Token`` and never put it, a
request body or an answer's data into an error message: errors carry the
path, the status and OpenBao's own one-line reason.

The address must be https, or plain http to a loopback address (a dev server
on this machine): an operator token or a secret id must not cross a network
in clear.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from keybroker.errors import InvalidInput, KeyStoreError, KeyStoreUnavailable
from keybroker.openbao.wire import Wire
from keybroker.secret import Secret

DEFAULT_TIMEOUT_S = 5.0
# An operator's first import makes transit generate its RSA-4096 wrapping key:
# seconds on a busy machine, which is no reason to give up.
OPERATOR_TIMEOUT_S = 30.0


def check_addr(addr: str) -> str:
    """``addr`` without a trailing '/', if it is https or http to loopback; InvalidInput else."""
    # The vault's own rule for exchange base URLs is the same rule, for the same reason.
    from keybroker.vault.records import check_base_url

    try:
        check_base_url(addr)
    except InvalidInput:
        raise InvalidInput(
            "the OpenBao address must be https://host[:port], or http:// to a loopback address"
        ) from None
    return addr.rstrip("/")


def _verify(ca_cert: Path | None) -> bool | str:
    return True if ca_cert is None else str(ca_cert)


def _headers(token: Secret | None, wrap_ttl: str | None = None) -> dict[str, str]:
    headers = {"X-Vault-Request": "true"}
    if token is not None:
        headers["X-Vault-Token"] = token.reveal_text()
    if wrap_ttl is not None:
        headers["X-Vault-Wrap-TTL"] = wrap_ttl
    return headers


def _answer(path: str, status: int, content: bytes) -> dict[str, Any]:
    """The JSON body of a success ({} for 204); KeyStoreError/Unavailable for anything else."""
    if status == 204:
        return {}
    if 200 <= status < 300:
        try:
            body = json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise KeyStoreError(
                f"OpenBao answered {path} with something that is not JSON"
            ) from None
        if not isinstance(body, dict):
            raise KeyStoreError(f"OpenBao answered {path} with something that is not an object")
        return body
    reason = _reason(content)
    if status >= 500 or status == 429:
        # 503: sealed or standby; 5xx: its own trouble. Either way nothing was signed.
        raise KeyStoreUnavailable(f"OpenBao answered {status} to {path}: {reason}")
    raise KeyStoreError(f"OpenBao refused {path} ({status}): {reason}")


def _reason(content: bytes) -> str:
    try:
        errors = json.loads(content).get("errors")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        errors = None
    if isinstance(errors, list) and errors:
        # OpenBao's reasons are short sentences ("permission denied"); a long
        # one is cut rather than echoed whole.
        return str(errors[0]).splitlines()[0][:160] if str(errors[0]) else "no reason given"
    return "no reason given"


def _unreachable(addr: str, path: str, exc: BaseException) -> KeyStoreUnavailable:
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return KeyStoreUnavailable(f"OpenBao at {addr} did not answer {path} in time")
    return KeyStoreUnavailable(f"OpenBao at {addr} could not be reached")


class OpenBao:
    """A blocking client for an operator's work (setup, import, generate)."""

    def __init__(
        self,
        addr: str,
        token: Secret | None,
        *,
        ca_cert: Path | None = None,
        timeout_s: float = OPERATOR_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.addr = check_addr(addr)
        self._token = token
        self._client = httpx.Client(
            base_url=self.addr + "/v1/",
            verify=_verify(ca_cert),
            timeout=timeout_s,
            follow_redirects=False,
            transport=transport,
        )

    def __enter__(self) -> OpenBao:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"OpenBao({self.addr!r})"

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, object] | None = None,
        *,
        token: Secret | None = None,
        wrap_ttl: str | None = None,
    ) -> dict[str, Any]:
        """One call; ``token`` replaces the client's token for it (unwrapping uses that)."""
        try:
            response = self._client.request(
                method,
                path,
                json=body,
                headers=_headers(token or self._token, wrap_ttl),
            )
        except httpx.TransportError as exc:
            raise _unreachable(self.addr, path, exc) from None
        return _answer(path, response.status_code, response.content)

    def read(self, path: str) -> dict[str, Any]:
        return self.request("GET", path)

    def write(
        self, path: str, body: Mapping[str, object] | None = None, **options: Any
    ) -> dict[str, Any]:
        return self.request("POST", path, body or {}, **options)


class AsyncOpenBao:
    """The gateway's client: kept-alive connections (``wire.Wire``), a token given per call."""

    def __init__(
        self,
        addr: str,
        *,
        ca_cert: Path | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.addr = check_addr(addr)
        self.wire = Wire(self.addr, ca_cert=ca_cert, timeout_s=timeout_s)

    async def aclose(self) -> None:
        await self.wire.aclose()

    def __repr__(self) -> str:
        return f"AsyncOpenBao({self.addr!r})"

    async def write(
        self, path: str, body: Mapping[str, object], token: Secret | None
    ) -> dict[str, Any]:
        """POST ``body`` to ``path``; KeyStoreUnavailable when OpenBao does not answer."""
        content = json.dumps(body, separators=(",", ":")).encode("ascii")
        try:
            status, answer = await self.wire.post("/v1/" + path, content, _headers(token))
        except OSError as exc:  # refused, reset, closed, or the deadline (TimeoutError)
            raise _unreachable(self.addr, path, exc) from None
        except ValueError:  # an answer that is not HTTP/1.x: nothing was signed for us
            raise KeyStoreUnavailable(
                f"OpenBao at {self.addr} gave no usable answer to {path}"
            ) from None
        return _answer(path, status, answer)
