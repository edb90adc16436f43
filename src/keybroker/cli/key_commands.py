"""``keybroker keys …``: add, list, show, rotate, remove, copy and import exchange keys.

    keybroker keys add binance-main --exchange binance
    keybroker keys list --json

Listing and showing read only the clear metadata, so they work without the
passphrase and cannot print a secret: the secret is not in what they read.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keybroker.cli import clipboard, envfile
from keybroker.cli.context import CliState, open_vault, show_help_without_command, unlock
from keybroker.cli.material import (
    EnvNames,
    from_environment,
    from_json,
    from_mapping,
    from_prompts,
    is_current_key,
)
from keybroker.cli.output import note, print_json, print_table, say, warn
from keybroker.cli.passphrase import FILE_HELP
from keybroker.errors import (
    CredentialExists,
    CredentialNotFound,
    InvalidInput,
    UsageError,
    VaultError,
)
from keybroker.model import EXCHANGES, SCOPES, check_choice, mask
from keybroker.vault import CredentialRecord, KeyMaterial, Vault, rotation_status
from keybroker.vault.records import check_base_url, check_name

if TYPE_CHECKING:
    from keybroker.exchanges import ExchangeProfile

# keybroker.exchanges (httpx and every signer) is imported inside the commands
# that take new key material: list, show, remove and copy start twice as fast
# without it, which is most of the time of a CLI call.

app = typer.Typer()


@app.callback(invoke_without_command=True)
def group(ctx: typer.Context) -> None:
    """Exchange keys in the vault: add, list, show, rotate, remove, copy, import-env."""
    show_help_without_command(ctx)


PassphraseFile = Annotated[
    Path | None, typer.Option("--passphrase-file", help=FILE_HELP, metavar="FILE")
]
KeyTypeOption = Annotated[
    str | None,
    typer.Option(
        "--key-type",
        help="hmac, rsa, ed25519 or es256 (default: the exchange's first; rsa/ed25519/es256 "
        "take a PEM private key file).",
        metavar="TYPE",
    ),
]
FromEnv = Annotated[
    bool,
    typer.Option(
        "--from-env",
        help="Read <EXCHANGE>_API_KEY, _API_SECRET, _PASSPHRASE, _PRIVATE_KEY_PATH "
        "(e.g. BINANCE_API_KEY) instead of asking.",
    ),
]
FromStdin = Annotated[
    bool,
    typer.Option(
        "--stdin",
        help='Read one JSON object {"api_key", "secret", "passphrase"?, "private_key_pem"?} '
        "from standard input (for scripts).",
    ),
]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
StoreOption = Annotated[
    str,
    typer.Option(
        "--store",
        help="Where the secret lives: vault (this machine, encrypted) or openbao (imported "
        "into OpenBao's transit engine; only its name stays here). See docs/openbao.md.",
        metavar="STORE",
    ),
]
OpenBaoAddr = Annotated[
    str | None,
    typer.Option(
        "--openbao-addr",
        help="OpenBao's address \\[default: from <home>/openbao.json].",
        metavar="URL",
    ),
]
OpenBaoTokenFile = Annotated[
    Path | None,
    typer.Option(
        "--openbao-token-file",
        help="An OpenBao operator token (mode 600); else $BAO_TOKEN, else asked.",
        metavar="FILE",
    ),
]
STORES = ("vault", "openbao")


def _material(
    profile: ExchangeProfile,
    key_type: str | None,
    from_env: bool,
    stdin: bool,
    state: CliState,
    preferred: str | None = None,
) -> KeyMaterial | None:
    """Key material from the environment or stdin; None means 'ask after unlocking'."""
    if from_env and stdin:
        raise UsageError("--from-env and --stdin cannot be used together")
    if from_env:
        return from_environment(profile, key_type, state.environ, preferred=preferred)
    if stdin:
        return from_json(profile, key_type, sys.stdin.read(), preferred=preferred)
    return None


def _scopes(values: list[str] | None) -> tuple[str, ...]:
    requested = [part.strip() for value in values or ["read"] for part in value.split(",")]
    for scope in requested:
        if scope not in SCOPES:
            raise InvalidInput(f"unknown scope {scope!r}; choose from: {', '.join(SCOPES)}")
    return tuple(scope for scope in SCOPES if scope in requested)


def _age_days(record: CredentialRecord, now: datetime) -> int:
    return (now - (record.rotated_at or record.created_at)).days


def _record_json(record: CredentialRecord, now: datetime) -> dict[str, object]:
    return {
        "name": record.name,
        "exchange": record.exchange,
        "environment": record.environment,
        "scopes": list(record.scopes),
        "key_type": record.key_type,
        "key_id": record.key_id,
        "created_at": record.created_at.isoformat(),
        "rotated_at": record.rotated_at.isoformat() if record.rotated_at else None,
        "age_days": _age_days(record, now),
        "rotation": rotation_status(record, now),
        "base_url": record.base_url,
        "notes": record.notes,
        "version": record.version,
        "key_history": [
            {"key_id": key_id, "retired_at": retired.isoformat()}
            for key_id, retired in record.key_history
        ],
    }


def _require_absent(vault: Vault, name: str) -> None:
    try:
        vault.record(name)
    except CredentialNotFound:
        return
    raise CredentialExists(f"a credential named {name!r} already exists; use keys rotate")


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Your name for this key, e.g. binance-main.")
    ],
    exchange: Annotated[
        str,
        typer.Option("--exchange", "-e", help=f"One of: {', '.join(EXCHANGES)}.", metavar="NAME"),
    ],
    production: Annotated[
        bool, typer.Option("--production", help="A live-money key (default: testnet).")
    ] = False,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="read or trade; repeat or write read,trade (default: read).",
            metavar="SCOPE",
        ),
    ] = None,
    key_type: KeyTypeOption = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="Override the exchange's URL (https).")
    ] = None,
    notes: Annotated[str, typer.Option("--notes", help="Free text kept with the key.")] = "",
    from_env: FromEnv = False,
    stdin: FromStdin = False,
    store: StoreOption = "vault",
    openbao_addr: OpenBaoAddr = None,
    openbao_token_file: OpenBaoTokenFile = None,
    paper: Annotated[
        bool,
        typer.Option(
            "--paper",
            help="A paper-trading credential: the gateway's paper venue answers its orders, "
            "which never reach the exchange; a read-only key is enough (or --no-key).",
        ),
    ] = False,
    no_key: Annotated[
        bool,
        typer.Option(
            "--no-key",
            help="With --paper: store no exchange key at all; only public market data is "
            "fetched, and signed reads are refused.",
        ),
    ] = False,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Store an exchange API key in the vault (asks for it; the secret is not shown).

    With --store openbao the HMAC secret is imported into OpenBao's transit
    engine and wiped here; the vault keeps the api key and the key's name.
    Example: keybroker keys add binance-main --exchange binance --scope read,trade

    Paper trading: keybroker keys add paper-bot --exchange binance --paper --no-key
    """
    from keybroker.exchanges import get_profile
    from keybroker.paper import keyless_material
    from keybroker.policy import Policy

    state = CliState.of(ctx)
    # Everything that can be checked is checked before anything is asked for.
    check_choice("store", store, STORES)
    check_name(name)
    if base_url is not None:
        check_base_url(base_url)
    profile = get_profile(exchange)
    scopes = _scopes(scope)
    environment = "production" if production else "testnet"
    if no_key and not paper:
        raise UsageError("--no-key is for paper credentials: add --paper")
    if no_key and (from_env or stdin or key_type is not None):
        raise UsageError("--no-key stores no key: drop --from-env, --stdin and --key-type")
    if no_key:
        material: KeyMaterial | None = keyless_material(needs_passphrase=profile.needs_passphrase)
    else:
        material = _material(profile, key_type, from_env, stdin, state)
    with open_vault(state) as vault:
        _require_absent(vault, name)
        unlock(vault, state, passphrase_file)
        if material is None:
            material = from_prompts(profile, key_type)

        def keep(checked: KeyMaterial) -> CredentialRecord:
            return vault.add(
                name,
                profile.name,
                checked,
                environment=environment,
                scopes=scopes,
                base_url=base_url,
                notes=notes,
            )

        if store == "openbao":
            from keybroker.cli import openbao_commands

            record = openbao_commands.add_to_openbao(
                state,
                vault,
                profile,
                name,
                material,
                addr=openbao_addr,
                token_file=openbao_token_file,
                store=keep,
            )
        else:
            record = keep(material)
        if paper:
            vault.set_policy(name, Policy(mode="paper").to_json())
        bots = vault.holders_of(name, datetime.now(UTC))
    material.secret.wipe()
    say(
        f"Stored {record.name}: {record.exchange} {record.environment}, "
        f"scopes {','.join(record.scopes)}, {record.key_type} key {record.key_id}."
    )
    if paper:
        say(
            f"{record.name} trades on paper"
            + (" and holds no exchange key (public market data only)." if no_key else ".")
        )
        note(
            f"Next: keybroker paper reset {record.name} --balance USDT=10000, and grant it "
            f"symbols: keybroker policy set {record.name} --scope trade --symbols BTCUSDT"
        )
    elif record.environment == "production":
        warn(f"{record.name} is a production key: it can move real money")
    if bots:
        # Tokens outlive a removed credential of the same name: a bot granted the old one
        # trades with this key from its next request.
        note(f"{_holders(bots)} for {name}: they can use this key now (keybroker tokens list).")
    if from_env:
        names = EnvNames.of(profile)
        note(
            f"The key is in the vault now; unset {names.api_key} and {names.secret} "
            "and remove them from wherever they were set."
        )


@app.command("generate")
def generate(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Your name for this key, e.g. binance-ed.")
    ],
    exchange: Annotated[
        str,
        typer.Option("--exchange", "-e", help=f"One of: {', '.join(EXCHANGES)}.", metavar="NAME"),
    ],
    key_type: Annotated[
        str,
        typer.Option(
            "--key-type",
            help="ed25519 (Binance, Coinbase) or es256 (Coinbase CDP).",
            metavar="TYPE",
        ),
    ],
    store: StoreOption = "openbao",
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            help="The id the exchange gave for the public key (asked after it is shown if not "
            "given).",
            metavar="ID",
        ),
    ] = None,
    production: Annotated[
        bool, typer.Option("--production", help="A live-money key (default: testnet).")
    ] = False,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="read or trade; repeat or write read,trade (default: read).",
            metavar="SCOPE",
        ),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="Override the exchange's URL (https).")
    ] = None,
    notes: Annotated[str, typer.Option("--notes", help="Free text kept with the key.")] = "",
    openbao_addr: OpenBaoAddr = None,
    openbao_token_file: OpenBaoTokenFile = None,
    json_output: JsonOutput = False,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Make a key pair inside OpenBao (not exportable) and print the public key to register.

    Register the printed public key at the exchange, then give the API key id
    it shows (--api-key, or when asked). The private key never exists outside
    OpenBao. Example: keybroker keys generate bn-ed --exchange binance --key-type ed25519
    --store openbao
    """
    from keybroker.cli import openbao_commands
    from keybroker.exchanges import get_profile

    state = CliState.of(ctx)
    check_choice("store", store, STORES)
    if store != "openbao":
        raise UsageError(
            "keys generate makes keys inside OpenBao (--store openbao); for a key in this "
            "vault, make it with openssl and use keys add --key-type"
        )
    check_name(name)
    if base_url is not None:
        check_base_url(base_url)
    profile = get_profile(exchange)
    scopes = _scopes(scope)
    environment = "production" if production else "testnet"

    def show(key_name: str, public_pem: str) -> None:
        if not json_output:
            say(public_pem.rstrip("\n"))
            note(
                f"Register this {key_type} public key at {profile.name}; then give the API "
                "key id it shows."
            )

    with open_vault(state) as vault:
        _require_absent(vault, name)
        unlock(vault, state, passphrase_file)
        record, key_name, public_pem = openbao_commands.generate_in_openbao(
            state,
            vault,
            profile,
            name,
            key_type,
            api_key=api_key,
            addr=openbao_addr,
            token_file=openbao_token_file,
            store=lambda material: vault.add(
                name,
                profile.name,
                material,
                environment=environment,
                scopes=scopes,
                base_url=base_url,
                notes=notes,
            ),
            show_public_key=show,
        )
    if json_output:
        print_json(
            {
                "name": record.name,
                "exchange": record.exchange,
                "environment": record.environment,
                "key_type": record.key_type,
                "key_id": record.key_id,
                "store": "openbao",
                "transit_key": key_name,
                "public_key_pem": public_pem,
            }
        )
    else:
        say(
            f"Stored {record.name}: {record.exchange} {record.environment}, "
            f"{record.key_type} key {record.key_id}, signing in OpenBao ({key_name})."
        )


@app.command("list")
def list_keys(ctx: typer.Context, json_output: JsonOutput = False) -> None:
    """List stored keys: exchange, environment, scopes, age, rotation; never a secret.

    Works without the passphrase. Example: keybroker keys list --json
    """
    state = CliState.of(ctx)
    now = datetime.now(UTC)
    with open_vault(state) as vault:
        records = vault.list_credentials()
    if json_output:
        print_json([_record_json(record, now) for record in records])
        return
    if not records:
        say("No keys yet. Add one: keybroker keys add NAME --exchange binance")
        return
    print_table(
        None,
        ("name", "exchange", "environment", "scopes", "age (days)", "rotation", "key id"),
        (
            (
                record.name,
                record.exchange,
                record.environment,
                ",".join(record.scopes),
                str(_age_days(record, now)),
                rotation_status(record, now),
                record.key_id,
            )
            for record in records
        ),
    )


@app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The credential's name.")],
    json_output: JsonOutput = False,
) -> None:
    """Show one key's metadata and the ids of the keys it replaced; never the secret.

    Works without the passphrase. Example: keybroker keys show binance-main
    """
    state = CliState.of(ctx)
    now = datetime.now(UTC)
    with open_vault(state) as vault:
        record = vault.record(name)
    document = _record_json(record, now)
    if json_output:
        print_json(document)
        return
    print_table(
        f"credential {record.name}",
        ("field", "value"),
        (
            ("exchange", record.exchange),
            ("environment", record.environment),
            ("scopes", ",".join(record.scopes)),
            ("key type", record.key_type),
            ("key id", record.key_id),
            ("created", _when(record.created_at)),
            ("rotated", _when(record.rotated_at) if record.rotated_at else "never"),
            ("age (days)", str(document["age_days"])),
            ("rotation", str(document["rotation"])),
            ("base URL", record.base_url or "the exchange's default"),
            ("notes", record.notes or "-"),
        ),
    )
    if record.key_history:
        print_table(
            "replaced keys (oldest first)",
            ("key id", "retired"),
            ((key_id, _when(retired)) for key_id, retired in record.key_history),
        )


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The credential to give a new key.")],
    key_type: KeyTypeOption = None,
    from_env: FromEnv = False,
    stdin: FromStdin = False,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Replace a credential's key with a new one; the old secret is forgotten.

    Make the new key at the exchange first, rotate, then delete the old key
    there. Example: keybroker keys rotate binance-main
    """
    from keybroker.exchanges import get_profile

    state = CliState.of(ctx)
    with open_vault(state) as vault:
        old = vault.record(name)
        profile = get_profile(old.exchange)
        material = _material(profile, key_type, from_env, stdin, state, old.key_type)
        unlock(vault, state, passphrase_file)
        if material is None:
            material = from_prompts(profile, key_type or old.key_type)
        same_key = is_current_key(vault, name, material)
        record = vault.rotate(name, material)
    material.secret.wipe()
    if same_key:
        say(f"Updated {record.name}: the same API key {record.key_id}, with the secret given now.")
        warn(
            f"this is not a rotation: {record.key_id} is still the key in use, so do not delete "
            f"it at {old.exchange}. To rotate, make a new key there first, then run this again."
        )
        return
    say(f"Rotated {record.name}: new {record.key_type} key {record.key_id}.")
    say(
        f"The old secret ({old.key_id}) is forgotten by the vault. Delete that key at "
        f"{old.exchange} now: until then anyone holding a copy can still use it."
    )


@app.command("remove")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The credential to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a credential from the vault (asks first unless --yes).

    Needs no passphrase: whoever can write the vault file can delete rows
    anyway; the question guards against accidents. Example: keybroker keys remove old-bot --yes

    Bot tokens granted NAME stay valid (revoking them needs the passphrase):
    a key added again as NAME is theirs to use, so revoke them unless it is
    meant for them.
    """
    state = CliState.of(ctx)
    with open_vault(state) as vault:
        record = vault.record(name)
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(f"removing {name} needs --yes: there is no terminal to ask on")
            if not typer.confirm(
                f"Remove {name} ({record.exchange} {record.environment}, key {record.key_id})? "
                "Its secret cannot be recovered",
                default=False,
                err=True,
            ):
                raise UsageError(f"{name} was not removed")
        vault.remove(name)
        bots = vault.holders_of(name, datetime.now(UTC))
    say(f"Removed {name}. Delete key {record.key_id} at {record.exchange} too.")
    if bots:
        # Tokens name credentials, and removing needs no passphrase, so they cannot be
        # revoked here: say who could use a credential added again under this name.
        warn(
            f"{_holders(bots)} for {name}: a credential added again as {name} "
            "is theirs to use at once. "
            f"If that is not wanted: keybroker tokens revoke {bots[0] if len(bots) == 1 else 'BOT'}"
        )


def _holders(bots: list[str]) -> str:
    """Who holds tokens, for a warning: five bots named at most."""
    if len(bots) == 1:
        return f"bot {bots[0]} holds a token"
    more = " and others" if len(bots) > 5 else ""
    return f"bots {', '.join(bots[:5])}{more} hold tokens"


@app.command("copy")
def copy(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="The credential whose secret to copy.")
    ],
    clear_after: Annotated[
        int,
        typer.Option(
            "--clear-after", min=1, max=3600, help="Seconds until the clipboard is cleared."
        ),
    ] = 10,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Copy a key's secret to the clipboard, and clear it again after a few seconds.

    For pasting into an exchange's web form; the secret is never printed.
    Example: keybroker keys copy binance-main --clear-after 15
    """
    state = CliState.of(ctx)
    tool = clipboard.find_tool()
    with open_vault(state) as vault:
        unlock(vault, state, passphrase_file)
        credential = vault.credential(name)
    data = credential.secret.reveal()
    clipboard.copy(tool, data)
    if clipboard.can_read_back(tool):
        clipboard.schedule_clear(tool, data, clear_after)
        say(
            f"Copied the secret of {name} with {tool.name}; it is cleared in {clear_after} s "
            "unless you copy something else first."
        )
    else:
        say(f"Copied the secret of {name} with {tool.name}.")
        warn(f"{tool.paste_argv[0]} is missing, so the clipboard cannot be checked and cleared")
    del data
    credential.secret.wipe()
    if credential.passphrase is not None:
        credential.passphrase.wipe()


@app.command("import-env")
def import_env(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The .env file to read.")],
    remove_lines: Annotated[
        bool,
        typer.Option(
            "--remove", help="Then delete the imported lines from FILE (after checking the vault)."
        ),
    ] = False,
    name_prefix: Annotated[
        str, typer.Option("--name-prefix", help="Prefix for credential names, e.g. 'prod-'.")
    ] = "",
    production: Annotated[
        bool, typer.Option("--production", help="The keys are live-money keys (default: testnet).")
    ] = False,
    json_output: JsonOutput = False,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Move exchange keys from a .env file into the vault (BINANCE_API_KEY, OKX_API_KEY, ...).

    Credentials are named after the exchange (binance, okx, ...). With
    --remove the lines are deleted from the file only after every key was
    read back from the vault and matched. Example: keybroker keys import-env .env --remove
    """
    from keybroker.exchanges import PROFILES

    state = CliState.of(ctx)
    try:
        with file.open(encoding="utf-8", newline="") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise InvalidInput(f"cannot read {file}: {reason}") from None
    assignments = envfile.parse(text, source=str(file))
    found = _keys_in(envfile.values(assignments))
    if not found:
        prefixes = ", ".join(f"{p.env_prefix}_API_KEY" for p in PROFILES.values())
        note(f"No exchange keys in {file} (looked for {prefixes}).")
        if json_output:
            print_json([])
        return
    environment = "production" if production else "testnet"
    for profile, _material, _used in found:
        check_name(name_prefix + profile.name)
    with open_vault(state) as vault:
        for profile, _material, _used in found:
            _require_absent(vault, name_prefix + profile.name)
        unlock(vault, state, passphrase_file)
        for profile, material, _used in found:
            vault.add(name_prefix + profile.name, profile.name, material, environment=environment)
        for profile, material, _used in found:
            _check_read_back(vault, name_prefix + profile.name, material)
    imported = [
        {
            "name": name_prefix + profile.name,
            "exchange": profile.name,
            "environment": environment,
            "key_type": material.key_type,
            "key_id": mask(material.api_key),
        }
        for profile, material, _used in found
    ]
    if json_output:
        print_json(imported)
    else:
        print_table(
            f"imported from {file} ({environment})",
            ("name", "exchange", "key type", "key id"),
            ((row["name"], row["exchange"], row["key_type"], row["key_id"]) for row in imported),
        )
    used = {variable for _profile, _material, names in found for variable in names}
    if remove_lines:
        envfile.replace_atomically(
            file, envfile.without(text, (a for a in assignments if a.key in used))
        )
        note(f"Removed {len(used)} variables from {file}; the rest of it is unchanged.")
    else:
        note(
            f"The keys are still in {file}. Delete them (or rerun with --remove), and "
            "check its backups and git history."
        )
    for profile, material, _used in found:
        material.secret.wipe()
        key_path = envfile.values(assignments).get(EnvNames.of(profile).private_key_path)
        if key_path:
            note(f"The private key file {key_path} is still on disk; delete it once you are sure.")


def _keys_in(values: dict[str, str]) -> list[tuple[ExchangeProfile, KeyMaterial, set[str]]]:
    """Every exchange whose <PREFIX>_API_KEY is set, its checked material, the variables used."""
    from keybroker.exchanges import PROFILES

    found = []
    for profile in PROFILES.values():
        names = EnvNames.of(profile)
        if names.api_key not in values:
            continue
        material = from_mapping(profile, None, values, names)
        used = {names.api_key, names.secret, names.private_key_path}
        if profile.needs_passphrase:
            used.add(names.passphrase)
        found.append((profile, material, used & set(values)))
    return found


def _check_read_back(vault: Vault, name: str, material: KeyMaterial) -> None:
    credential = vault.credential(name)
    same = (
        credential.api_key == material.api_key
        and credential.secret == material.secret
        and (credential.passphrase or None) == (material.passphrase or None)
        and credential.key_type == material.key_type
    )
    if not same:
        raise VaultError(f"{name} reads back different from what was written; nothing removed")
