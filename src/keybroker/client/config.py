"""What an adapter needs to reach one exchange account, and the safe ways to build it.

    >>> cfg = binance_testnet_config()          # BINANCE_API_KEY / BINANCE_API_SECRET
    >>> cfg
    ExchangeConfig(exchange_id='binance', api_key='abcd…wxyz', api_secret=Secret('***'), ...)

Keys come from the environment (``binance_testnet_config``, ``okx_testnet_config``)
or from the vault (``vault_config``), never from source. ``testnet=True`` is the
default; live money needs two explicit steps, ``testnet=False`` *and* a production
``rest_base_url``, so that neither a flipped flag nor a pasted URL alone can point
a bot at a real account. The secret and passphrase are held as ``Secret`` and no
repr, str or error message shows them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import quote, urlsplit

from keybroker.client.errors import CREDENTIAL_UNAVAILABLE, config_error
from keybroker.errors import ExchangeError, InvalidInput, VaultError
from keybroker.model import Credential, Environment, mask
from keybroker.secret import Secret
from keybroker.settings import PASSPHRASE_VARIABLE, Settings


class ExchangeId(StrEnum):
    """The exchanges an in-process adapter exists for."""

    Binance = "binance"
    OKX = "okx"


# The variables the env factories read (and the only ones).
BINANCE_VARIABLES = ("BINANCE_API_KEY", "BINANCE_API_SECRET")
OKX_VARIABLES = ("OKX_API_KEY", "OKX_API_SECRET", "OKX_PASSPHRASE")

# Exchanges whose *host* decides testnet or live. OKX's does not: its signer adds or
# strips ``x-simulated-trading`` from the environment, so any OKX host is demo or live
# by that header, and a live key is refused in demo (50101).
_HOST_DECIDES_ENVIRONMENT = frozenset({ExchangeId.Binance})


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses, the only hosts plain http may reach."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(what: str, url: str, secure: str, plain: str) -> str:
    """``url`` without a trailing slash; ExchangeError unless it is ``secure``, or ``plain``
    to a loopback host (an emulator on this machine)."""
    if not isinstance(url, str) or not url.strip():
        raise config_error(f"{what} is empty")
    parts = urlsplit(url.strip())
    if parts.username is not None or parts.password is not None:
        raise config_error(f"{what} must not carry a user name or password")
    if parts.query or parts.fragment:
        raise config_error(f"{what} must not carry a query string or fragment")
    host = parts.hostname or ""
    if not host:
        raise config_error(f"{what} has no host")
    if parts.scheme == plain:
        if not is_loopback(host):
            raise config_error(
                f"{what} uses {plain}:// to {host}; only loopback hosts may be reached "
                f"without TLS, use {secure}://"
            )
    elif parts.scheme != secure:
        raise config_error(f"{what} must start with {secure}://")
    return url.strip().rstrip("/")


def _known_hosts(exchange: str) -> tuple[set[str], set[str]]:
    # (production hosts, testnet and demo hosts), from the profile's own table.
    from keybroker.exchanges import get_profile  # heavy (httpx, signers): only when needed

    production: set[str] = set()
    testing: set[str] = set()
    for urls in get_profile(exchange).base_urls.values():
        for environment, url in urls.items():
            host = urlsplit(url).hostname or ""
            (production if environment == "production" else testing).add(host)
    return production - testing, testing


@dataclass(frozen=True, init=False, repr=False, eq=False)
class ExchangeConfig:
    """One exchange account for an adapter; immutable, and its repr shows no secret.

    ``api_secret`` and ``passphrase`` may be given as str and are kept as
    ``Secret``. ``rest_base_url`` overrides the profile's host (an emulator on
    127.0.0.1, a regional site); http:// is accepted only for loopback hosts.
    ``key_type`` (keyword only) is ``"hmac"`` unless the key is a Binance
    ``"ed25519"`` or ``"rsa"`` key, whose ``api_secret`` is the PEM private key.
    ``headers`` (keyword only) are sent with every request, values kept as
    ``Secret`` (a gateway's bot token is one); the repr names them, never a value.
    Raises ExchangeError (code ``InvalidConfig``) naming what is wrong or missing.
    """

    exchange_id: ExchangeId
    api_key: str
    api_secret: Secret
    passphrase: Secret | None
    rest_base_url: str | None
    ws_url: str | None
    testnet: bool
    key_type: str
    headers: tuple[tuple[str, Secret], ...]

    def __init__(
        self,
        exchange_id: ExchangeId | str,
        api_key: str,
        api_secret: Secret | str | bytes,
        passphrase: Secret | str | bytes | None = None,
        rest_base_url: str | None = None,
        ws_url: str | None = None,
        testnet: bool = True,
        *,
        key_type: str = "hmac",
        headers: Mapping[str, Secret | str] | None = None,
    ) -> None:
        try:
            exchange = ExchangeId(str(exchange_id).strip().lower())
        except ValueError:
            choices = ", ".join(member.value for member in ExchangeId)
            raise config_error(
                f"no adapter for exchange {exchange_id!r}; choose one of: {choices}"
            ) from None
        if not isinstance(testnet, bool):
            raise config_error("testnet must be True or False")
        if not isinstance(api_key, str):
            raise config_error("api_key must be a str")
        secret = _as_secret("api_secret", api_secret)
        phrase = None if passphrase is None else _as_secret("passphrase", passphrase)
        if exchange is ExchangeId.Binance and phrase is not None:
            raise config_error("binance keys have no passphrase; leave passphrase unset")
        rest = None if rest_base_url is None else check_url("rest_base_url", rest_base_url,
                                                          "https", "http")  # fmt: skip
        ws = None if ws_url is None else check_url("ws_url", ws_url, "wss", "ws")
        set_field = object.__setattr__
        set_field(self, "exchange_id", exchange)
        set_field(self, "api_key", api_key.strip())
        set_field(self, "api_secret", secret)
        set_field(self, "passphrase", phrase)
        set_field(self, "rest_base_url", rest)
        set_field(self, "ws_url", ws)
        set_field(self, "testnet", testnet)
        set_field(self, "key_type", key_type)
        set_field(self, "headers", _as_headers(headers))
        self._check_environment()
        self._check_credential()

    @property
    def environment(self) -> Environment:
        return "testnet" if self.testnet else "production"

    def credential(self) -> Credential:
        """The Credential the exchange profile signs with (shares this config's Secrets)."""
        return Credential(
            name=f"{self.exchange_id.value}-{self.environment}",
            exchange=self.exchange_id.value,
            api_key=self.api_key,
            secret=self.api_secret,
            passphrase=self.passphrase,
            key_type=self.key_type,  # type: ignore[arg-type]  # checked by the profile
            environment=self.environment,
        )

    def __repr__(self) -> str:
        return (
            f"ExchangeConfig(exchange_id={self.exchange_id.value!r}, "
            f"api_key={mask(self.api_key)!r}, api_secret=Secret('***'), "
            f"passphrase={'Secret(***)' if self.passphrase is not None else None}, "
            f"rest_base_url={self.rest_base_url!r}, ws_url={self.ws_url!r}, "
            f"testnet={self.testnet!r}"
            + (f", headers={[name for name, _ in self.headers]!r}" if self.headers else "")
            + ")"
        )

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("ExchangeConfig refuses to be pickled: a pickle would carry the secret")

    def _check_environment(self) -> None:
        name = self.exchange_id.value
        host = (urlsplit(self.rest_base_url).hostname or "") if self.rest_base_url else ""
        if not self.testnet and self.rest_base_url is None:
            raise config_error(
                f"testnet=False is not enough for live trading on {name}: also pass the "
                "production rest_base_url explicitly (e.g. "
                f"{'https://api.binance.com' if name == 'binance' else 'https://www.okx.com'})"
            )
        if not host or is_loopback(host) or self.exchange_id not in _HOST_DECIDES_ENVIRONMENT:
            return
        production, testing = _known_hosts(name)
        if not self.testnet and host in testing:
            raise config_error(
                f"testnet=False but rest_base_url is {name}'s test host {host}; "
                "live trading needs the production URL"
            )
        if self.testnet and host in production:
            raise config_error(
                f"rest_base_url is {name}'s production host {host} but testnet=True; "
                "pass testnet=False as well to trade with real money"
            )

    def _check_credential(self) -> None:
        from keybroker.exchanges import get_profile  # heavy: only when a config is built

        try:
            get_profile(self.exchange_id.value).check_credential(
                self.api_key, self.api_secret, self.passphrase, self.key_type
            )
        except InvalidInput as exc:
            # The profile's message names the field (api key, secret, passphrase), never a value.
            raise config_error(f"{self.exchange_id.value} config: {exc.message}") from None


def _as_secret(what: str, value: Secret | str | bytes) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str | bytes | bytearray):
        return Secret(value)
    raise config_error(f"{what} must be a str or a keybroker.Secret")


def _as_headers(headers: Mapping[str, Secret | str] | None) -> tuple[tuple[str, Secret], ...]:
    if headers is None:
        return ()
    if not isinstance(headers, Mapping):
        raise config_error("headers must be a mapping of header name to value")
    kept: list[tuple[str, Secret]] = []
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise config_error("a header name must be letters, digits and -")
        secret = _as_secret(f"header {name}", value)
        if any(ch in secret.reveal_text() for ch in "\r\n\0"):
            raise config_error(f"header {name} must be one line")
        kept.append((name, secret))
    return tuple(kept)


_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def _from_environment(
    exchange: ExchangeId, names: tuple[str, ...], environ: Mapping[str, str] | None
) -> ExchangeConfig:
    environ = os.environ if environ is None else environ
    values = {name: environ.get(name, "").strip() for name in names}
    missing = [name for name, value in values.items() if not value]
    if missing:
        listed = " and ".join(missing) if len(missing) <= 2 else ", ".join(missing)
        verb = "is" if len(missing) == 1 else "are"
        raise config_error(
            f"{listed} {verb} not set: export the {exchange.value} testnet key in the "
            "shell (or a secrets manager), never in source"
        )
    passphrase = values[names[2]] if len(names) > 2 else None
    return ExchangeConfig(exchange, values[names[0]], values[names[1]], passphrase, testnet=True)


def binance_testnet_config(*, environ: Mapping[str, str] | None = None) -> ExchangeConfig:
    """A testnet config from BINANCE_API_KEY and BINANCE_API_SECRET, and nothing else.

    ``environ`` defaults to ``os.environ``. Raises ExchangeError (``InvalidConfig``)
    naming each missing or empty variable, never a value.
    """
    return _from_environment(ExchangeId.Binance, BINANCE_VARIABLES, environ)


def okx_testnet_config(*, environ: Mapping[str, str] | None = None) -> ExchangeConfig:
    """A demo-trading config from OKX_API_KEY, OKX_API_SECRET and OKX_PASSPHRASE.

    ``environ`` defaults to ``os.environ``. Raises ExchangeError (``InvalidConfig``)
    naming each missing or empty variable, never a value.
    """
    return _from_environment(ExchangeId.OKX, OKX_VARIABLES, environ)


def vault_config(
    name: str,
    *,
    home: Path | str | None = None,
    passphrase: Secret | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ExchangeConfig:
    """The config for the vault credential ``name``.

    The vault is found as the CLI finds it: ``home``, else KEYBROKER_HOME, else
    the platform's data directory. The passphrase is ``passphrase``, else
    KEYBROKER_PASSPHRASE (weaker: other processes of the user can read an
    environment). The credential's own environment decides testnet or live: a
    production credential was marked so explicitly when it was added
    (``keys add --production``), and its base URL (or the profile's production
    host) becomes the explicit ``rest_base_url``. The vault is locked and closed
    before this returns. Raises ExchangeError: ``InvalidConfig`` when no
    passphrase is given, ``CredentialUnavailable`` (with the VaultError as
    cause) when the vault is missing, the passphrase wrong or the name unknown.
    """
    environ = os.environ if environ is None else environ
    settings = Settings.from_env(environ, Path(home).expanduser() if home is not None else None)
    if passphrase is None:
        value = environ.get(PASSPHRASE_VARIABLE, "")
        if not value:
            raise config_error(
                f"no vault passphrase: pass passphrase= or set {PASSPHRASE_VARIABLE}"
            )
        passphrase = value
    secret = passphrase if isinstance(passphrase, Secret) else Secret(passphrase)
    from keybroker.vault import Vault  # sqlite and the KDF: only when a vault is used

    try:
        with Vault.open(settings.vault_path) as vault:
            vault.unlock(secret)
            credential = vault.credential(name)
    except VaultError as exc:
        raise ExchangeError(exc.message, code=CREDENTIAL_UNAVAILABLE) from exc
    try:
        exchange = ExchangeId(credential.exchange)
    except ValueError:
        choices = ", ".join(member.value for member in ExchangeId)
        raise config_error(
            f"credential {name!r} is a {credential.exchange} key; adapters exist for: {choices}"
        ) from None
    rest_base_url = credential.base_url
    if credential.environment == "production" and rest_base_url is None:
        from keybroker.exchanges import get_profile

        rest_base_url = get_profile(exchange.value).base_url("/api", "production")
    return ExchangeConfig(
        exchange,
        credential.api_key,
        credential.secret,
        credential.passphrase,
        rest_base_url=rest_base_url,
        testnet=credential.environment == "testnet",
        key_type=credential.key_type,
    )


# The variables a bot behind the gateway reads (gateway_config, connect_ccxt).
GATEWAY_URL_VARIABLE = "KEYBROKER_GATEWAY_URL"
TOKEN_VARIABLE = "KEYBROKER_TOKEN"  # noqa: S105 - a variable name, not a value
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8787"
GATEWAY_TOKEN_HEADER = "X-Keybroker-Token"  # noqa: S105 - a header name
# Obviously fake key fields for an adapter behind the gateway: the adapter signs
# with them as it always does, and the gateway replaces key, timestamp and signature.
PLACEHOLDER_API_KEY = "keybroker-gateway-signs"
PLACEHOLDER_SECRET = "a2V5YnJva2VyIGdhdGV3YXkgc2lnbnMgdGhpcyByZXF1ZXN0"  # noqa: S105
PLACEHOLDER_PASSPHRASE = "keybroker-gateway"  # noqa: S105


def gateway_base_url(credential: str, gateway_url: str | None = None) -> str:
    """``{gateway_url}/{credential}``: where a bot sends the exchange paths of ``credential``.

    ``gateway_url`` defaults to KEYBROKER_GATEWAY_URL, else http://127.0.0.1:8787;
    it must be https, or http to a loopback host (as for any adapter URL).
    """
    if not isinstance(credential, str) or not credential.strip() or "/" in credential:
        raise config_error("credential must be the gateway credential's name (no /)")
    return f"{gateway_root(gateway_url)}/{quote(credential.strip(), safe='')}"


def gateway_root(gateway_url: str | None = None) -> str:
    """The gateway's URL, checked, without a trailing slash (defaults as ``gateway_base_url``)."""
    url = gateway_url or os.environ.get(GATEWAY_URL_VARIABLE, "") or DEFAULT_GATEWAY_URL
    return check_url("gateway_url", url, "https", "http")


def gateway_config(
    credential: str,
    *,
    token: Secret | str | None = None,
    gateway_url: str | None = None,
    exchange: ExchangeId | str | None = None,
) -> ExchangeConfig:
    """A config that sends an adapter's requests through the keybroker gateway.

        >>> with BinanceAdapter(gateway_config("binance-main", token=token)) as binance:
        ...     binance.place_order("BTCUSDT", "buy", "limit", "0.001", "50000")

    ``rest_base_url`` is ``{gateway_url}/{credential}``; the key fields are
    placeholders (the adapter signs with them as usual, and the gateway strips
    its key, timestamp and signature and signs with the vault's credential);
    the bot token rides on every request as ``X-Keybroker-Token``. ``token``
    defaults to KEYBROKER_TOKEN, ``gateway_url`` to KEYBROKER_GATEWAY_URL, else
    http://127.0.0.1:8787. ``exchange`` is the credential's exchange; when it is
    not given, the gateway is asked (``GET /_/credentials`` with the token, so
    the gateway must be running; ``client/gateway_lookup.py``). Testnet or
    production is the gateway's decision from the credential (and its policy's
    ``allow_production``), so the config is marked testnet. Raises ExchangeError
    (``InvalidConfig``) naming what is missing or wrong.
    """
    base = gateway_base_url(credential, gateway_url)
    if token is None:
        token = os.environ.get(TOKEN_VARIABLE, "")
    secret = token if isinstance(token, Secret) else _as_secret("token", token)
    if not secret:
        raise config_error(f"no bot token: pass token= or set {TOKEN_VARIABLE}")
    if exchange is None:
        from keybroker.client.gateway_lookup import credential_exchange  # imports this module

        exchange = credential_exchange(credential, token=secret, gateway_url=gateway_url)
    try:
        exchange_id = ExchangeId(str(exchange).strip().lower())
    except ValueError:
        choices = ", ".join(member.value for member in ExchangeId)
        raise config_error(
            f"no adapter for exchange {exchange!r}; choose one of: {choices} "
            "(other exchanges: keybroker.connect_ccxt)"
        ) from None
    return ExchangeConfig(
        exchange_id,
        PLACEHOLDER_API_KEY,
        PLACEHOLDER_SECRET,
        PLACEHOLDER_PASSPHRASE if exchange_id is ExchangeId.OKX else None,
        rest_base_url=base,
        testnet=True,
        headers={GATEWAY_TOKEN_HEADER: secret},
    )
