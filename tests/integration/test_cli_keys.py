"""``keybroker keys …`` end to end: every way a key gets in, and every way it is shown."""

from __future__ import annotations

import base64
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from cli_harness import BINANCE_ENV, OKX_ENV, PASSPHRASE, Kb, StartTerminal
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from keybroker.model import Credential
from keybroker.secret import Secret
from keybroker.vault import Vault


def stored(kb: Kb, name: str) -> Credential:
    """What the vault really holds, read through the vault API rather than the CLI."""
    with Vault.open(kb.vault_path) as opened:
        opened.unlock(Secret(PASSPHRASE))
        return opened.credential(name)


def ed25519_pem_file(directory: Path) -> tuple[Path, str]:
    """A throwaway Ed25519 key made for this test run."""
    pem = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    path = directory / "test-key.pem"
    path.write_text(pem)
    path.chmod(0o600)
    return path, pem


# -- add ---------------------------------------------------------------------------------


def test_add_from_env_stores_exactly_what_was_given(vault: Kb) -> None:
    run = vault("keys", "add", "b1", "--exchange", "binance", "--from-env", env=BINANCE_ENV)
    assert "Stored b1: binance testnet, scopes read, hmac key FAKE…0001." in run.stdout
    assert "unset BINANCE_API_KEY and BINANCE_API_SECRET" in run.stderr
    credential = stored(vault, "b1")
    assert credential.api_key == BINANCE_ENV["BINANCE_API_KEY"]
    assert credential.secret == Secret(BINANCE_ENV["BINANCE_API_SECRET"])
    assert credential.passphrase is None


def test_add_okx_from_env_keeps_the_passphrase(vault: Kb) -> None:
    vault(
        *("keys", "add", "o1", "-e", "okx", "--scope", "read", "--scope", "trade"),
        "--from-env",
        env=OKX_ENV,
    )
    credential = stored(vault, "o1")
    assert credential.passphrase == Secret(OKX_ENV["OKX_PASSPHRASE"])
    record = json.loads(vault("keys", "show", "o1", "--json").stdout)
    assert record["scopes"] == ["read", "trade"]


@pytest.mark.parametrize(
    ("exchange", "env", "missing"),
    [
        ("binance", {"BINANCE_API_KEY": "FAKEkey00000001"}, "BINANCE_API_SECRET"),
        ("binance", {"BINANCE_API_SECRET": "FAKEsecret0001"}, "BINANCE_API_KEY"),
        ("okx", {k: v for k, v in OKX_ENV.items() if k != "OKX_PASSPHRASE"}, "OKX_PASSPHRASE"),
        ("coinbase-exchange", {"COINBASE_EXCHANGE_API_KEY": "FAKEkey01"}, "COINBASE_EXCHANGE"),
    ],
)
def test_from_env_names_the_missing_variable_never_a_value(
    vault: Kb, exchange: str, env: dict[str, str], missing: str
) -> None:
    run = vault("keys", "add", "x", "--exchange", exchange, "--from-env", env=env, expect=1)
    assert run.stderr.startswith(f"keybroker: {missing}")
    assert run.stderr.endswith("is not set\n")
    for value in env.values():
        assert value not in run.stderr


def test_add_from_stdin_json(vault: Kb) -> None:
    document = {
        "api_key": OKX_ENV["OKX_API_KEY"],
        "secret": OKX_ENV["OKX_API_SECRET"],
        "passphrase": OKX_ENV["OKX_PASSPHRASE"],
    }
    vault("keys", "add", "o1", "--exchange", "okx", "--stdin", input=json.dumps(document))
    assert stored(vault, "o1").secret == Secret(OKX_ENV["OKX_API_SECRET"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"api_key": "FAKEkey0001", "secret": "FAKE', "standard input is not valid JSON"),
        ('["FAKEkey0001"]', "standard input must be one JSON object"),
        ('{"api_key": "FAKEkey0001", "FAKEsecret99": "x"}', "unknown field in the JSON"),
        ('{"api_key": "FAKEkey0001"}', "JSON field 'secret' (or 'private_key_pem') is missing"),
        ('{"api_key": "FAKEkey0001", "secret": 5}', "JSON field 'secret' must be a string"),
    ],
)
def test_stdin_json_errors_are_one_line_and_quote_nothing(
    vault: Kb, text: str, message: str
) -> None:
    run = vault("keys", "add", "x", "-e", "binance", "--stdin", input=text, expect=1)
    assert run.stderr.startswith(f"keybroker: {message}")
    assert len(run.stderr.splitlines()) == 1
    assert "FAKE" not in run.stderr


def test_add_interactive_asks_for_the_key_and_hides_the_secret(vault: Kb) -> None:
    run = vault(
        *("keys", "add", "o1", "--exchange", "okx"),
        input=f"{OKX_ENV['OKX_API_KEY']}\n{OKX_ENV['OKX_API_SECRET']}\n{OKX_ENV['OKX_PASSPHRASE']}\n",
    )
    assert "okx API key" in run.stderr
    assert "okx API secret (not shown)" in run.stderr
    assert "okx API passphrase" in run.stderr
    assert OKX_ENV["OKX_API_SECRET"] not in run.text
    assert OKX_ENV["OKX_PASSPHRASE"] not in run.text
    assert stored(vault, "o1").passphrase == Secret(OKX_ENV["OKX_PASSPHRASE"])


def test_add_interactive_does_not_ask_binance_for_a_passphrase(vault: Kb) -> None:
    run = vault(
        "keys", "add", "b1", "-e", "binance",
        input=f"{BINANCE_ENV['BINANCE_API_KEY']}\n{BINANCE_ENV['BINANCE_API_SECRET']}\n",
    )  # fmt: skip
    assert "passphrase" not in run.stderr.replace("Vault passphrase", "")


def test_add_asks_for_the_vault_passphrase_when_no_other_source(vault: Kb) -> None:
    vault(
        *("keys", "add", "b1", "-e", "binance", "--from-env"),
        input=f"{PASSPHRASE}\n",
        env={**BINANCE_ENV, "KEYBROKER_PASSPHRASE": None},
    )
    assert stored(vault, "b1").api_key == BINANCE_ENV["BINANCE_API_KEY"]


def test_add_a_pem_key_from_a_file_prompt(vault: Kb, tmp_path: Path) -> None:
    path, pem = ed25519_pem_file(tmp_path)
    vault(
        *("keys", "add", "b-ed", "-e", "binance", "--key-type", "ed25519"),
        input=f"FAKEed25519ApiKey0001\n{path}\n",
    )
    credential = stored(vault, "b-ed")
    assert credential.key_type == "ed25519"
    assert credential.secret.reveal_text().strip() == pem.strip()


def test_add_a_pem_key_from_env_works_out_the_key_type(vault: Kb, tmp_path: Path) -> None:
    path, _ = ed25519_pem_file(tmp_path)
    env = {"BINANCE_API_KEY": "FAKEed25519ApiKey0001", "BINANCE_PRIVATE_KEY_PATH": str(path)}
    vault("keys", "add", "b-ed", "-e", "binance", "--key-type", "ed25519", "--from-env", env=env)
    assert stored(vault, "b-ed").key_type == "ed25519"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("-e", "nosuchex"), BINANCE_ENV, "unknown exchange 'nosuchex'; known exchanges: binance"),
        (("-e", "binance", "--scope", "withdraw"), BINANCE_ENV, "unknown scope 'withdraw'"),
        (("-e", "okx", "--key-type", "rsa"), OKX_ENV, "okx does not take rsa keys"),
        (
            ("-e", "binance"),
            {**BINANCE_ENV, "BINANCE_API_SECRET": "FAKE secret with spaces"},
            "the API secret contains whitespace",
        ),
        (("-e", "binance"), {**BINANCE_ENV, "BINANCE_API_KEY": "  "}, "BINANCE_API_KEY is not set"),
        (("-e", "binance", "--base-url", "http://example.com"), BINANCE_ENV, "base URL must be"),
    ],
)
def test_add_refuses_bad_input_with_exit_1(
    vault: Kb, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    run = vault("keys", "add", "x", *args, "--from-env", env=env, expect=1)
    assert message in run.stderr
    assert len(run.stderr.splitlines()) == 1
    assert "FAKE" not in run.stderr


def test_a_pasted_key_where_a_path_belongs_is_not_printed_back(vault: Kb) -> None:
    env = {"BINANCE_API_KEY": "FAKEkey0000001", "BINANCE_PRIVATE_KEY_PATH": "FAKEpastedKeyBody01"}
    run = vault("keys", "add", "b", "-e", "binance", "--key-type", "ed25519", "--from-env",
                env=env, expect=1)  # fmt: skip
    assert run.stderr == (
        "keybroker: cannot read the file named by BINANCE_PRIVATE_KEY_PATH: "
        "No such file or directory\n"
    )
    run = vault("keys", "add", "b", "-e", "binance", "--key-type", "rsa",
                input="FAKEkey0000001\nFAKEpastedKeyBody01\n", expect=1)  # fmt: skip
    assert "FAKEpastedKeyBody01" not in run.text  # the prompt is hidden, too
    assert "secret is not an unencrypted PEM rsa private key" in run.stderr


def test_a_pem_pasted_into_the_one_line_prompt_is_refused(vault: Kb) -> None:
    run = vault("keys", "add", "b", "-e", "binance", "--key-type", "ed25519",
                input="FAKEkey0000001\n-----BEGIN PRIVATE KEY-----\nFAKE\n", expect=1)  # fmt: skip
    assert "a PEM key is several lines: give the path to its file" in run.stderr


def test_coinbase_keys_work_out_their_type(vault: Kb, tmp_path: Path) -> None:
    # A CDP Ed25519 key arrives as base64 of seed + public key, not as PEM.
    private = ed25519.Ed25519PrivateKey.generate()
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    ) + private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    document = {"api_key": "organizations/fake/apiKeys/fake1", "secret": base64.b64encode(raw)
                .decode()}  # fmt: skip
    vault("keys", "add", "cb-ed", "-e", "coinbase", "--stdin", input=json.dumps(document))
    assert stored(vault, "cb-ed").key_type == "ed25519"
    es256 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "cdp.pem"
    path.write_bytes(es256)
    env = {"COINBASE_API_KEY": "organizations/fake/apiKeys/fake2",
           "COINBASE_PRIVATE_KEY_PATH": str(path)}  # fmt: skip
    vault("keys", "add", "cb-ec", "-e", "coinbase", "--from-env", env=env)
    assert stored(vault, "cb-ec").key_type == "es256"


def test_stdin_key_without_a_passphrase_source_or_terminal_says_what_to_use(vault: Kb) -> None:
    document = {"api_key": "FAKEkey0000001", "secret": "FAKEsecret0001"}
    run = vault.subprocess(
        *("keys", "add", "b", "-e", "binance", "--stdin"),
        input=json.dumps(document),
        env={"KEYBROKER_PASSPHRASE": None},
        expect=1,
    )
    assert run.stderr.splitlines()[-1].startswith(
        "keybroker: nothing was entered; without a terminal, use --passphrase-file"
    )
    assert "FAKEsecret0001" not in run.text


def test_a_key_without_a_terminal_or_input_names_from_env_and_stdin(vault: Kb) -> None:
    # A script that forgot --from-env: the hint must be about the key, not "aborted".
    run = vault.subprocess("keys", "add", "b", "-e", "binance", input="", expect=1)
    assert run.stderr.splitlines()[-1].endswith(
        "keybroker: nothing was entered; without a terminal, give the key with --from-env or "
        "--stdin (see --help)"
    )


def test_a_bad_name_is_refused_before_any_prompt(vault: Kb) -> None:
    run = vault("keys", "add", "bad name", "-e", "binance", input="", expect=1)
    assert run.stderr.startswith("keybroker: credential name must be 1-64 characters")
    assert "Vault passphrase" not in run.stderr


def test_add_refuses_a_taken_name_before_asking_anything(vault: Kb) -> None:
    vault("keys", "add", "b1", "-e", "binance", "--from-env", env=BINANCE_ENV)
    run = vault("keys", "add", "b1", "-e", "binance", expect=2)
    assert run.stderr == "keybroker: a credential named 'b1' already exists; use keys rotate\n"


def test_from_env_and_stdin_together_is_a_usage_error(vault: Kb) -> None:
    run = vault("keys", "add", "b1", "-e", "binance", "--from-env", "--stdin", expect=1)
    assert "cannot be used together" in run.stderr


def test_add_production_warns(vault: Kb) -> None:
    run = vault("keys", "add", "live", "-e", "binance", "--production", "--from-env",
                env=BINANCE_ENV)  # fmt: skip
    assert "production key" in run.stderr
    assert json.loads(vault("keys", "show", "live", "--json").stdout)["environment"] == (
        "production"
    )


def test_a_secret_typed_as_an_extra_argument_is_not_echoed(vault: Kb) -> None:
    run = vault("keys", "add", "b1", "-e", "binance", "FAKEsecretPastedHere01", expect=1)
    assert "FAKEsecretPastedHere01" not in run.text
    assert "unexpected extra argument (not shown)" in run.stderr


# -- list and show -----------------------------------------------------------------------


def test_list_works_locked_and_never_shows_a_secret(vault: Kb) -> None:
    vault("keys", "add", "b1", "-e", "binance", "--from-env", env=BINANCE_ENV)
    vault("keys", "add", "o1", "-e", "okx", "--scope", "read,trade", "--from-env", env=OKX_ENV)
    locked = {"KEYBROKER_PASSPHRASE": None}
    rows = json.loads(vault("keys", "list", "--json", env=locked).stdout)
    assert [
        (r["name"], r["exchange"], r["scopes"], r["rotation"], r["age_days"]) for r in rows
    ] == [
        ("b1", "binance", ["read"], "ok", 0),
        ("o1", "okx", ["read", "trade"], "ok", 0),
    ]
    assert rows[0]["key_id"] == "FAKE…0001"
    table = vault("keys", "list", env=locked)
    for column in ("name", "exchange", "environment", "scopes", "age (days)", "rotation", "key id"):
        assert column in table.stdout
    everything = table.text + json.dumps(rows)
    for value in (*BINANCE_ENV.values(), *OKX_ENV.values()):
        assert value not in everything


def test_list_of_an_empty_vault_says_how_to_add(vault: Kb) -> None:
    assert "keybroker keys add" in vault("keys", "list").stdout
    assert json.loads(vault("keys", "list", "--json").stdout) == []


def test_list_reports_age_and_rotation_due(vault: Kb) -> None:
    vault("keys", "add", "b1", "-e", "binance", "--scope", "trade", "--from-env", env=BINANCE_ENV)
    # Age the record the honest way is impossible in a test; the clear columns are
    # authenticated, so `list` (which does not decrypt) still shows the edited date.
    with closing(sqlite3.connect(vault.vault_path)) as conn, conn:
        conn.execute("UPDATE credentials SET created_at = '2020-01-01T00:00:00.000000+00:00'")
    row = json.loads(vault("keys", "list", "--json").stdout)[0]
    assert row["rotation"] == "due"
    assert row["age_days"] > 365


def test_show_unknown_name(vault: Kb) -> None:
    run = vault("keys", "show", "nope", expect=2)
    assert run.stderr == "keybroker: no credential named 'nope'\n"


# -- rotate ------------------------------------------------------------------------------


def test_rotate_replaces_the_secret_and_records_the_old_key_id(vault: Kb) -> None:
    vault("keys", "add", "b1", "-e", "binance", "--from-env", env=BINANCE_ENV)
    new = {
        "BINANCE_API_KEY": "FAKEbinanceRotatedKey0000000000000000000000000000000000000000002",
        "BINANCE_API_SECRET": "FAKEbinanceRotatedSecret00000000000000000000000000000000000002",
    }
    run = vault("keys", "rotate", "b1", "--from-env", env=new)
    assert "old secret (FAKE…0001) is forgotten" in run.stdout
    assert "Delete that key at binance" in run.stdout
    assert stored(vault, "b1").secret == Secret(new["BINANCE_API_SECRET"])
    shown = json.loads(vault("keys", "show", "b1", "--json").stdout)
    assert shown["key_id"] == "FAKE…0002"
    assert [entry["key_id"] for entry in shown["key_history"]] == ["FAKE…0001"]
    assert shown["rotated_at"] is not None
    assert "replaced keys" in vault("keys", "show", "b1").stdout


def test_rotate_to_the_same_api_key_never_says_to_delete_it_at_the_exchange(
    vault: Kb,
) -> None:
    # Fixing a mistyped secret: the key at the exchange is the one in use.
    vault("keys", "add", "b1", "-e", "binance", "--from-env", env=BINANCE_ENV)
    fixed = {**BINANCE_ENV, "BINANCE_API_SECRET": "FAKEbinanceFixedSecret0000000000000000000003"}
    run = vault("keys", "rotate", "b1", "--from-env", env=fixed)
    assert "Delete that key" not in run.text
    assert "do not delete it at binance" in run.stderr
    assert stored(vault, "b1").secret == Secret(fixed["BINANCE_API_SECRET"])


def test_rotate_interactive_and_from_stdin(vault: Kb) -> None:
    vault("keys", "add", "o1", "-e", "okx", "--from-env", env=OKX_ENV)
    vault("keys", "rotate", "o1", input="FAKEokxKey0002\nFAKEOKXSECRET0002\nFakeOkxPass2!\n")
    assert stored(vault, "o1").secret == Secret("FAKEOKXSECRET0002")
    document = {"api_key": "FAKEokxKey0003", "secret": "FAKEOKXSECRET0003", "passphrase": "P3!"}
    vault("keys", "rotate", "o1", "--stdin", input=json.dumps(document))
    assert stored(vault, "o1").passphrase == Secret("P3!")


# -- remove ------------------------------------------------------------------------------


def test_remove_with_yes(vault: Kb) -> None:
    vault("keys", "add", "b1", "-e", "binance", "--from-env", env=BINANCE_ENV)
    run = vault("keys", "remove", "b1", "--yes", env={"KEYBROKER_PASSPHRASE": None})
    assert "Removed b1" in run.stdout
    assert json.loads(vault("keys", "list", "--json").stdout) == []


def test_remove_and_add_again_name_the_bots_whose_tokens_outlive_the_credential(
    vault: Kb,
) -> None:
    # Tokens name credentials: a key added again under a removed name is at once usable by
    # every bot still holding a token for that name (removing needs no passphrase, so it
    # cannot revoke them itself). Both commands say who; a revoked token is not named.
    vault("keys", "add", "b1", "-e", "binance", "--from-env", env=BINANCE_ENV)
    vault("keys", "add", "b2", "-e", "binance", "--from-env", env=BINANCE_ENV)
    vault("tokens", "create", "grid", "-c", "b1")
    vault("tokens", "create", "gone", "-c", "b1")
    vault("tokens", "create", "elsewhere", "-c", "b2")
    vault("tokens", "revoke", "gone")
    removed = vault("keys", "remove", "b1", "--yes", env={"KEYBROKER_PASSPHRASE": None})
    assert "bot grid holds a token for b1" in removed.stderr
    assert "keybroker tokens revoke grid" in removed.stderr
    assert "gone" not in removed.stderr and "elsewhere" not in removed.stderr
    added = vault("keys", "add", "b1", "-e", "binance", "--from-env", env=BINANCE_ENV)
    assert "bot grid holds a token for b1: they can use this key now" in added.text
    alone = vault("keys", "add", "b3", "-e", "binance", "--from-env", env=BINANCE_ENV)
    assert "token" not in alone.text


def test_remove_without_a_terminal_and_without_yes_is_refused(vault: Kb) -> None:
    vault("keys", "add", "b1", "-e", "binance", "--from-env", env=BINANCE_ENV)
    run = vault.subprocess("keys", "remove", "b1", expect=1)
    assert run.stderr == "keybroker: removing b1 needs --yes: there is no terminal to ask on\n"
    assert len(json.loads(vault("keys", "list", "--json").stdout)) == 1


def test_remove_asks_on_a_terminal(vault: Kb, terminal: StartTerminal) -> None:
    vault("keys", "add", "b1", "-e", "binance", "--from-env", env=BINANCE_ENV)
    vault("keys", "add", "b2", "-e", "binance", "--from-env", env=BINANCE_ENV)
    declined = terminal("keys", "remove", "b1")
    declined.expect("Its secret cannot be recovered [y/N]")
    declined.send("n")
    assert declined.finish() == 1
    accepted = terminal("keys", "remove", "b2")
    accepted.expect("[y/N]")
    accepted.send("y")
    assert accepted.finish() == 0
    names = [row["name"] for row in json.loads(vault("keys", "list", "--json").stdout)]
    assert names == ["b1"]
