"""What an operator does in OpenBao: the transit mount, keys in, the gateway's policy and AppRole.

    >>> with OpenBao(addr, admin_token) as bao:
    ...     ensure_transit(bao, "transit")
    ...     import_hmac_key(bao, "transit", "keybroker-bn-1a2b", secret_bytes)
    ...     result = write_gateway_access(bao, "transit", "keybroker-gw1", keys)

Every key is made non-exportable, without plaintext backup, and imported
keys cannot be rotated from outside: the secret goes in once and signing is
all that ever comes out. The gateway's AppRole gets exactly one policy
(``transit.policy_hcl``) and not OpenBao's default one; its secret id is
single use, and handed out only response-wrapped.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from keybroker.crypto.keys import (
    check_public_pem,
    ed25519_public_pem,
    hmac_import_key,
    wrap_for_import,
)
from keybroker.errors import KeyStoreError
from keybroker.openbao.client import OpenBao
from keybroker.openbao.transit import (
    TRANSIT_KEY_TYPE,
    PolicyKey,
    check_key_name,
    check_mount,
    policy_hcl,
    public_key_of,
)

DEFAULT_WRAP_TTL = "1h"
DEFAULT_TOKEN_PERIOD = "1h"  # noqa: S105 - a duration, not a password


@dataclass(frozen=True, slots=True)
class GatewayAccess:
    """What ``write_gateway_access`` made: policy (as HCL), role id, wrapped secret id."""

    policy_name: str
    policy: str
    role: str
    role_id: str
    wrapped_secret_id: str

    def __repr__(self) -> str:
        return f"GatewayAccess(policy_name={self.policy_name!r}, role={self.role!r})"


def ensure_transit(bao: OpenBao, mount: str) -> bool:
    """Mount the transit engine at ``mount`` unless it is there; True when it was mounted now."""
    check_mount(mount)
    mounts = bao.read("sys/mounts")
    table = mounts.get("data", mounts)
    existing = table.get(mount + "/") if isinstance(table, dict) else None
    if isinstance(existing, dict):
        if existing.get("type") != "transit":
            raise KeyStoreError(f"{mount}/ is mounted in OpenBao, but not as transit")
        return False
    bao.write(f"sys/mounts/{mount}", {"type": "transit", "description": "keybroker signing keys"})
    return True


def import_hmac_key(bao: OpenBao, mount: str, key_name: str, key: bytes) -> None:
    """Import an exchange's HMAC key (padded to 32 bytes) into transit, wrapped (BYOK).

    ``key`` is what the exchange keys its HMAC with (``ExchangeProfile.hmac_key``).
    """
    check_key_name(key_name)
    wrapping = bao.read(f"{mount}/wrapping_key").get("data", {}).get("public_key")
    if not isinstance(wrapping, str):
        raise KeyStoreError("OpenBao did not give its wrapping key")
    ciphertext = wrap_for_import(wrapping.encode("ascii"), hmac_import_key(key))
    bao.write(
        f"{mount}/keys/{key_name}/import",
        {
            "ciphertext": ciphertext,
            "type": "hmac",
            "hash_function": "SHA256",  # of the RSA-OAEP step, not of the HMAC
            "exportable": False,
            "allow_plaintext_backup": False,
            "allow_rotation": False,
        },
    )


def generate_key(bao: OpenBao, mount: str, key_name: str, key_type: str) -> str:
    """Create a non-exportable ``ed25519`` or ``es256`` key in transit; its public key as PEM."""
    check_key_name(key_name)
    if key_type not in TRANSIT_KEY_TYPE:
        raise KeyStoreError(f"OpenBao keys made by keybroker are ed25519 or es256, not {key_type}")
    bao.write(
        f"{mount}/keys/{key_name}",
        {"type": TRANSIT_KEY_TYPE[key_type], "exportable": False, "allow_plaintext_backup": False},
    )
    return public_key_pem(bao, mount, key_name, key_type)


def public_key_pem(bao: OpenBao, mount: str, key_name: str, key_type: str) -> str:
    """The public half of a transit key, as PEM (what the exchange is given)."""
    public = public_key_of(bao.read(f"{mount}/keys/{key_name}").get("data"), key_type)
    if key_type == "ed25519":
        try:
            return ed25519_public_pem(base64.b64decode(public, validate=True))
        except (binascii.Error, ValueError):
            raise KeyStoreError("OpenBao's Ed25519 public key is not base64") from None
    return check_public_pem(public, key_type)


def key_exists(bao: OpenBao, mount: str, key_name: str) -> bool:
    try:
        bao.read(f"{mount}/keys/{key_name}")
    except KeyStoreError as error:
        if "(404)" in str(error):
            return False
        raise
    return True


def write_gateway_access(
    bao: OpenBao,
    mount: str,
    role: str,
    keys: Sequence[PolicyKey],
    *,
    wrap_ttl: str = DEFAULT_WRAP_TTL,
    token_period: str = DEFAULT_TOKEN_PERIOD,
) -> GatewayAccess:
    """The gateway's policy and AppRole, and a fresh single-use secret id, response-wrapped.

    Rerunning it rewrites the policy (a running gateway's token sees the new
    key list at once: OpenBao reads policies by name) and issues one more
    secret id; earlier unused ones stay valid until their TTL.
    """
    check_key_name(role)
    hcl = policy_hcl(mount, keys)
    bao.request("PUT", f"sys/policies/acl/{role}", {"policy": hcl})
    auths = bao.read("sys/auth")
    table = auths.get("data", auths)
    if not (isinstance(table, dict) and "approle/" in table):
        bao.write("sys/auth/approle", {"type": "approle"})
    bao.write(
        f"auth/approle/role/{role}",
        {
            "token_policies": [role],
            "token_no_default_policy": True,
            "token_period": token_period,
            "token_type": "service",
            "secret_id_num_uses": 1,
            "secret_id_ttl": "24h",
            "bind_secret_id": True,
        },
    )
    role_id = bao.read(f"auth/approle/role/{role}/role-id").get("data", {}).get("role_id")
    wrapped = bao.write(f"auth/approle/role/{role}/secret-id", {}, wrap_ttl=wrap_ttl)
    wrap_info = wrapped.get("wrap_info")
    token = wrap_info.get("token") if isinstance(wrap_info, dict) else None
    if not isinstance(role_id, str) or not isinstance(token, str):
        raise KeyStoreError("OpenBao did not return the role id and a wrapped secret id")
    return GatewayAccess(role, hcl, role, role_id, token)
