"""``keybroker init`` and ``keybroker vault …``: create, inspect, verify and re-key the vault.

keybroker init --kdf-memory-mib 256
keybroker vault verify
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Annotated

import typer

from keybroker.cli.context import CliState, open_vault, show_help_without_command, unlock
from keybroker.cli.output import note, print_json, print_table, say
from keybroker.cli.passphrase import FILE_HELP, current_passphrase, new_passphrase
from keybroker.crypto.kdf import Argon2idParams
from keybroker.errors import RecordTampered, VaultExists
from keybroker.vault import Vault

app = typer.Typer()


@app.callback(invoke_without_command=True)
def group(ctx: typer.Context) -> None:
    """The vault itself: info, verify, passwd, upgrade-kdf."""
    show_help_without_command(ctx)


CALIBRATION_SECONDS = 0.5

PassphraseFile = Annotated[
    Path | None, typer.Option("--passphrase-file", help=FILE_HELP, metavar="FILE")
]
MemoryMib = Annotated[
    int | None,
    typer.Option("--kdf-memory-mib", help="Argon2id memory per guess, in MiB (64 or more)."),
]
Iterations = Annotated[
    int | None, typer.Option("--kdf-iterations", help="Argon2id passes over the memory.")
]
Lanes = Annotated[int | None, typer.Option("--kdf-lanes", help="Argon2id parallel lanes.")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _explicit_kdf(
    memory_mib: int | None, iterations: int | None, lanes: int | None
) -> Argon2idParams | None:
    """The parameters given on the command line (others at their defaults), or None."""
    if memory_mib is None and iterations is None and lanes is None:
        return None
    defaults = Argon2idParams()
    return Argon2idParams(
        memory_kib=defaults.memory_kib if memory_mib is None else memory_mib * 1024,
        iterations=defaults.iterations if iterations is None else iterations,
        lanes=defaults.lanes if lanes is None else lanes,
    )


def describe_kdf(params: Argon2idParams) -> str:
    return (
        f"Argon2id, {params.memory_kib // 1024} MiB, {_count(params.iterations, 'pass')}, "
        f"{_count(params.lanes, 'lane')}"
    )


def _count(number: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith("s") else "s")
    return f"{number} {noun if number == 1 else plural}"


def init(
    ctx: typer.Context,
    kdf_memory_mib: MemoryMib = None,
    kdf_iterations: Iterations = None,
    kdf_lanes: Lanes = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Create an empty vault; asks for a passphrase of 12 or more characters, twice.

    The key derivation is calibrated to about half a second on this machine
    unless given. Example: keybroker init --kdf-memory-mib 256
    """
    state = CliState.of(ctx)
    path = state.vault_path
    if path.exists():
        raise VaultExists(f"a vault already exists at {path}; nothing was changed")
    params = _explicit_kdf(kdf_memory_mib, kdf_iterations, kdf_lanes)
    passphrase = new_passphrase(passphrase_file, state.environ)
    if params is None:
        note(f"Calibrating Argon2id to about {CALIBRATION_SECONDS} s per unlock on this machine…")
        params = Argon2idParams.calibrate(target_seconds=CALIBRATION_SECONDS)
        chosen = "calibrated"
    else:
        chosen = "as given"
    try:
        with Vault.create(path, passphrase, kdf=params) as vault:
            info = vault.info()
    finally:
        passphrase.wipe()
    say(f"Created vault {info.path}")
    say(f"Key derivation ({chosen}): {describe_kdf(info.kdf)}.")
    say("Next: keybroker keys add NAME --exchange binance")


@app.command("info")
def info(ctx: typer.Context, json_output: JsonOutput = False) -> None:
    """Show where the vault is, its key-derivation settings, record count and file modes.

    Needs no passphrase. Example: keybroker vault info --json
    """
    state = CliState.of(ctx)
    with open_vault(state) as vault:
        details = vault.info()
    document: dict[str, object] = {
        "path": str(details.path),
        "vault_id": details.vault_id,
        "schema_version": details.schema_version,
        "kdf": {"algorithm": "argon2id", **details.kdf.as_dict()},
        "record_count": details.record_count,
        "file_mode": _mode(details.file_mode),
        "dir_mode": _mode(details.dir_mode),
        "warnings": list(details.warnings),
    }
    if json_output:
        print_json(document)
        return
    print_table(
        None,
        ("vault", ""),
        (
            ("path", str(details.path)),
            ("vault id", details.vault_id),
            ("schema version", str(details.schema_version)),
            ("key derivation", describe_kdf(details.kdf)),
            ("credentials", str(details.record_count)),
            ("file mode", _mode(details.file_mode)),
            ("directory mode", _mode(details.dir_mode)),
            ("warnings", "; ".join(details.warnings) or "none"),
        ),
    )


def _mode(mode: int) -> str:
    return f"{stat.S_IMODE(mode):04o}"


@app.command("verify")
def verify(
    ctx: typer.Context, json_output: JsonOutput = False, passphrase_file: PassphraseFile = None
) -> None:
    """Check that every record decrypts and is unchanged; exit 2 if one is TAMPERED.

    Example: keybroker vault verify
    """
    state = CliState.of(ctx)
    with open_vault(state) as vault:
        unlock(vault, state, passphrase_file)
        results = vault.verify()
    if json_output:
        print_json([{"name": result.name, "ok": result.ok} for result in results])
    elif results:
        print_table(
            None,
            ("credential", "state"),
            ((result.name, "ok" if result.ok else "TAMPERED") for result in results),
        )
    bad = [result.name for result in results if not result.ok]
    if bad:
        raise RecordTampered(
            f"{len(bad)} of {len(results)} vault records failed authentication "
            f"(changed outside keybroker?): {', '.join(bad)}"
        )
    if not json_output:
        say(f"All {len(results)} vault records authenticate (the header and every credential).")


@app.command("passwd")
def passwd(
    ctx: typer.Context,
    passphrase_file: PassphraseFile = None,
    new_passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--new-passphrase-file",
            help="Read the new passphrase from this file (mode 600).",
            metavar="FILE",
        ),
    ] = None,
) -> None:
    """Change the vault passphrase (only the wrapped data key is rewritten).

    Example: keybroker vault passwd
    """
    state = CliState.of(ctx)
    with open_vault(state) as vault:
        unlock(vault, state, passphrase_file)
        # The environment holds the current passphrase, never the new one.
        new = new_passphrase(
            new_passphrase_file,
            state.environ,
            use_environment=False,
            file_option="--new-passphrase-file",
        )
        try:
            vault.change_passphrase(new)
        finally:
            new.wipe()
    say(
        "Passphrase changed. Update any passphrase file or KEYBROKER_PASSPHRASE "
        "that held the old one."
    )


@app.command("upgrade-kdf")
def upgrade_kdf(
    ctx: typer.Context,
    kdf_memory_mib: MemoryMib = None,
    kdf_iterations: Iterations = None,
    kdf_lanes: Lanes = None,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Raise the key-derivation cost (default: recalibrate to about 0.5 s on this machine).

    Example: keybroker vault upgrade-kdf --kdf-memory-mib 512 --kdf-iterations 3
    """
    state = CliState.of(ctx)
    params = _explicit_kdf(kdf_memory_mib, kdf_iterations, kdf_lanes)
    with open_vault(state) as vault:
        current = vault.info().kdf
        if params is None:
            note(f"Calibrating Argon2id to about {CALIBRATION_SECONDS} s on this machine…")
            params = Argon2idParams.calibrate(target_seconds=CALIBRATION_SECONDS)
            if params.is_weaker_than(current) or params == current:
                say(f"Nothing to do: the vault already uses {describe_kdf(current)}.")
                return
        passphrase = current_passphrase(passphrase_file, state.environ)
        try:
            vault.upgrade_kdf(passphrase, params)
        finally:
            passphrase.wipe()
    say(f"Key derivation now: {describe_kdf(params)} (was {describe_kdf(current)}).")
