"""Where a new exchange key comes from: prompts, environment variables, or JSON on stdin.

    >>> material = from_environment(get_profile("okx"), None, os.environ)
    >>> material.secret
    Secret('***')

Every path ends in ``build()``, which applies the same checks (nothing empty,
no whitespace inside, a passphrase where the exchange needs one, the
profile's shape checks), so ``keys add``, ``keys rotate`` and ``keys
import-env`` refuse the same things with the same words. Messages name the
field or the variable, never its value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer

from keybroker.cli.passphrase import prompt_hidden
from keybroker.errors import InvalidInput, UsageError
from keybroker.model import KEY_TYPES, KeyType, check_choice
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial, Vault

if TYPE_CHECKING:
    # Typing only: the exchange profiles (httpx, the signers) load when a key is added.
    from keybroker.exchanges import ExchangeProfile

# Key types whose secret is a private key (PEM; Coinbase also gives Ed25519 as base64).
PRIVATE_KEY_TYPES = ("rsa", "ed25519", "es256")
_STDIN_FIELDS = ("api_key", "secret", "passphrase", "private_key_pem")


@dataclass(frozen=True, slots=True)
class EnvNames:
    """The variable names one exchange's key is read from (``BINANCE_API_KEY``, ...)."""

    api_key: str
    secret: str
    passphrase: str
    private_key_path: str

    @classmethod
    def of(cls, profile: ExchangeProfile) -> EnvNames:
        prefix = profile.env_prefix
        return cls(
            api_key=f"{prefix}_API_KEY",
            secret=f"{prefix}_API_SECRET",
            passphrase=f"{prefix}_PASSPHRASE",
            private_key_path=f"{prefix}_PRIVATE_KEY_PATH",
        )


def is_pem(text: str) -> bool:
    return text.lstrip().startswith("-----BEGIN ")


def prompt_key_type(profile: ExchangeProfile, requested: str | None) -> str:
    """The key type to ask for: the one requested, else the first the profile allows."""
    key_type = requested if requested is not None else profile.key_types[0]
    _check_allowed(profile, key_type)
    return key_type


def _check_allowed(profile: ExchangeProfile, key_type: str) -> None:
    if key_type not in profile.key_types:
        raise InvalidInput(
            f"{profile.name} does not take {key_type} keys; "
            f"choose one of: {', '.join(profile.key_types)}"
        )


def build_detecting(
    profile: ExchangeProfile,
    requested: str | None,
    api_key: str,
    secret: str,
    passphrase: str | None,
    *,
    preferred: str | None = None,
) -> KeyMaterial:
    """``build()`` with the key type requested, or else worked out from the secret.

    An HMAC secret is a plain token. A private key does not say in a form this
    module can read (without ``cryptography``) whether it is RSA, Ed25519 or
    ES256, so the profile's own shape check decides, trying ``preferred`` (the
    type being rotated) first and then the profile's private-key types in order.
    """
    if requested is not None:
        _check_allowed(profile, requested)
        return build(profile, requested, api_key, secret, passphrase)
    if not is_pem(secret) and "hmac" in profile.key_types:
        return build(profile, "hmac", api_key, secret, passphrase)
    candidates = sorted(
        (key_type for key_type in profile.key_types if key_type in PRIVATE_KEY_TYPES),
        key=lambda key_type: key_type != preferred,
    )
    if not candidates:
        raise InvalidInput(f"{profile.name} keys are API secrets, not private keys")
    failure: InvalidInput | None = None
    for key_type in candidates:
        try:
            return build(profile, key_type, api_key, secret, passphrase)
        except InvalidInput as error:
            failure = error
    assert failure is not None
    raise failure


def build(
    profile: ExchangeProfile,
    key_type: str,
    api_key: str,
    secret: str,
    passphrase: str | None,
) -> KeyMaterial:
    """Check one key's parts and wrap them; raises InvalidInput naming the part.

    Surrounding whitespace (the newline ``echo`` adds, a space from pasting)
    is dropped; whitespace inside a token means it was pasted wrong. Whether
    a private key is the right kind is the exchange profile's check.
    """
    api_key = api_key.strip()
    if not api_key:
        raise InvalidInput("the API key is empty")
    if any(ch.isspace() for ch in api_key):
        raise InvalidInput("the API key contains whitespace")
    if key_type == "hmac" and is_pem(secret):
        others = "/".join(t for t in profile.key_types if t in PRIVATE_KEY_TYPES)
        raise InvalidInput(
            "this is a PEM private key, not an API secret"
            + (f"; use --key-type {others}" if others else f"; {profile.name} takes API secrets")
        )
    if is_pem(secret):
        secret = secret.strip() + "\n"
    else:
        # An HMAC secret, or a private key given as one base64 token (Coinbase CDP Ed25519).
        secret = secret.strip()
        what = "API secret" if key_type == "hmac" else "private key"
        if not secret:
            raise InvalidInput(f"the {what} is empty")
        if any(ch.isspace() for ch in secret):
            raise InvalidInput(f"the {what} contains whitespace")
    kept_passphrase: Secret | None = None
    if profile.needs_passphrase:
        passphrase = (passphrase or "").strip()
        if not passphrase:
            raise InvalidInput(f"{profile.name} keys need the API passphrase set at the exchange")
        if any(ch.isspace() for ch in passphrase):
            raise InvalidInput("the API passphrase contains whitespace")
        kept_passphrase = Secret(passphrase)
    elif passphrase:
        raise InvalidInput(f"{profile.name} keys have no API passphrase; leave it out")
    secret_value = Secret(secret)
    profile.check_credential(api_key, secret_value, kept_passphrase, key_type)
    check_choice("key type", key_type, KEY_TYPES)
    return KeyMaterial(
        api_key=api_key,
        secret=secret_value,
        passphrase=kept_passphrase,
        key_type=cast(KeyType, key_type),
    )


def read_private_key_file(path: Path, where: str) -> str:
    """The PEM text of a private key file.

    Errors describe the file by ``where`` it was named ("the file named by
    BINANCE_PRIVATE_KEY_PATH"), never by the path text: people paste the key
    itself where the path should go, and the error would print it back.
    """
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
        raise InvalidInput(f"cannot read {where}: {reason}") from None
    if not is_pem(text):
        raise InvalidInput(f"{where} is not a PEM private key (no -----BEGIN line)")
    return text


def from_environment(
    profile: ExchangeProfile,
    requested: str | None,
    environ: Mapping[str, str],
    *,
    preferred: str | None = None,
) -> KeyMaterial:
    """Read ``<PREFIX>_API_KEY`` and friends; a missing variable is named, never a value."""
    names = EnvNames.of(profile)
    return from_mapping(profile, requested, environ, names, preferred=preferred)


def from_mapping(
    profile: ExchangeProfile,
    requested: str | None,
    values: Mapping[str, str],
    names: EnvNames,
    *,
    preferred: str | None = None,
) -> KeyMaterial:
    """The key named by ``names`` in ``values`` (the environment, or a parsed .env file)."""
    if not values.get(names.api_key, "").strip():
        raise InvalidInput(f"{names.api_key} is not set")
    key_path = values.get(names.private_key_path, "").strip()
    if key_path:
        secret = read_private_key_file(
            Path(key_path), f"the file named by {names.private_key_path}"
        )
    else:
        secret = values.get(names.secret, "")
        if not secret.strip():
            wanted = requested in PRIVATE_KEY_TYPES or "hmac" not in profile.key_types
            missing = names.private_key_path if wanted else names.secret
            raise InvalidInput(f"{missing} is not set")
    passphrase: str | None = None
    if profile.needs_passphrase:
        passphrase = values.get(names.passphrase, "")
        if not passphrase.strip():
            raise InvalidInput(f"{names.passphrase} is not set")
    return build_detecting(
        profile, requested, values[names.api_key], secret, passphrase, preferred=preferred
    )


def from_json(
    profile: ExchangeProfile, requested: str | None, text: str, *, preferred: str | None = None
) -> KeyMaterial:
    """One JSON object: ``api_key``, ``secret`` or ``private_key_pem``, ``passphrase``."""
    try:
        document = json.loads(text)
    except ValueError:
        # The decoder's message quotes the input around the error: not shown.
        raise InvalidInput("standard input is not valid JSON") from None
    if not isinstance(document, dict):
        raise InvalidInput("standard input must be one JSON object")
    if set(document) - set(_STDIN_FIELDS):
        # Not named: a secret pasted as a key would be printed back.
        raise InvalidInput(f"unknown field in the JSON; the fields are: {', '.join(_STDIN_FIELDS)}")
    for field_name, value in document.items():
        if not isinstance(value, str):
            raise InvalidInput(f"JSON field {field_name!r} must be a string")
    if "api_key" not in document:
        raise InvalidInput("JSON field 'api_key' is missing")
    if "secret" in document and "private_key_pem" in document:
        raise InvalidInput("give 'secret' or 'private_key_pem', not both")
    if "private_key_pem" in document:
        secret = document["private_key_pem"]
        if not is_pem(secret):
            raise InvalidInput("'private_key_pem' is not PEM (no -----BEGIN line)")
    elif "secret" in document:
        secret = document["secret"]
    else:
        raise InvalidInput("JSON field 'secret' (or 'private_key_pem') is missing")
    return build_detecting(
        profile,
        requested,
        document["api_key"],
        secret,
        document.get("passphrase"),
        preferred=preferred,
    )


def _is_file(text: str) -> bool:
    try:
        return Path(text).expanduser().is_file()
    except (OSError, ValueError):  # too long for a file name, or a NUL in it: not a path
        return False


_NO_TERMINAL = (
    "nothing was entered; without a terminal, give the key with --from-env or --stdin (see --help)"
)


def from_prompts(profile: ExchangeProfile, requested_type: str | None) -> KeyMaterial:
    """Ask for the key: the API key shows as typed; secrets and private keys do not."""
    key_type = prompt_key_type(profile, requested_type)
    try:
        api_key: str = typer.prompt(f"{profile.name} API key", err=True)
    except typer.Abort:
        # End of input, as in a script or CI: say how to give the key instead.
        raise UsageError(_NO_TERMINAL) from None
    if key_type in PRIVATE_KEY_TYPES:
        # Hidden even though a path is not secret: people paste the key itself here.
        answer = prompt_hidden(
            f"{key_type} private key: path to its PEM file, or a one-line base64 key (not shown)",
            confirm=False,
            without_terminal=_NO_TERMINAL,
        ).strip()
        if is_pem(answer):
            # A prompt reads one line; the rest of a pasted PEM is still waiting in the
            # terminal, where the next prompt or the shell would read it.
            raise InvalidInput(
                "a PEM key is several lines: give the path to its file instead "
                "(and clear the rest of the paste from the terminal, e.g. Ctrl-U)"
            )
        if _is_file(answer):
            secret = read_private_key_file(Path(answer).expanduser(), "that private key file")
        else:
            secret = answer
    else:
        secret = prompt_hidden(
            f"{profile.name} API secret (not shown)", confirm=False, without_terminal=_NO_TERMINAL
        )
    passphrase = None
    if profile.needs_passphrase:
        passphrase = prompt_hidden(
            f"{profile.name} API passphrase (the one set when the key was made)",
            confirm=False,
            without_terminal=_NO_TERMINAL,
        )
    return build(profile, key_type, api_key, secret, passphrase)


def is_current_key(vault: Vault, name: str, material: KeyMaterial) -> bool:
    """Whether ``material`` carries the API key ``name`` already uses (the vault unlocked).

    A "rotation" to the same API key only replaces its secret or passphrase (fixing
    a mistyped one); the key at the exchange is the one in use, so the advice to
    delete the old key there would stop every bot on it, and an incident's leaked
    key would stay in service while reported as rotated.
    """
    current = vault.credential(name)
    try:
        return current.api_key == material.api_key
    finally:
        current.secret.wipe()
        if current.passphrase is not None:
            current.passphrase.wipe()
