"""OpenBao as data: the gateway's policy, batch bodies and answers, connection file, vault row."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from keybroker.crypto.kdf import Argon2idParams
from keybroker.crypto.keys import RemoteKey
from keybroker.errors import InvalidInput, KeyStoreError, SigningError
from keybroker.openbao import Connection, PolicyKey, load, policy_hcl, save, spend_secret_id
from keybroker.openbao.transit import batch_body, batch_results, new_key_name, policy_paths
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial, Vault

KEYS = [
    PolicyKey("keybroker-bn-00000001", "hmac", "sha256"),
    PolicyKey("keybroker-kr-00000002", "hmac", "sha512"),
    PolicyKey("keybroker-ed-00000003", "ed25519"),
]


def test_policy_allows_exactly_the_keys_paths_and_renewal() -> None:
    hcl = policy_hcl("transit", KEYS)
    paths = [line.split('"')[1] for line in hcl.splitlines() if line.startswith("path ")]
    assert paths == [
        "transit/hmac/keybroker-bn-00000001/sha2-256",
        "transit/hmac/keybroker-kr-00000002/sha2-512",
        "transit/sign/keybroker-ed-00000003",
        "auth/token/renew-self",
    ]
    assert hcl.count('capabilities = ["update"]') == 4
    assert "*" not in hcl and "read" not in hcl.replace("# ", "")  # no glob, no read
    assert policy_paths("transit", [*KEYS, KEYS[0]]) == sorted(set(policy_paths("transit", KEYS)))


def test_policy_keys_are_checked() -> None:
    with pytest.raises(InvalidInput):
        PolicyKey("keybroker-x", "hmac")  # an hmac key needs its hash
    with pytest.raises(InvalidInput):
        PolicyKey("../sys/policies", "ed25519")
    assert new_key_name("bn main").startswith("keybroker-bn-main-")
    assert new_key_name("bn") != new_key_name("bn")


def test_batch_bodies_and_answers() -> None:
    assert batch_body([b"a"]) == {"input": "YQ=="}
    assert batch_body([b"a", b"b"]) == {"batch_input": [{"input": "YQ=="}, {"input": "Yg=="}]}
    assert batch_body([b"a"], "es256")["marshaling_algorithm"] == "jws"
    mac = base64.b64encode(b"\x01" * 32).decode()
    assert batch_results({"hmac": f"vault:v1:{mac}"}, 1, "hmac") == [b"\x01" * 32]
    results = batch_results(
        {"batch_results": [{"hmac": f"vault:v3:{mac}"}, {"error": "permission denied"}]},
        2,
        "hmac",
    )
    assert results[0] == b"\x01" * 32
    assert isinstance(results[1], KeyStoreError) and "permission denied" in str(results[1])
    jws = base64.urlsafe_b64encode(b"\xfb" * 64).rstrip(b"=").decode()
    assert batch_results({"signature": f"vault:v1:{jws}"}, 1, "signature", urlsafe=True) == [
        b"\xfb" * 64
    ]
    with pytest.raises(KeyStoreError):
        batch_results({"batch_results": []}, 2, "hmac")
    assert isinstance(batch_results({"hmac": "plain"}, 1, "hmac")[0], KeyStoreError)


def test_connection_file_is_private_and_strict(tmp_path: Path) -> None:
    connection = Connection(
        "http://127.0.0.1:8200", "transit", "gw1", "role-id-not-real", "wrap-token-not-real"
    )
    path = save(tmp_path, connection)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load(tmp_path) == connection
    assert "wrap-token-not-real" not in repr(connection)
    assert "role-id-not-real" not in repr(connection)
    spent = spend_secret_id(tmp_path, connection)
    assert spent.wrapped_secret_id is None and load(tmp_path) == spent
    assert load(tmp_path / "elsewhere") is None
    path.write_text(json.dumps({**json.loads(path.read_text()), "extra": 1}))
    with pytest.raises(InvalidInput, match="'extra'"):
        load(tmp_path)
    with pytest.raises(InvalidInput, match="https"):
        Connection("http://bao.example.com:8200", "transit", "gw1", "r")


def test_vault_keeps_only_the_name_of_a_remote_key(tmp_path: Path) -> None:
    kdf = Argon2idParams(memory_kib=64 * 1024, iterations=1, lanes=1)
    vault = Vault.create(tmp_path / "vault.db", Secret("test passphrase not real"), kdf=kdf)
    remote = RemoteKey("openbao", "keybroker-bn-0000000a", "hmac")
    vault.add("bn", "binance", KeyMaterial("test-api-key-not-real", remote))
    vault.add(
        "okx", "okx", KeyMaterial("test-okx-key-not-real", RemoteKey("openbao", "k2", "hmac"),
                                  Secret("test-okx-passphrase-not-real"))
    )  # fmt: skip
    credential = vault.credential("bn")
    assert credential.secret == remote and isinstance(credential.secret, RemoteKey)
    assert vault.credential("bn").secret == remote  # the cached copy too
    okx = vault.credential("okx")
    assert okx.passphrase is not None and okx.passphrase.reveal() == b"test-okx-passphrase-not-real"
    assert all(result.ok for result in vault.verify())
    vault.close()
    with pytest.raises(InvalidInput):
        KeyMaterial("k", RemoteKey("openbao", "k", "ed25519"), key_type="hmac")
    with pytest.raises(SigningError):
        credential.secret.reveal()
