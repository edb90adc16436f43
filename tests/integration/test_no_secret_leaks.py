"""No secret leaves keybroker: not in output, logs, errors, reprs, argv, or the vault file.

One parametrized test. Each case drives commands (or builds objects) with
obviously fake canary secrets, and the test then searches everything that
case produced for every canary: stdout and stderr of each run (in-process
and real subprocesses, several with --debug so tracebacks and debug logs are
searched too), log records, exception text, reprs, the fake clipboard
tool's argv, rewritten files, and the bytes of the vault file with its -wal
and -shm companions (raw, base64 and hex forms).
"""

from __future__ import annotations

import base64
import json
import logging
import pickle
import sqlite3
import traceback
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cli_harness import (
    SMALL_KDF,
    FakeClipboard,
    Kb,
    copy_vault,
    make_fake_clipboard,
    start_terminal,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import keybroker.errors
from keybroker.cli import demo, envfile, gateway_demo
from keybroker.cli.material import EnvNames
from keybroker.errors import KeybrokerError
from keybroker.exchanges import get_profile
from keybroker.model import Credential
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial, Vault

SECRET = "CANARYSECRETdoNotLeak7f3a"
SECRET_2 = "CANARYSECRETtwoDoNotLeak41c8"
VAULT_PASSPHRASE = "CANARY-PASSPHRASE-do-not-leak-9b1c"
NEW_VAULT_PASSPHRASE = "CANARY-NEW-PASSPHRASE-do-not-leak-2d6e"
WRONG_PASSPHRASE = "CANARY-WRONG-PASSPHRASE-do-not-leak-5a0f"
OKX_PASSPHRASE = "CANARYokxPassDoNotLeak3e5d"
BINANCE_KEY = "CANARYbinanceApiKeyFull0000000000000000000000000000000000000001"
OKX_KEY = "CANARYokxApiKeyFull-0000-0000-000000000001"

BINANCE = {"BINANCE_API_KEY": BINANCE_KEY, "BINANCE_API_SECRET": SECRET}
OKX = {"OKX_API_KEY": OKX_KEY, "OKX_API_SECRET": SECRET, "OKX_PASSPHRASE": OKX_PASSPHRASE}
NO_PASSPHRASE: dict[str, str | None] = {"KEYBROKER_PASSPHRASE": None}


@dataclass
class Case:
    """What one case did: the CLI it drove, and extra text and files to search."""

    kb: Kb
    tmp_path: Path
    template: Path
    texts: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    canaries: set[str] = field(
        default_factory=lambda: {
            SECRET,
            SECRET_2,
            VAULT_PASSPHRASE,
            NEW_VAULT_PASSPHRASE,
            WRONG_PASSPHRASE,
            OKX_PASSPHRASE,
        }
    )
    public: set[str] = field(default_factory=lambda: {BINANCE_KEY, OKX_KEY})
    """Full API keys: never in the vault file; in output only where typed at a visible prompt."""
    typed_public_keys: bool = False

    def init(self) -> None:
        """A vault made by ``keybroker init`` with the canary passphrase (a copy: init is slow)."""
        copy_vault(self.template, self.kb)

    def passphrase_file(self, name: str, value: str, mode: int = 0o600) -> Path:
        path = self.tmp_path / name
        path.write_text(value + "\n")
        path.chmod(mode)
        return path

    def see(self, *values: object) -> None:
        """Search the repr, str and format of these objects too."""
        for value in values:
            self.texts += [repr(value), str(value), f"{value}", f"{value!r:>80}"]


def pem_key() -> str:
    return (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


# -- the cases -------------------------------------------------------------------------


def init_prompted(case: Case) -> None:
    case.kb(
        "init", *SMALL_KDF, input=f"{VAULT_PASSPHRASE}\n{VAULT_PASSPHRASE}\n", env=NO_PASSPHRASE
    )
    case.kb("vault", "verify")


def init_from_passphrase_file(case: Case) -> None:
    path = case.passphrase_file("pass", VAULT_PASSPHRASE)
    case.kb.subprocess("--debug", "init", *SMALL_KDF, "--passphrase-file", str(path),
                       env=NO_PASSPHRASE)  # fmt: skip
    case.kb.subprocess("--debug", "vault", "verify", "--passphrase-file", str(path),
                       env=NO_PASSPHRASE)  # fmt: skip


def add_interactive(case: Case) -> None:
    case.init()
    case.typed_public_keys = True
    case.kb("keys", "add", "b1", "-e", "binance", input=f"{BINANCE_KEY}\n{SECRET}\n")
    case.kb(
        *("keys", "add", "o1", "-e", "okx"),
        input=f"{VAULT_PASSPHRASE}\n{OKX_KEY}\n{SECRET}\n{OKX_PASSPHRASE}\n",
        env=NO_PASSPHRASE,
    )


def add_from_env(case: Case) -> None:
    case.init()
    case.kb("keys", "add", "b1", "-e", "binance", "--from-env", env=BINANCE)
    case.kb.subprocess("--debug", "keys", "add", "o1", "-e", "okx", "--from-env", env=OKX)


def add_from_stdin(case: Case) -> None:
    case.init()
    document = {"api_key": OKX_KEY, "secret": SECRET, "passphrase": OKX_PASSPHRASE}
    case.kb("keys", "add", "o1", "-e", "okx", "--stdin", input=json.dumps(document))
    document = {"api_key": BINANCE_KEY, "secret": SECRET}
    case.kb.subprocess("--debug", "keys", "add", "b1", "-e", "binance", "--stdin",
                       input=json.dumps(document))  # fmt: skip


def add_pem_key(case: Case) -> None:
    case.init()
    pem = pem_key()
    case.canaries.add(pem.splitlines()[1])  # the key's base64 body
    path = case.tmp_path / "key.pem"
    path.write_text(pem)
    path.chmod(0o600)
    env = {"BINANCE_API_KEY": BINANCE_KEY, "BINANCE_PRIVATE_KEY_PATH": str(path)}
    case.kb("keys", "add", "b-ed", "-e", "binance", "--key-type", "ed25519", "--from-env", env=env)
    document = {"api_key": BINANCE_KEY, "private_key_pem": pem}
    case.kb("keys", "add", "b-ed2", "-e", "binance", "--stdin", input=json.dumps(document))
    case.kb("keys", "show", "b-ed2", "--json")


def list_and_show(case: Case) -> None:
    case.init()
    case.kb("keys", "add", "b1", "-e", "binance", "--from-env", env=BINANCE)
    case.kb("keys", "add", "o1", "-e", "okx", "--from-env", env=OKX)
    for args in (("list",), ("list", "--json"), ("show", "o1"), ("show", "o1", "--json")):
        case.kb("keys", *args)
    case.kb.subprocess("--debug", "keys", "list")


def rotate(case: Case) -> None:
    case.init()
    case.kb("keys", "add", "b1", "-e", "binance", "--from-env", env=BINANCE)
    case.kb("keys", "rotate", "b1", "--from-env", env={**BINANCE, "BINANCE_API_SECRET": SECRET_2})
    case.kb("keys", "rotate", "b1", input=f"{BINANCE_KEY}x\n{SECRET}\n")
    case.typed_public_keys = True
    case.kb("keys", "show", "b1")
    case.kb("keys", "show", "b1", "--json")


def copy_to_clipboard(case: Case) -> None:
    case.init()
    case.kb("keys", "add", "o1", "-e", "okx", "--from-env", env=OKX)
    clipboard: FakeClipboard = make_fake_clipboard(case.tmp_path, "xclip")
    case.kb("keys", "copy", "o1", "--clear-after", "1", env=clipboard.env)
    assert clipboard.read() == SECRET.encode()  # it did reach the clipboard...
    case.files.append(clipboard.argv_log)  # ...but never through argv
    case.kb.subprocess("--debug", "keys", "copy", "o1", "--clear-after", "1", env=clipboard.env)


def import_env_and_remove(case: Case) -> None:
    case.init()
    dotenv = case.tmp_path / ".env"
    lines = [f"export {name}={value}" for name, value in {**BINANCE, **OKX}.items()]
    dotenv.write_text("LOG_LEVEL=debug\n" + "\n".join(lines) + "\n")
    dotenv.chmod(0o600)
    case.kb("keys", "import-env", str(dotenv), "--remove")
    case.files.append(dotenv)  # rewritten without the keys
    assert dotenv.read_text() == "LOG_LEVEL=debug\n"
    case.kb("keys", "list")


def remove(case: Case) -> None:
    case.init()
    case.kb("keys", "add", "b1", "-e", "binance", "--from-env", env=BINANCE)
    case.kb("keys", "remove", "b1", "--yes")
    case.kb.subprocess("keys", "remove", "b1", expect=2)


def passwd(case: Case) -> None:
    case.init()
    case.kb("keys", "add", "o1", "-e", "okx", "--from-env", env=OKX)
    new_file = case.passphrase_file("new", NEW_VAULT_PASSPHRASE)
    case.kb("vault", "passwd", "--new-passphrase-file", str(new_file))
    case.kb.env["KEYBROKER_PASSPHRASE"] = NEW_VAULT_PASSPHRASE
    case.kb("vault", "passwd", input=f"{VAULT_PASSPHRASE}\n{VAULT_PASSPHRASE}\n")
    case.kb.env["KEYBROKER_PASSPHRASE"] = VAULT_PASSPHRASE
    case.kb("vault", "verify")


def verify_and_tamper(case: Case) -> None:
    case.init()
    case.kb("keys", "add", "o1", "-e", "okx", "--from-env", env=OKX)
    case.kb("vault", "verify")
    case.kb("vault", "verify", "--json")
    with closing(sqlite3.connect(case.kb.vault_path)) as conn, conn:
        conn.execute("UPDATE credentials SET exchange = 'binance'")
    case.kb("vault", "verify", expect=2)
    case.kb.subprocess("--debug", "vault", "verify", expect=2)
    case.kb("keys", "copy", "o1", expect=2, env={"PATH": str(case.tmp_path)})


def info(case: Case) -> None:
    case.init()
    case.kb("keys", "add", "o1", "-e", "okx", "--from-env", env=OKX)
    case.kb.vault_path.chmod(0o640)
    case.kb("vault", "info")
    case.kb("vault", "info", "--json")


def upgrade_kdf(case: Case) -> None:
    case.init()
    case.kb("keys", "add", "o1", "-e", "okx", "--from-env", env=OKX)
    case.kb("vault", "upgrade-kdf", "--kdf-memory-mib", "64", "--kdf-iterations", "2",
            "--kdf-lanes", "1")  # fmt: skip
    case.kb("vault", "upgrade-kdf", "--kdf-iterations", "1", "--kdf-lanes", "1", expect=1)
    case.kb("vault", "verify")


def run_demo(case: Case) -> None:
    case.canaries |= {
        demo._BINANCE["BINANCE_API_SECRET"],
        demo._BINANCE_ROTATED["BINANCE_API_SECRET"],
        demo._OKX["OKX_API_SECRET"],
        demo._OKX["OKX_PASSPHRASE"],
        demo.DEMO_PASSPHRASE,
        gateway_demo.EMULATOR_SECRET,
    }
    case.kb.subprocess("--debug", "demo", "--vault-only")
    case.kb.subprocess("--debug", "demo")


def wrong_passphrase(case: Case) -> None:
    case.init()
    case.kb("keys", "add", "o1", "-e", "okx", "--from-env", env=OKX)
    wrong = {"KEYBROKER_PASSPHRASE": WRONG_PASSPHRASE}
    case.kb("keys", "copy", "o1", env=wrong, expect=2)
    case.kb("--debug", "vault", "verify", env=wrong, expect=2)
    case.kb.subprocess("--debug", "keys", "rotate", "o1", "--from-env", env={**OKX, **wrong},
                       expect=2)  # fmt: skip
    case.kb("vault", "passwd", input=f"{WRONG_PASSPHRASE}\n", env=NO_PASSPHRASE, expect=2)


def bad_input(case: Case) -> None:
    case.init()
    attempts: list[tuple[tuple[str, ...], dict[str, str | None], str | None]] = [
        (("-e", "binance", "--from-env"), {**BINANCE, "BINANCE_API_SECRET": f"{SECRET} x"}, None),
        (("-e", "okx", "--from-env"), {**OKX, "OKX_PASSPHRASE": f"{OKX_PASSPHRASE} x"}, None),
        (("-e", "okx", "--from-env"), {**OKX, "OKX_PASSPHRASE": ""}, None),
        (("-e", "binance", "--stdin"), {}, f'{{"api_key": "{BINANCE_KEY}", "secret": "{SECRET}'),
        (("-e", "binance", "--stdin"), {}, json.dumps({"api_key": "k" * 12, SECRET: "x"})),
        (("-e", "binance", "--stdin"), {}, json.dumps({"api_key": "k" * 12, "secret": [SECRET]})),
        (("-e", "binance", "--stdin"), {}, json.dumps({"api_key": "k" * 12, "secret": SECRET,
                                                       "passphrase": OKX_PASSPHRASE})),
        (("-e", "binance", SECRET), {}, None),
        (("-e", "binance", "--key-type", "rsa", "--from-env"),
         {"BINANCE_API_KEY": BINANCE_KEY, "BINANCE_PRIVATE_KEY_PATH": SECRET}, None),
        (("-e", "binance", "--key-type", "ed25519", "--stdin"), {},
         json.dumps({"api_key": BINANCE_KEY, "private_key_pem": f"-----BEGIN {SECRET}"})),
    ]  # fmt: skip
    for number, (args, env, stdin) in enumerate(attempts):
        case.kb("--debug", "keys", "add", "x", *args, env=env, input=stdin, expect=1)
        if number < 2:  # and as a real process too (each costs half a second)
            case.kb.subprocess("--debug", "keys", "add", "x", *args, env=env, input=stdin,
                               expect=1)  # fmt: skip
    dotenv = case.tmp_path / "bad.env"
    dotenv.write_text(f"OKX_API_KEY={OKX_KEY}\n{SECRET}\n")
    case.kb.subprocess("--debug", "keys", "import-env", str(dotenv), expect=1)
    dotenv.write_text(f'OKX_API_SECRET="{SECRET}\n')
    case.kb("keys", "import-env", str(dotenv), expect=1)
    readable = case.passphrase_file("readable", VAULT_PASSPHRASE, mode=0o644)
    case.kb.subprocess("--debug", "vault", "verify", "--passphrase-file", str(readable), expect=2)
    case.kb("init", "--passphrase-file", str(case.passphrase_file("s", "CANARY")), expect=2)


def terminal_prompts(case: Case) -> None:
    session = start_terminal(case.kb.home, "init", *SMALL_KDF, env=NO_PASSPHRASE)
    try:
        for prompt in ("(at least 12 characters): ", "Repeat for confirmation: "):
            session.expect(prompt)
            session.send(VAULT_PASSPHRASE)
        assert session.finish() == 0
        case.texts.append(session.transcript.decode(errors="replace"))
    finally:
        session.close()
    session = start_terminal(case.kb.home, "keys", "add", "o1", "-e", "okx", env=NO_PASSPHRASE)
    try:
        for prompt, answer in (
            ("Vault passphrase: ", VAULT_PASSPHRASE),
            ("okx API key: ", OKX_KEY),
            ("(not shown): ", SECRET),
            ("the key was made): ", OKX_PASSPHRASE),
        ):
            session.expect(prompt)
            session.send(answer)
        assert session.finish() == 0
        case.texts.append(session.transcript.decode(errors="replace"))
    finally:
        session.close()
    case.typed_public_keys = True


def objects(case: Case) -> None:
    """Every object that holds a secret, and every error type, printed every way."""
    case.init()
    case.kb("keys", "add", "o1", "-e", "okx", "--from-env", env=OKX)
    secret = Secret(SECRET)
    material = KeyMaterial(OKX_KEY, Secret(SECRET), Secret(OKX_PASSPHRASE), "hmac")
    credential = Credential("o1", "okx", OKX_KEY, Secret(SECRET), Secret(OKX_PASSPHRASE))
    with Vault.open(case.kb.vault_path) as vault:
        vault.unlock(Secret(VAULT_PASSPHRASE))
        stored = vault.credential("o1")
        case.see(vault, vault.record("o1"), vault.list_credentials(), vault.info(), stored)
        case.see(vault.verify())
    case.see(secret, material, credential, [secret], {"k": credential}, (material,))
    case.see(EnvNames.of(get_profile("okx")), *envfile.parse(f"OKX_API_SECRET={SECRET}\n"))
    for value in (secret, material, credential):
        try:
            pickle.dumps(value)
        except Exception as error:
            case.texts.append("".join(traceback.format_exception(error)))
    # Every error class, built with a message, raised while a secret-bearing
    # exception is being handled (so chaining is exercised), then formatted.
    for error_type in _all_subclasses(KeybrokerError):
        try:
            try:
                raise ValueError("inner")
            except ValueError:
                raise error_type("credential o1: something failed") from None
        except KeybrokerError as error:
            case.see(error, error.args)
            case.texts.append("".join(traceback.format_exception(error)))
    logger = logging.getLogger("keybroker.leaktest")
    logger.debug("material %s %r", material, material)
    logger.info("credential %s secret %s", credential, secret)
    logger.warning("passphrase %s", credential.passphrase)
    logger.error("with formatting %-40s|%r", secret, [credential])
    # And the profile's own check with bad shapes: InvalidInput names the field only.
    for api_key, bad_secret, passphrase in (
        (OKX_KEY, Secret(f"{SECRET} x"), Secret(OKX_PASSPHRASE)),
        (OKX_KEY, Secret(SECRET), None),
        (f"{OKX_KEY} {SECRET}", Secret(SECRET), Secret(OKX_PASSPHRASE)),
    ):
        with pytest.raises(KeybrokerError) as caught:
            get_profile("okx").check_credential(api_key, bad_secret, passphrase, "hmac")
        case.see(caught.value)
        case.texts.append("".join(traceback.format_exception(caught.value)))


def _all_subclasses(root: type[KeybrokerError]) -> Iterator[type[KeybrokerError]]:
    yield root
    for child in root.__subclasses__():
        yield from _all_subclasses(child)


CASES: list[Callable[[Case], None]] = [
    init_prompted,
    init_from_passphrase_file,
    add_interactive,
    add_from_env,
    add_from_stdin,
    add_pem_key,
    list_and_show,
    rotate,
    copy_to_clipboard,
    import_env_and_remove,
    remove,
    passwd,
    verify_and_tamper,
    info,
    upgrade_kdf,
    run_demo,
    wrong_passphrase,
    bad_input,
    terminal_prompts,
    objects,
]


def _forms(canary: str) -> list[bytes]:
    raw = canary.encode()
    return [raw, base64.b64encode(raw), raw.hex().encode(), canary.encode("utf-16-le")]


@pytest.fixture(scope="module")
def canary_vault(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty vault whose passphrase is the canary, made once by ``keybroker init``."""
    home = tmp_path_factory.mktemp("canary") / "home"
    maker = Kb(home)
    maker.env["KEYBROKER_PASSPHRASE"] = VAULT_PASSPHRASE
    maker("init", *SMALL_KDF)
    return home / "vault.db"


@pytest.mark.parametrize("drive", CASES, ids=lambda drive: drive.__name__)
def test_no_secret_leaks(
    drive: Callable[[Case], None],
    kb: Kb,
    tmp_path: Path,
    canary_vault: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    kb.env["KEYBROKER_PASSPHRASE"] = VAULT_PASSPHRASE
    case = Case(kb, tmp_path, canary_vault)
    drive(case)
    assert kb.runs or case.texts, "the case drove nothing"
    assert all(error_type in keybroker.errors.__dict__.values() for error_type in
               _all_subclasses(KeybrokerError))  # fmt: skip

    searched = [run.text for run in kb.runs] + case.texts
    searched += [record.getMessage() for record in caplog.records]
    searched += [repr(record.args) for record in caplog.records]
    searched += [path.read_text(errors="replace") for path in case.files if path.exists()]
    visible = case.canaries if case.typed_public_keys else case.canaries | case.public
    for text in searched:
        for canary in visible:
            assert canary not in text, f"{canary!r} leaked into: {text[:2000]}"

    stored = sorted(kb.home.glob("vault.db*")) if kb.home.exists() else []
    if drive is not run_demo:
        assert stored, "the case made no vault"
    for path in stored:
        data = path.read_bytes()
        for canary in case.canaries | case.public:
            for form in _forms(canary):
                assert form not in data, f"{canary!r} is in {path.name} as {form[:20]!r}"
