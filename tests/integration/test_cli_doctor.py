"""``keybroker doctor`` end to end: real vault files, real git repos, the real emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_harness import Kb, StartTerminal

from keybroker.emulator import ApiKey, create_app, serve_in_thread
from keybroker.secret import Secret

# A fake Binance-shaped key (64 mixed-case letters and digits), planted in a bot's repo.
PLANTED = "FakeBinanceKey0NotReal" + "x1Y2" * 10 + "AB"
OLD_PLANTED = "OldFakeKey0NotReal00" + "q7W8" * 11

SAFE = ApiKey("FAKE-safe-key-0001", Secret("FAKE-safe-secret-0001"), can_trade=False)
TRADER = ApiKey("FAKE-trade-key-0002", Secret("FAKE-trade-secret-0002"))
RISKY = ApiKey(
    "FAKE-risky-key-0003", Secret("FAKE-risky-secret-0003"), can_withdraw=True, ip_restricted=False
)
OKX_RISKY = ApiKey(
    "FAKE-okx-key-0004", Secret("FAKE-okx-secret-0004"), Secret("FakeOkxPass4"), can_withdraw=True
)


def _git(root: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}  # fmt: skip
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, env=env)


@pytest.fixture
def bot_repo(tmp_path: Path) -> Path:
    """A bot's repo: a key committed then removed (history), a key in a file, a loose .env."""
    repo = tmp_path / "bot"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "bot.py").write_text("import os\nKEY = os.environ['BINANCE_API_KEY']\n")
    (repo / "config.py").write_text(f'SECRET = "{OLD_PLANTED}"\n')
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first")
    (repo / "config.py").write_text("SECRET = os.environ['BINANCE_API_SECRET']\n")
    _git(repo, "commit", "-q", "-am", "move the key out")
    (repo / "settings.py").write_text(f"KEY = '{PLANTED}'\n")
    env = repo / ".env"
    env.write_text(f"BINANCE_API_KEY={PLANTED}\n")
    env.chmod(0o644)
    return repo


@pytest.fixture
def clean_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "clean"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "bot.py").write_text("import os\nKEY = os.environ['BINANCE_API_KEY']\n")
    (repo / ".gitignore").write_text(".env*\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first")
    env = repo / ".env"
    env.write_text("BINANCE_API_KEY=\n")
    env.chmod(0o600)
    return repo


def _report(run_text: str) -> dict[str, Any]:
    document = json.loads(run_text)
    assert isinstance(document, dict)
    return document


def _by_name(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    results = document["results"]
    assert isinstance(results, list)
    for result in results:
        found.setdefault(result["name"], []).append(result)
    return found


def test_leaky_repo_fails_and_never_prints_the_keys(kb: Kb, bot_repo: Path) -> None:
    run = kb("doctor", "--repo", str(bot_repo), "--history", "--json", expect=2)
    document = _report(run.stdout)
    assert (document["schema"], document["version"], document["ok"]) == (
        "keybroker-doctor",
        1,
        False,
    )
    results = _by_name(document)
    [files] = results["secrets.files"]
    assert files["status"] == "fail"
    assert {d.split(" ")[0] for d in files["details"]} == {".env:1", "settings.py:1"}
    [history] = results["secrets.history"]
    assert history["status"] == "fail"
    assert any(d.startswith("config.py:1 (commit ") for d in history["details"])
    assert results["env.mode"][0]["status"] == "fail"
    assert results["env.ignored"][0]["status"] == "fail"
    people = kb("doctor", "--repo", str(bot_repo), "--history", expect=2)
    assert "FAIL" in people.stdout and "secrets.history" in people.stdout
    for text in (run.text, people.text):
        assert PLANTED not in text and OLD_PLANTED not in text
        assert "FakeBinanceKey0NotReal" not in text  # not even a long prefix


def test_clean_repo_passes(kb: Kb, clean_repo: Path) -> None:
    run = kb("doctor", "--repo", str(clean_repo), "--history", "--json")
    document = _report(run.stdout)
    statuses = {r["name"]: r["status"] for r in document["results"]}
    assert statuses["secrets.files"] == statuses["secrets.history"] == "pass"
    assert statuses["env.mode"] == statuses["env.tracked"] == statuses["env.ignored"] == "pass"
    assert statuses["output.canary"] == "pass"
    assert document["exit_code"] == 0
    # Warnings only (no audit log yet, and maybe root): --strict turns them into exit 2.
    assert document["counts"]["warn"] > 0
    kb("doctor", "--repo", str(clean_repo), "--strict", expect=2)


def test_vault_with_wrong_modes_fails(vault: Kb, clean_repo: Path) -> None:
    vault.home.chmod(0o755)
    vault.vault_path.chmod(0o644)
    document = _report(vault("doctor", "--repo", str(clean_repo), "--json", expect=2).stdout)
    results = _by_name(document)
    assert results["files.home"][0]["status"] == "fail"
    assert results["files.vault"][0]["status"] == "fail"
    vault.home.chmod(0o700)
    vault.vault_path.chmod(0o600)
    document = _report(vault("doctor", "--repo", str(clean_repo), "--json").stdout)
    assert _by_name(document)["files.vault"][0]["status"] == "pass"


def test_a_vault_writable_by_others_is_a_finding_not_a_crash(vault: Kb, clean_repo: Path) -> None:
    vault.vault_path.chmod(0o666)
    document = _report(vault("doctor", "--repo", str(clean_repo), "--json", expect=2).stdout)
    results = _by_name(document)
    assert results["files.vault"][0]["status"] == "fail"
    assert results["rotation.age"][0]["status"] == "fail"
    assert "writable by group or others" in results["rotation.age"][0]["advice"]


def test_usage_errors_exit_1(kb: Kb, tmp_path: Path) -> None:
    kb("doctor", "--repo", str(tmp_path / "missing"), expect=1)
    kb("doctor", "--no-such-flag", expect=1)
    assert "--history" in kb("doctor", "--help").stdout


# -- --online against the emulator ------------------------------------------------------------


Emulator = Callable[..., str]


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """emulator(exchange, keys) -> base URL of a real emulator on 127.0.0.1."""
    stops: list[Callable[[], None]] = []

    def start(exchange: str, keys: list[ApiKey]) -> str:
        base_url, stop = serve_in_thread(create_app(exchange, keys))
        stops.append(stop)
        return base_url

    yield start
    for stop in stops:
        stop()


def _add(kb: Kb, name: str, key: ApiKey, base_url: str, exchange: str = "binance") -> None:
    prefix = exchange.upper()
    env = {f"{prefix}_API_KEY": key.api_key, f"{prefix}_API_SECRET": key.secret.reveal_text()}
    if key.passphrase is not None:
        env[f"{prefix}_PASSPHRASE"] = key.passphrase.reveal_text()
    kb("keys", "add", name, "-e", exchange, "--base-url", base_url, "--from-env",
       "--scope", "read,trade", env=env)  # fmt: skip


def _online(kb: Kb, repo: Path, expect: int) -> dict[str, list[dict[str, Any]]]:
    run = kb("doctor", "--online", "--json", "--repo", str(repo), expect=expect)
    for key in (SAFE, TRADER, RISKY, OKX_RISKY):
        assert key.secret.reveal_text() not in run.text
    return _by_name(_report(run.stdout))


def test_online_reads_each_keys_rights_from_the_exchange(
    vault: Kb, clean_repo: Path, emulator: Emulator
) -> None:
    base_url = emulator("binance", [SAFE, TRADER, RISKY])
    _add(vault, "safe", SAFE, base_url)
    _add(vault, "trader", TRADER, base_url)
    results = _online(vault, clean_repo, expect=0)
    permissions = {r["subject"]: r for r in results["online.permissions"]}
    assert permissions["safe"]["status"] == "pass"
    # Default policy reads only, yet the exchange lets this key trade.
    assert permissions["trader"]["status"] == "warn"
    assert "can trade but its policy only reads" in permissions["trader"]["advice"]
    vault("policy", "set", "trader", "--scope", "read,trade")
    permissions = {r["subject"]: r for r in _online(vault, clean_repo, 0)["online.permissions"]}
    assert permissions["trader"]["status"] == "pass"
    [clock] = results["online.clock"]
    assert clock["status"] == "pass" and clock["subject"] == base_url

    _add(vault, "risky", RISKY, base_url)
    results = _online(vault, clean_repo, expect=2)
    risky = {r["subject"]: r for r in results["online.permissions"]}["risky"]
    assert risky["status"] == "fail"
    assert risky["details"] == [
        "withdrawals enabled: turn them off for this key at the exchange",
        "no IP restriction: bind the key to the gateway's address",
        "the key can trade but its policy only reads: make a read-only key",
    ]


def test_online_okx_key_that_can_withdraw_fails(
    vault: Kb, clean_repo: Path, emulator: Emulator
) -> None:
    base_url = emulator("okx", [OKX_RISKY])
    _add(vault, "okx-bot", OKX_RISKY, base_url, exchange="okx")
    results = _online(vault, clean_repo, expect=2)
    [okx] = results["online.permissions"]
    assert okx["status"] == "fail" and okx["advice"].startswith("withdrawals enabled")
    assert results["online.clock"][0]["status"] == "pass"


def test_online_clock_skew_fails(vault: Kb, clean_repo: Path, emulator: Emulator) -> None:
    base_url = emulator("binance", [SAFE])
    _add(vault, "safe", SAFE, base_url)
    httpx.post(f"{base_url}/__emulator__/clock", json={"advance_ms": 20_000}).raise_for_status()
    results = _online(vault, clean_repo, expect=2)
    [clock] = results["online.clock"]
    assert clock["status"] == "fail" and "behind" in clock["advice"]
    # The signed permission query is refused too: its timestamp is outside the window.
    assert results["online.permissions"][0]["status"] == "fail"


def test_online_without_a_passphrase_source_says_so(
    vault: Kb, clean_repo: Path, emulator: Emulator
) -> None:
    _add(vault, "safe", SAFE, emulator("binance", [SAFE]))
    run = vault.subprocess(
        "doctor", "--online", "--json", "--repo", str(clean_repo),
        env={"KEYBROKER_PASSPHRASE": None}, expect=0,
    )  # fmt: skip
    [permissions] = _by_name(_report(run.stdout))["online.permissions"]
    assert permissions["status"] == "warn" and "--passphrase-file" in permissions["advice"]


def test_serve_records_its_settings_for_the_doctor(vault: Kb, clean_repo: Path) -> None:
    """A real ``keybroker serve`` writes gateway.json; the doctor reads CORS '*' from it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "keybroker", "--home", str(vault.home), "serve", "--port", "0",
         "--cors-origin", "*", "--alert-webhook", "https://hooks.example.com/T0/FAKEpath"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "KEYBROKER_PASSPHRASE": str(vault.env["KEYBROKER_PASSPHRASE"])},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("http://127.0.0.1:")
        record = json.loads((vault.home / "gateway.json").read_text())
        assert record["cors_origins"] == ["*"]
        assert record["alert_webhook_host"] == "https://hooks.example.com"
        assert "FAKEpath" not in json.dumps(record)
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stdout is not None:
            process.stdout.close()
    results = _by_name(
        _report(vault("doctor", "--repo", str(clean_repo), "--json", expect=2).stdout)
    )
    assert results["gateway.cors"][0]["status"] == "fail"
    assert results["gateway.listen"][0]["status"] == "pass"
    assert results["audit.alerts"][0]["status"] == "pass"
    assert results["audit.chain"][0]["status"] == "pass"  # serve wrote start and stop events


def test_a_terminal_sees_the_scan_progress_and_why_a_plain_directory_is_scanned_whole(
    kb: Kb, tmp_path: Path, terminal: StartTerminal
) -> None:
    # Run from a big directory that is not a repository, doctor scanned for minutes with
    # nothing on the screen: it now says what it scans and shows a bar while it does.
    plain = tmp_path / "plain"
    plain.mkdir()
    for number in range(30):
        (plain / f"notes{number}.txt").write_text("nothing secret here\n")
    session = terminal("doctor", "--repo", str(plain))
    session.expect(f"{plain} is not a git work tree: scanning every file under it")
    session.expect("scanning the files")
    session.expect("/30")
    session.expect("passed")


def test_a_repository_gets_no_plain_directory_note(kb: Kb, clean_repo: Path) -> None:
    run = kb.subprocess("doctor", "--repo", str(clean_repo), "--json", expect=None)
    assert "not a git work tree" not in run.stderr
    assert "scanning the" not in run.stderr  # no terminal: no bar
