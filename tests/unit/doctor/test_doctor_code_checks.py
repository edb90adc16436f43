"""Checks 1 and 2 on real git repositories: planted fake keys in a file and in an old commit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from doctor_testkit import OLD_PLANTED, PLANTED, clean_repo, git, leaky_repo, make_inputs

from keybroker.doctor import report_document
from keybroker.doctor.code_checks import (
    check_env_files,
    check_secrets_in_files,
    check_secrets_in_history,
    is_env_file,
)
from keybroker.doctor.scan import exchange_patterns, scan_lines
from keybroker.model import mask


def _kinds(line: str) -> set[str]:
    return {kind for found in scan_lines([line], exchange_patterns()).values() for kind in found}


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (f"BINANCE_API_KEY={PLANTED}", "binance api key or secret"),
        ('okx_key = "0c4e9f2b-1a2b-4c3d-9e8f-0123456789ab"', "okx api key"),
        ("OKX_SECRET=0123456789ABCDEF0123456789ABCDEF", "okx secret"),
        ("OKX_PASSPHRASE='Fake-Pass-1'", "okx passphrase"),
        ("KRAKEN_SECRET=" + "Ab1+" * 21 + "cd==", "kraken private key"),
        ("kraken_api_key: " + "Zx9/" * 14, "kraken api key"),
        (
            'name = "organizations/0c4e9f2b-1a2b-4c3d-9e8f-0123456789ab/apiKeys/'
            '1c4e9f2b-1a2b-4c3d-9e8f-0123456789ab"',
            "coinbase cdp key name",
        ),
        ("-----BEGIN EC PRIVATE KEY-----", "private key (pem)"),
        ('api_secret = "Zx8kQ2pL9vN4mR7tY1wE5uI3oP6aS0dF"', "secret assigned to a key name"),
    ],
)
def test_each_exchange_key_shape_is_found(line: str, kind: str) -> None:
    assert kind in _kinds(line)


@pytest.mark.parametrize(
    "line",
    [
        "digest = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'",  # sha256
        "request_id = '0c4e9f2b-1a2b-4c3d-9e8f-0123456789ab'",  # a UUID with no key word
        "API_KEY = os.environ['BINANCE_API_KEY']",
        "password = 'aaaaaaaaaaaaaaaaaaaa'",  # low entropy
        f"KEY = '{PLANTED}'  # pragma: allowlist secret",
    ],
)
def test_ordinary_code_is_not_a_secret(line: str) -> None:
    assert _kinds(line) == set()


def test_planted_key_in_a_file_fails_with_file_line_and_masked_value(tmp_path: Path) -> None:
    repo = leaky_repo(tmp_path / "repo")
    [result] = check_secrets_in_files(make_inputs(tmp_path / "home", repo))
    assert result.status == "fail"
    assert any(d.startswith("settings.py:2 ") and mask(PLANTED) in d for d in result.details)
    assert PLANTED not in json.dumps(report_document([result], strict=False))


def test_clean_repo_passes_and_history_is_only_scanned_when_asked(tmp_path: Path) -> None:
    repo = clean_repo(tmp_path / "repo")
    inputs = make_inputs(tmp_path / "home", repo)
    assert [r.status for r in check_secrets_in_files(inputs)] == ["pass"]
    assert check_secrets_in_history(inputs) == []
    inputs.history = True
    assert [r.status for r in check_secrets_in_history(inputs)] == ["pass"]


def test_history_finds_the_key_removed_in_a_later_commit(tmp_path: Path) -> None:
    repo = leaky_repo(tmp_path / "repo")
    oops = git(repo, "log", "--format=%H", "--grep", "oops").strip()
    [result] = check_secrets_in_history(make_inputs(tmp_path / "home", repo, history=True))
    assert result.status == "fail"
    [detail] = result.details
    assert detail.startswith(f"config.py:1 (commit {oops[:12]}) binance api key or secret")
    assert detail.endswith(f" {mask(OLD_PLANTED)}")
    text = json.dumps(report_document([result], strict=False))
    assert OLD_PLANTED not in text and PLANTED not in text
    # The file of today no longer has it: only history does.
    [files] = check_secrets_in_files(make_inputs(tmp_path / "home", repo))
    assert not any("config.py" in d for d in files.details)


def test_history_outside_git_warns(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    [result] = check_secrets_in_history(make_inputs(tmp_path / "home", plain, history=True))
    assert result.status == "warn" and "not a git repository" in result.advice


def test_plain_directory_is_walked_without_git(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    (plain / "node_modules").mkdir(parents=True)
    (plain / "node_modules" / "x.js").write_text(f"k='{PLANTED}'\n")  # skipped
    (plain / "bot.py").write_text(f"k = '{PLANTED}'\n")
    [result] = check_secrets_in_files(make_inputs(tmp_path / "home", plain))
    assert [d.split(" ")[0] for d in result.details] == ["bot.py:1"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [(".env", True), (".env.production", True), ("prod.env", True), (".env.example", False),
     (".env.sample", False), ("environment.py", False)],
)  # fmt: skip
def test_env_file_names(name: str, expected: bool) -> None:
    assert is_env_file(name) is expected


def test_world_readable_unignored_env_fails_and_private_ignored_passes(tmp_path: Path) -> None:
    repo = clean_repo(tmp_path / "repo")
    (repo / ".gitignore").write_text("")  # nothing ignored
    env = repo / ".env"
    env.write_text("BINANCE_API_KEY=\n")
    env.chmod(0o644)
    inputs = make_inputs(tmp_path / "home", repo)
    statuses = {r.name: (r.status, r.details) for r in check_env_files(inputs)}
    assert statuses["env.mode"] == ("fail", (".env mode 0644",))
    assert statuses["env.ignored"] == ("fail", (".env",))
    assert statuses["env.tracked"][0] == "pass"

    env.chmod(0o600)
    (repo / ".gitignore").write_text(".env*\n")
    statuses = {r.name: (r.status, r.details) for r in check_env_files(inputs)}
    assert {name: status for name, (status, _) in statuses.items()} == {
        "env.mode": "pass", "env.tracked": "pass", "env.ignored": "pass",
    }  # fmt: skip


def test_tracked_env_file_fails(tmp_path: Path) -> None:
    repo = clean_repo(tmp_path / "repo")
    env = repo / "deploy" / "prod.env"
    env.parent.mkdir()
    env.write_text("X=1\n")
    env.chmod(0o600)
    git(repo, "add", "-f", "deploy/prod.env")
    git(repo, "commit", "-q", "-m", "env")
    by_name = {r.name: r for r in check_env_files(make_inputs(tmp_path / "home", repo))}
    assert by_name["env.tracked"].status == "fail"
    assert by_name["env.tracked"].details == ("deploy/prod.env",)


def test_no_env_file_passes(tmp_path: Path) -> None:
    repo = clean_repo(tmp_path / "repo")
    assert [(r.name, r.status) for r in check_env_files(make_inputs(tmp_path / "h", repo))] == [
        ("env.files", "pass")
    ]


def test_the_scans_tell_their_progress_file_by_file_and_find_the_same(tmp_path: Path) -> None:
    # A big repository takes minutes: the CLI's bar is fed by these calls, which must
    # count every file (and every blob of the history) and end at the total.
    repo = leaky_repo(tmp_path / "repo")
    told: list[tuple[str, int, int]] = []
    inputs = make_inputs(
        tmp_path / "home", repo, history=True, progress=lambda *step: told.append(step)
    )
    quiet = make_inputs(tmp_path / "home", repo, history=True)
    assert check_secrets_in_files(inputs) == check_secrets_in_files(quiet)
    assert check_secrets_in_history(inputs) == check_secrets_in_history(quiet)
    for what in ("files", "git history"):
        steps = [(done, total) for name, done, total in told if name == what]
        total = steps[-1][1]
        assert total >= 2  # bot.py and config.py, and their versions
        assert [done for done, _ in steps] == list(range(total + 1))
        assert {t for _, t in steps} == {total}
