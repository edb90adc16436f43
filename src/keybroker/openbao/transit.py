"""OpenBao's transit engine as data: paths, request bodies, answers and the gateway's policy.

    >>> hmac_path("transit", "keybroker-bn-1a2b", "sha256")
    'transit/hmac/keybroker-bn-1a2b/sha2-256'
    >>> policy_hcl("transit", [PolicyKey("keybroker-bn-1a2b", "hmac", "sha256")])

Nothing here does I/O: ``client.py`` sends what these functions build, and
reads answers with ``parse_hmac``/``parse_signature``. A transit answer is
``vault:v<version>:<base64>``; the signature of an ECDSA key asked with
``marshaling_algorithm=jws`` is base64url of raw ``r‖s``, which is what JWS
(ES256) wants, so no DER is ever decoded here.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from keybroker.errors import InvalidInput, KeyStoreError

STORE = "openbao"
DEFAULT_MOUNT = "transit"

# hmac.digest() names -> transit's names.
TRANSIT_HASH = {"sha256": "sha2-256", "sha384": "sha2-384", "sha512": "sha2-512"}
# keybroker key types -> transit key types.
TRANSIT_KEY_TYPE = {"ed25519": "ed25519", "es256": "ecdsa-p256"}

_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}")
_ANSWER = re.compile(r"vault:v[0-9]+:([A-Za-z0-9+/=_-]+)")


@dataclass(frozen=True, slots=True)
class PolicyKey:
    """One key a gateway may use: its transit name, type and (for HMAC keys) hash."""

    key_name: str
    key_type: str
    algorithm: str | None = None

    def __post_init__(self) -> None:
        check_key_name(self.key_name)
        if self.key_type == "hmac" and self.algorithm not in TRANSIT_HASH:
            raise InvalidInput(f"an hmac key needs one of: {', '.join(TRANSIT_HASH)}")
        if self.key_type != "hmac" and self.key_type not in TRANSIT_KEY_TYPE:
            raise InvalidInput(f"no transit key type for {self.key_type}")

    def path(self, mount: str) -> str:
        if self.key_type == "hmac":
            assert self.algorithm is not None
            return hmac_path(mount, self.key_name, self.algorithm)
        return sign_path(mount, self.key_name)


def check_key_name(name: str) -> None:
    """Transit key names here are letters, digits, '-' and '_' (they go into URL paths)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput("a transit key name is 1-128 letters, digits, '-' or '_'")


def check_mount(mount: str) -> None:
    """A mount path of one or more name segments, without leading or trailing '/'."""
    if not mount or not all(_NAME.fullmatch(part) for part in mount.split("/")):
        raise InvalidInput("the transit mount is a path like 'transit' or 'keybroker/transit'")


def new_key_name(credential: str) -> str:
    """A fresh transit key name for a credential: readable, and never reused."""
    base = re.sub(r"[^A-Za-z0-9_-]", "-", credential)[:64]
    return f"keybroker-{base}-{secrets.token_hex(4)}"


def hmac_path(mount: str, key_name: str, algorithm: str) -> str:
    try:
        return f"{mount}/hmac/{key_name}/{TRANSIT_HASH[algorithm]}"
    except KeyError:
        raise InvalidInput(f"transit has no HMAC {algorithm!r}") from None


def sign_path(mount: str, key_name: str) -> str:
    return f"{mount}/sign/{key_name}"


def batch_body(messages: Sequence[bytes], key_type: str | None = None) -> dict[str, object]:
    """The JSON body of one transit hmac or sign call for ``messages`` (one or many)."""
    body: dict[str, object]
    if len(messages) == 1:
        body = {"input": _b64(messages[0])}
    else:
        body = {"batch_input": [{"input": _b64(message)} for message in messages]}
    if key_type == "es256":
        body["hash_algorithm"] = "sha2-256"
        body["marshaling_algorithm"] = "jws"
    return body


def batch_results(
    data: object, count: int, field: str, *, urlsafe: bool = False
) -> list[bytes | KeyStoreError]:
    """Each message's raw HMAC or signature from a transit answer, or the error OpenBao gave it.

    ``urlsafe``: the values are unpadded base64url (JWS marshaling), not base64.
    """
    if not isinstance(data, dict):
        raise KeyStoreError("OpenBao answered without data")
    if count == 1 and "batch_results" not in data:
        return [_decode_answer(data, field, urlsafe)]
    results = data.get("batch_results")
    if not isinstance(results, list) or len(results) != count:
        raise KeyStoreError("OpenBao answered a batch with the wrong number of results")
    return [_decode_answer(item, field, urlsafe) for item in results]


def _decode_answer(item: object, field: str, urlsafe: bool) -> bytes | KeyStoreError:
    if not isinstance(item, dict):
        return KeyStoreError("OpenBao answered with something that is not a result")
    if item.get("error"):
        return KeyStoreError(f"OpenBao refused to sign: {_short(str(item['error']))}")
    match = _ANSWER.fullmatch(str(item.get(field, "")))
    if match is None:
        return KeyStoreError(f"OpenBao's answer has no {field}")
    text = match.group(1)
    try:
        if urlsafe:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return KeyStoreError(f"OpenBao's {field} is not base64")


def public_key_of(data: object, key_type: str) -> str:
    """The newest version's public key from ``GET transit/keys/<name>`` (raw base64 or PEM)."""
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, dict) or not keys:
        raise KeyStoreError("OpenBao did not return the key's public half")
    newest = keys[max(keys, key=lambda version: int(version))]
    public = newest.get("public_key") if isinstance(newest, dict) else None
    if not isinstance(public, str) or not public:
        raise KeyStoreError(f"OpenBao returned no public key for this {key_type} key")
    return public


def policy_paths(mount: str, keys: Iterable[PolicyKey]) -> list[str]:
    """Every path the gateway's token may use, sorted, once each."""
    return sorted({key.path(mount) for key in keys})


RENEW_SELF = "auth/token/renew-self"


def policy_hcl(mount: str, keys: Iterable[PolicyKey]) -> str:
    """The gateway's policy: ``update`` on exactly its keys' hmac and sign paths.

    The token also renews itself (``auth/token/renew-self``): its AppRole is
    made without OpenBao's default policy, so without this line it could not.
    Nothing else is granted: no read of a key, no export, no config, no list.
    """
    lines = [
        "# keybroker gateway: sign with its own keys, nothing else.",
        "# Written by `keybroker openbao setup`; rerun it after adding or removing keys.",
    ]
    for path in policy_paths(mount, keys):
        lines.append(f'path {json.dumps(path)} {{\n  capabilities = ["update"]\n}}')
    lines.append(f'path {json.dumps(RENEW_SELF)} {{\n  capabilities = ["update"]\n}}')
    return "\n\n".join(lines) + "\n"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _short(text: str) -> str:
    # OpenBao's reasons are short sentences; a long one is cut, never echoed whole.
    return text.splitlines()[0][:160] if text else "no reason given"
