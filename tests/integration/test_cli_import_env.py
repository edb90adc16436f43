"""``keybroker keys import-env``: keys move from a .env file into the vault, then leave the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli_harness import BINANCE_ENV, OKX_ENV, PASSPHRASE, Kb

from keybroker.cli import envfile
from keybroker.errors import InvalidInput
from keybroker.secret import Secret
from keybroker.vault import Vault

DOTENV = f"""# trading bot settings
LOG_LEVEL=debug
export BINANCE_API_KEY={BINANCE_ENV["BINANCE_API_KEY"]}
BINANCE_API_SECRET="{BINANCE_ENV["BINANCE_API_SECRET"]}"   # from the testnet page
SYMBOL = 'BTCUSDT'
OKX_API_KEY={OKX_ENV["OKX_API_KEY"]}
OKX_API_SECRET='{OKX_ENV["OKX_API_SECRET"]}'
OKX_PASSPHRASE="{OKX_ENV["OKX_PASSPHRASE"]}"
"""
KEPT = """# trading bot settings
LOG_LEVEL=debug
SYMBOL = 'BTCUSDT'
"""


@pytest.fixture
def dotenv(tmp_path: Path) -> Path:
    path = tmp_path / "bot" / ".env"
    path.parent.mkdir()
    path.write_text(DOTENV)
    path.chmod(0o640)
    return path


def secrets_in_vault(kb: Kb) -> dict[str, tuple[str, Secret, Secret | None]]:
    with Vault.open(kb.vault_path) as opened:
        opened.unlock(Secret(PASSPHRASE))
        return {
            record.name: (
                opened.credential(record.name).api_key,
                opened.credential(record.name).secret,
                opened.credential(record.name).passphrase,
            )
            for record in opened.list_credentials()
        }


def test_import_moves_the_keys_and_remove_strips_only_their_lines(vault: Kb, dotenv: Path) -> None:
    run = vault("keys", "import-env", str(dotenv), "--remove")
    stored = secrets_in_vault(vault)
    assert set(stored) == {"binance", "okx"}
    assert stored["binance"][1] == Secret(BINANCE_ENV["BINANCE_API_SECRET"])
    assert stored["okx"][2] == Secret(OKX_ENV["OKX_PASSPHRASE"])
    assert dotenv.read_text() == KEPT
    assert dotenv.stat().st_mode & 0o777 == 0o640  # the file keeps its mode
    assert "Removed 5 variables" in run.stderr
    assert [p.name for p in dotenv.parent.iterdir()] == [".env"]  # no temporary file left
    for value in (*BINANCE_ENV.values(), *OKX_ENV.values()):
        assert value not in run.text


def test_import_without_remove_leaves_the_file_and_says_so(vault: Kb, dotenv: Path) -> None:
    run = vault("keys", "import-env", str(dotenv))
    assert dotenv.read_text() == DOTENV
    assert "still in" in run.stderr
    rows = json.loads(vault("keys", "list", "--json").stdout)
    assert [(row["name"], row["environment"]) for row in rows] == [
        ("binance", "testnet"),
        ("okx", "testnet"),
    ]


def test_name_prefix_and_production(vault: Kb, dotenv: Path) -> None:
    run = vault("keys", "import-env", str(dotenv), "--name-prefix", "live-", "--production",
                "--json")  # fmt: skip
    assert json.loads(run.stdout) == [
        {"name": "live-binance", "exchange": "binance", "environment": "production",
         "key_type": "hmac", "key_id": "FAKE…0001"},
        {"name": "live-okx", "exchange": "okx", "environment": "production",
         "key_type": "hmac", "key_id": "0000…0001"},
    ]  # fmt: skip
    rows = json.loads(vault("keys", "list", "--json").stdout)
    assert [(row["name"], row["environment"]) for row in rows] == [
        ("live-binance", "production"),
        ("live-okx", "production"),
    ]


def test_a_name_that_is_taken_stops_everything_before_any_write(vault: Kb, dotenv: Path) -> None:
    vault("keys", "add", "okx", "-e", "okx", "--from-env", env=OKX_ENV)
    run = vault("keys", "import-env", str(dotenv), "--remove", expect=2)
    assert "a credential named 'okx' already exists" in run.stderr
    assert [row["name"] for row in json.loads(vault("keys", "list", "--json").stdout)] == ["okx"]
    assert dotenv.read_text() == DOTENV


def test_an_incomplete_key_is_named_and_nothing_is_imported(vault: Kb, tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(f"OKX_API_KEY=x1\nOKX_API_SECRET=y1\nBINANCE_API_KEY={'k' * 20}\n")
    run = vault("keys", "import-env", str(path), "--remove", expect=1)
    assert run.stderr == "keybroker: BINANCE_API_SECRET is not set\n"
    assert json.loads(vault("keys", "list", "--json").stdout) == []
    assert "OKX_API_KEY" in path.read_text()


def test_wrong_passphrase_leaves_the_file(vault: Kb, dotenv: Path) -> None:
    run = vault(
        *("keys", "import-env", str(dotenv), "--remove"),
        env={"KEYBROKER_PASSPHRASE": "not the passphrase"},
        expect=2,
    )
    assert run.stderr == "keybroker: wrong passphrase\n"
    assert dotenv.read_text() == DOTENV


def test_a_file_without_exchange_keys(vault: Kb, tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("LOG_LEVEL=info\n")
    assert "No exchange keys in" in vault("keys", "import-env", str(path)).stderr
    assert json.loads(vault("keys", "import-env", str(path), "--json").stdout) == []


def test_an_unparsable_line_is_named_by_number_only(vault: Kb, tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("OKX_API_KEY=x1\nFAKE-secret-pasted-alone\n")
    run = vault("keys", "import-env", str(path), expect=1)
    assert run.stderr == f"keybroker: {path}: line 2 is not KEY=VALUE\n"


def test_a_missing_file(vault: Kb, tmp_path: Path) -> None:
    run = vault("keys", "import-env", str(tmp_path / "nope.env"), expect=1)
    assert run.stderr.startswith("keybroker: cannot read ")


# -- the parser on its own ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("A=plain", "plain"),
        ("export A=plain", "plain"),
        ("A = spaced  ", "spaced"),
        ("A=with#hash", "with#hash"),
        ("A=value # comment", "value"),
        ("A='single # kept \\n literal'", "single # kept \\n literal"),
        ('A="double \\"escaped\\" \\n"', 'double "escaped" \n'),
        ('A="x" # comment', "x"),
        ("A=", ""),
    ],
)
def test_parse_values(line: str, value: str) -> None:
    [assignment] = envfile.parse(line + "\n")
    assert (assignment.key, assignment.value) == ("A", value)


def test_parse_multiline_pem_and_remove_it_whole() -> None:
    text = 'KEEP=1\nPEM="-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"\nLAST=2\n'
    assignments = envfile.parse(text)
    pem = next(a for a in assignments if a.key == "PEM")
    assert pem.value == "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
    assert (pem.first_line, pem.last_line) == (1, 3)
    assert envfile.without(text, [pem]) == "KEEP=1\nLAST=2\n"


def test_without_keeps_crlf_and_a_missing_final_newline() -> None:
    text = "A=1\r\nSECRET_THING=2\r\nB=3"
    assignments = envfile.parse(text)
    assert envfile.without(text, [a for a in assignments if a.key == "SECRET_THING"]) == (
        "A=1\r\nB=3"
    )


def test_last_assignment_wins_and_every_copy_is_removed() -> None:
    text = "A=1\nA=2\nB=3\n"
    assignments = envfile.parse(text)
    assert envfile.values(assignments) == {"A": "2", "B": "3"}
    assert envfile.without(text, [a for a in assignments if a.key == "A"]) == "B=3\n"


@pytest.mark.parametrize(
    "text", ['A="never closed\nB=2\n', "A='x' trailing\n", "just words\n", "=nokey\n"]
)
def test_parse_errors_name_the_line_not_the_text(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        envfile.parse(text, source="t.env")
    assert str(caught.value).startswith("t.env: ")
    assert "never closed" not in str(caught.value)
    assert "trailing" not in str(caught.value)


def test_assignment_repr_hides_the_value() -> None:
    [assignment] = envfile.parse("BINANCE_API_SECRET=FAKEsecret0001\n")
    assert "FAKEsecret0001" not in repr(assignment)


def test_replace_atomically_keeps_the_mode(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("A=1\n")
    path.chmod(0o604)
    envfile.replace_atomically(path, "B=2\n")
    assert path.read_text() == "B=2\n"
    assert os.stat(path).st_mode & 0o777 == 0o604
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]
