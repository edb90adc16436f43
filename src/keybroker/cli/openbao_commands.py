"""``keybroker openbao setup``, and the OpenBao side of ``keys add/generate --store openbao``.

    keybroker openbao setup --addr https://bao.internal:8200 --gateway gw1
    keybroker keys add binance-main --exchange binance --store openbao
    keybroker keys generate bn-ed --exchange binance --key-type ed25519 --store openbao

Setup writes the transit mount, the gateway's policy (printed as HCL),
an AppRole without OpenBao's default policy, and ``<home>/openbao.json`` with
a response-wrapped, single-use secret id that ``keybroker serve`` unwraps at
start. Every command here needs an operator token: ``--openbao-token-file``
(mode 600), else ``$BAO_TOKEN``, else a hidden prompt. docs/openbao.md says
why the root token should be revoked once setup is done.
"""

from __future__ import annotations

import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from keybroker.cli.context import CliState, open_vault, show_help_without_command, unlock
from keybroker.cli.output import note, print_json, say, warn
from keybroker.cli.passphrase import FILE_HELP, prompt_hidden
from keybroker.errors import InsecurePermissions, InvalidInput, UsageError
from keybroker.model import KeyType
from keybroker.secret import Secret
from keybroker.vault import CredentialRecord, KeyMaterial, Vault

if TYPE_CHECKING:
    from keybroker.exchanges import ExchangeProfile
    from keybroker.openbao import Connection, OpenBao, PolicyKey

# keybroker.openbao (httpx) is imported inside the commands, so that every
# other command starts as fast as before.

TOKEN_VARIABLE = "BAO_TOKEN"  # noqa: S105 - the variable's name, not a token
DEFAULT_ROLE = "keybroker-gateway"
DEFAULT_MOUNT = "transit"
STORE = "openbao"

app = typer.Typer()

AddrOption = Annotated[
    str | None,
    typer.Option(
        "--addr",
        "--openbao-addr",
        help=(
            "OpenBao's address (https, or http to loopback) \\[default: from <home>/openbao.json]."
        ),
        metavar="URL",
    ),
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option(
        "--openbao-token-file",
        help=f"An OpenBao operator token (file mode 600, one line); else ${TOKEN_VARIABLE}, "
        "else asked.",
        metavar="FILE",
    ),
]
MountOption = Annotated[
    str | None,
    typer.Option(
        "--mount", help="The transit engine's mount path \\[default: transit].", metavar="PATH"
    ),
]
CaCertOption = Annotated[
    Path | None,
    typer.Option("--ca-cert", help="CA bundle (PEM) that OpenBao's TLS chains to.", metavar="F"),
]


@app.callback(invoke_without_command=True)
def group(ctx: typer.Context) -> None:
    """Keys that never leave OpenBao: connect a gateway to OpenBao's transit engine."""
    show_help_without_command(ctx)


def register(root: typer.Typer) -> None:
    """Add ``keybroker openbao …`` to ``root``."""
    root.add_typer(app, name="openbao")


@app.command("setup")
def setup(
    ctx: typer.Context,
    addr: AddrOption = None,
    gateway: Annotated[
        str,
        typer.Option(
            "--gateway",
            help="This gateway's name: its OpenBao policy and AppRole are called so.",
            metavar="NAME",
        ),
    ] = DEFAULT_ROLE,
    mount: MountOption = None,
    ca_cert: CaCertOption = None,
    wrap_ttl: Annotated[
        str,
        typer.Option("--wrap-ttl", help="How long the wrapped secret id can be unwrapped."),
    ] = "1h",
    token_period: Annotated[
        str,
        typer.Option(
            "--token-period",
            help="The gateway's token lives this long unless renewed (it renews itself).",
        ),
    ] = "1h",  # noqa: S107 - a duration
    token_file: TokenFileOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    passphrase_file: Annotated[
        Path | None, typer.Option("--passphrase-file", help=FILE_HELP, metavar="FILE")
    ] = None,
) -> None:
    """Mount transit, write this gateway's policy and AppRole, hand it a wrapped secret id.

    The policy allows exactly transit/hmac/<key>/<algorithm> and
    transit/sign/<key> for the OpenBao keys in this vault (and renewing its
    own token); it is printed as HCL. Rerun after adding or removing keys, and
    before each gateway start: the secret id is single use.
    OpenBao on the gateway's machine: run it with GOMAXPROCS=1, and on a core of
    its own if you can (its CPU per signature is the latency it adds; see
    docs/openbao.md, Cost).
    Example: keybroker openbao setup --addr https://bao.internal:8200 --gateway gw1
    """
    from keybroker.openbao import Connection, OpenBao, load, save
    from keybroker.openbao.setup import ensure_transit, write_gateway_access
    from keybroker.openbao.transit import check_key_name

    state = CliState.of(ctx)
    assert state.settings is not None
    home = state.settings.home
    existing = load(home)
    check_key_name(gateway)
    addr = addr or (existing.addr if existing else None)
    if addr is None:
        raise UsageError("give --addr: this home has no openbao.json yet")
    mount = mount or (existing.mount if existing else DEFAULT_MOUNT)
    ca = ca_cert or (existing.ca_path if existing else None)
    with open_vault(state) as vault:
        unlock(vault, state, passphrase_file)
        keys = policy_keys(vault)
    token = operator_token(token_file, state)
    with OpenBao(addr, token, ca_cert=ca) as bao:
        mounted = ensure_transit(bao, mount)
        access = write_gateway_access(
            bao, mount, gateway, keys, wrap_ttl=wrap_ttl, token_period=token_period
        )
    token.wipe()
    connection = Connection(
        addr=addr,
        mount=mount,
        role=access.role,
        role_id=access.role_id,
        wrapped_secret_id=access.wrapped_secret_id,
        ca_cert=None if ca is None else str(ca),
    )
    path = save(home, connection)
    if json_output:
        print_json(
            {
                "addr": connection.addr,
                "mount": mount,
                "mounted_now": mounted,
                "policy": access.policy_name,
                "policy_hcl": access.policy,
                "role": access.role,
                "keys": [key.key_name for key in keys],
                "connection_file": str(path),
            }
        )
    else:
        say(f"# policy {access.policy_name}")
        say(access.policy.rstrip("\n"))
        note(
            f"transit at {mount}/ ({'mounted now' if mounted else 'already there'}); "
            f"{len(keys)} key(s) in policy {access.policy_name}; AppRole {access.role}"
        )
        note(
            f"Wrote {path}: a single-use secret id, wrapped for {wrap_ttl}; the next "
            "`keybroker serve` unwraps it. Rerun setup before each gateway start."
        )
    warn(
        "revoke the root token once setup is done (bao token revoke -self): whoever holds "
        "it can make any key exportable again"
    )


# -- shared with keys add/generate --store openbao ------------------------------------------


def operator_token(file: Path | None, state: CliState) -> Secret:
    """The operator's OpenBao token: file (mode 600), else $BAO_TOKEN, else a hidden prompt."""
    if file is not None:
        return _read_token_file(file)
    value = state.environ.get(TOKEN_VARIABLE, "")
    if value:
        return Secret(value.strip())
    return Secret(
        prompt_hidden(
            "OpenBao operator token",
            confirm=False,
            without_terminal=(
                "nothing was entered; without a terminal, give the OpenBao operator token "
                f"with --openbao-token-file or ${TOKEN_VARIABLE}"
            ),
        )
    )


def _read_token_file(path: Path) -> Secret:
    path = path.expanduser()
    try:
        mode = path.stat().st_mode
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read token file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InsecurePermissions(
            f"token file {path} is readable by group or others "
            f"(mode {stat.S_IMODE(mode):o}); fix it with: chmod 600 {path}"
        )
    line = raw.split(b"\n", 1)[0].strip()
    if not line:
        raise InvalidInput(f"token file {path} is empty")
    return Secret(line)


def policy_keys(vault: Vault) -> list[PolicyKey]:
    """Every OpenBao key of the (unlocked) vault, with the HMAC hash its exchange uses."""
    from keybroker.crypto.keys import RemoteKey
    from keybroker.exchanges import get_profile
    from keybroker.openbao import PolicyKey

    keys = []
    for record in vault.list_credentials():
        credential = vault.credential(record.name)
        secret = credential.secret
        if isinstance(secret, RemoteKey) and secret.store == STORE:
            algorithm = None
            if secret.key_type == "hmac":
                algorithm = get_profile(credential.exchange).credentials.hmac_algorithm
            keys.append(PolicyKey(secret.key_name, secret.key_type, algorithm))
        else:
            secret.wipe()
            if credential.passphrase is not None:
                credential.passphrase.wipe()
    return keys


def store_target(addr: str | None, home: Path) -> tuple[str, str, Path | None, Connection | None]:
    """(address, mount, CA bundle, connection) for keys add/generate --store openbao."""
    from keybroker.openbao import load
    from keybroker.openbao.connection import path_in

    existing = load(home)
    if addr is None and existing is None:
        raise UsageError(
            f"give --openbao-addr, or run `keybroker openbao setup --addr URL` first "
            f"(it writes {path_in(home)})"
        )
    chosen = addr or (existing.addr if existing else "")
    mount = existing.mount if existing else DEFAULT_MOUNT
    return chosen, mount, existing.ca_path if existing else None, existing


def refresh_policy(bao: OpenBao, connection: Connection | None, vault: Vault) -> None:
    """Rewrite the gateway's policy for the vault's keys now, if a gateway was set up."""
    from keybroker.openbao import policy_hcl

    if connection is None:
        note("No gateway is set up yet: run `keybroker openbao setup --addr URL` next.")
        return
    hcl = policy_hcl(connection.mount, policy_keys(vault))
    bao.request("PUT", f"sys/policies/acl/{connection.role}", {"policy": hcl})
    note(f"Policy {connection.role} now allows this key too; running gateways use it at once.")


def ask_api_key(profile: ExchangeProfile) -> str:
    """The exchange's id for a public key just registered there (asked on the terminal)."""
    if not sys.stdin.isatty():
        raise UsageError("give --api-key: there is no terminal to ask on")
    value: str = typer.prompt(
        f"The API key {profile.name} gave for this public key", err=True, show_default=False
    )
    return value.strip()


def add_to_openbao(
    state: CliState,
    vault: Vault,
    profile: ExchangeProfile,
    name: str,
    material: KeyMaterial,
    *,
    addr: str | None,
    token_file: Path | None,
    store: Callable[[KeyMaterial], CredentialRecord],
) -> CredentialRecord:
    """Import ``material``'s HMAC key into transit; ``store`` the record that names it.

    The vault keeps the api key, the passphrase (OKX, Coinbase Exchange: it is
    sent with every request, not a signing key) and the transit key's name;
    the secret itself is wiped here once OpenBao has it.
    """
    from keybroker.crypto.keys import RemoteKey
    from keybroker.openbao import OpenBao, new_key_name
    from keybroker.openbao.setup import ensure_transit, import_hmac_key

    if material.key_type != "hmac":
        raise UsageError(
            f"--store openbao imports HMAC secrets; make {material.key_type} keys inside "
            f"OpenBao instead: keybroker keys generate {name} --exchange {profile.name} "
            f"--key-type {material.key_type} --store openbao"
        )
    assert state.settings is not None
    target, mount, ca, connection = store_target(addr, state.settings.home)
    key_name = new_key_name(name)
    token = operator_token(token_file, state)
    try:
        with OpenBao(target, token, ca_cert=ca) as bao:
            ensure_transit(bao, mount)
            import_hmac_key(bao, mount, key_name, profile.hmac_key(material.secret))
            record = store(
                KeyMaterial(
                    material.api_key,
                    RemoteKey(STORE, key_name, "hmac"),
                    material.passphrase,
                    "hmac",
                )
            )
            refresh_policy(bao, connection, vault)
    finally:
        token.wipe()
        material.secret.wipe()
    note(f"The secret is in OpenBao as {mount}/keys/{key_name} (not exportable); this vault")
    note("holds only that name. Delete any other copy of the secret you still have.")
    return record


def generate_in_openbao(
    state: CliState,
    vault: Vault,
    profile: ExchangeProfile,
    name: str,
    key_type: str,
    *,
    api_key: str | None,
    addr: str | None,
    token_file: Path | None,
    store: Callable[[KeyMaterial], CredentialRecord],
    show_public_key: Callable[[str, str], None],
) -> tuple[CredentialRecord, str, str]:
    """Make a non-exportable key in transit, show its public key, store the record naming it.

    Returns the record, the transit key name and the public key (PEM).
    """
    from keybroker.crypto.keys import RemoteKey
    from keybroker.openbao import OpenBao, new_key_name
    from keybroker.openbao.setup import ensure_transit, generate_key

    if key_type not in ("ed25519", "es256") or key_type not in profile.key_types:
        usable = [kind for kind in profile.key_types if kind in ("ed25519", "es256")]
        raise UsageError(
            f"keys generate makes ed25519 or es256 keys; {profile.name} takes "
            f"{', '.join(usable) or 'neither'}"
        )
    if api_key is None and not sys.stdin.isatty():
        raise UsageError("give --api-key: there is no terminal to ask for it on")
    assert state.settings is not None
    target, mount, ca, connection = store_target(addr, state.settings.home)
    key_name = new_key_name(name)
    token = operator_token(token_file, state)
    try:
        with OpenBao(target, token, ca_cert=ca) as bao:
            ensure_transit(bao, mount)
            public_pem = generate_key(bao, mount, key_name, key_type)
            show_public_key(key_name, public_pem)
            if api_key is None:
                api_key = ask_api_key(profile)
            record = store(
                KeyMaterial(
                    api_key, RemoteKey(STORE, key_name, key_type), None, cast(KeyType, key_type)
                )
            )
            refresh_policy(bao, connection, vault)
    finally:
        token.wipe()
    return record, key_name, public_pem
