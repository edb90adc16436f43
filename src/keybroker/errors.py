"""Every error keybroker raises, in one tree.

The CLI catches ``KeybrokerError`` once, prints ``str(error)`` as a single line
and exits with ``error.exit_code``; the gateway will turn the same errors into
HTTP answers with ``http_status``. So each class carries a one-line human
message, a CLI exit code (1 = the command was used wrongly, 2 = keybroker
refused or something failed) and whether retrying can help.

KeybrokerError
├── UsageError                 the caller asked for something malformed (exit 1)
│   ├── InvalidInput           a value failed validation: empty, whitespace, wrong shape
│   │   └── UnreadableAmount   an order amount not in plain decimal text: refused, not guessed
│   └── UnknownExchange        the name is not one of the known exchange profiles
├── RequestRefused             we said no; never retried (exit 2)
│   ├── BadToken               401: missing, unknown, expired or revoked bot token
│   ├── PolicyDenied           403: the credential's policy refuses the request
│   ├── UnknownEndpoint        403: a private endpoint the profile does not know
│   ├── RateLimited            429: the budget is spent (carries retry_after seconds)
│   └── PaperRefused           403: a paper credential's request the paper venue will not
│                              answer and must not forward (no key, no account, unsupported)
├── VaultError                 the encrypted store (exit 2)
│   ├── VaultNotFound          no vault at that path: run `keybroker init`
│   ├── VaultExists            `init` on a vault that is already there
│   ├── VaultLocked            an operation needs the data key: unlock first
│   ├── VaultDamaged           not a keybroker vault, truncated or garbage; left untouched
│   ├── InsecurePermissions    the vault or its directory is writable by others
│   ├── WrongPassphrase        the passphrase does not unwrap the data key
│   ├── WeakPassphrase         shorter than the minimum at init or passwd
│   ├── CredentialNotFound     no credential by that name
│   ├── CredentialExists       a credential by that name is already stored
│   └── RecordTampered         a record failed authentication; no detail is given
├── SigningError               a credential cannot sign this request (wrong key type, bad key)
│   └── KeyStoreError          503: OpenBao, which holds the key, refused to sign (its policy,
│       │                      a missing key); nothing was signed or sent
│       └── KeyStoreUnavailable  503: OpenBao did not answer; never a fallback to a local copy
├── ClipboardUnavailable       no wl-copy, xclip, xsel or pbcopy on this machine
├── AuditError                 the audit log cannot be opened or written: nothing is sent (503)
├── CoordinationUnavailable    the store several gateways share (Redis) is unreachable: no new
│                              order is sent, since shared limits and halts cannot be honoured (503)
├── PaperError                 the paper ledger (<home>/paper.db) cannot be read or written
├── ExchangeError              what the in-process adapters raise; ``.code`` names the kind
│                              (AuthenticationFailed, RateLimited, NetworkError, InvalidConfig…)
│                              and the UpstreamError it translates is its ``__cause__``
└── UpstreamError              the exchange's side (carries the venue's code)
    ├── ExchangeRejected       it answered "no"; resending the same request will not help
    │   ├── AuthenticationFailed     bad key, signature, IP or permission
    │   ├── TimestampOutsideWindow   our clock and theirs disagree beyond recvWindow
    │   ├── InsufficientBalance      not enough funds for the order
    │   ├── OrderRejected            any other refusal of an order
    │   └── GatewayDenied            a keybroker gateway refused it before sending (policy,
    │                                grant, request shape), as an adapter behind it sees it
    ├── RateLimitedUpstream    the exchange throttled us (429), with retry_after
    │   └── IPBanned           418: banned until ban_until (ms since epoch)
    └── ExchangeUnavailable    timeout, 5xx, maintenance; reads may retry
        └── NetworkError       no answer at all: timed out, refused or dropped connection

No message ever interpolates a secret, a request body, a header or a signature:
callers build messages from names and codes only. Every failure to decrypt a
record is the one opaque ``RecordTampered``, so the error cannot be used as an
oracle for which check failed.
"""

from __future__ import annotations


class KeybrokerError(Exception):
    """Base of every error keybroker raises on purpose."""

    exit_code: int = 2
    http_status: int = 500
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(KeybrokerError):
    """The caller asked for something malformed."""

    exit_code = 1
    http_status = 400


class InvalidInput(UsageError):
    """A value failed validation (empty, whitespace inside, wrong shape)."""


class UnreadableAmount(InvalidInput):
    """An order's amount, price or leverage is not in the one form keybroker reads.

    Refused before the policy runs, so an amount the exchange might read as
    more than keybroker did (``1e3``, ``0x10``, `` 5``) never passes as a
    smaller order. The message names the exchange and field, never the value.
    """


class UnknownExchange(UsageError):
    """The exchange name is not one of the known profiles."""


class RequestRefused(KeybrokerError):
    """keybroker said no. Never retried."""

    http_status = 403


class BadToken(RequestRefused):
    """The bot token (at the dashboard: the admin token) is missing, unknown, expired or revoked."""

    http_status = 401


class PolicyDenied(RequestRefused):
    """The credential's policy refuses this request."""


class UnknownEndpoint(RequestRefused):
    """A private endpoint that the exchange profile does not know: denied by default."""


class RateLimited(RequestRefused):
    """keybroker's own budget for this exchange is spent."""

    http_status = 429

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PaperRefused(RequestRefused):
    """A paper credential's request that neither the paper venue answers nor may be forwarded.

    A keyless paper credential's signed read, an order type the paper venue
    does not simulate, or a paper credential whose account was never reset.
    """


class VaultError(KeybrokerError):
    """Something about the encrypted store."""


class VaultNotFound(VaultError):
    """No vault at the path; `keybroker init` creates one."""


class VaultExists(VaultError):
    """`init` was asked to create a vault that already exists."""


class VaultLocked(VaultError):
    """The operation needs the vault's data key; unlock the vault first."""


class VaultDamaged(VaultError):
    """The file is not a readable keybroker vault. It is never recreated or changed."""


class InsecurePermissions(VaultError):
    """The vault or its directory can be written by other users."""


class WrongPassphrase(VaultError):
    """The passphrase does not unwrap the vault's data key."""


class WeakPassphrase(VaultError):
    """The new passphrase is too short."""

    exit_code = 1


class CredentialNotFound(VaultError):
    """No credential by that name."""

    http_status = 404


class CredentialExists(VaultError):
    """A credential by that name already exists."""


class RecordTampered(VaultError):
    """A record failed authentication. Deliberately says nothing about why."""


class SigningError(KeybrokerError):
    """The credential cannot sign this request (wrong key type, unparsable key)."""


class KeyStoreError(SigningError):
    """The key store that holds a credential's key (OpenBao) refused to sign with it.

    The message names the store, the key's name there and OpenBao's own
    reason (e.g. "permission denied"): never a request, a signature or a token.
    """

    http_status = 503


class KeyStoreUnavailable(KeyStoreError):
    """The key store could not be reached, or did not answer in time: nothing was signed."""

    retryable = True


class ClipboardUnavailable(KeybrokerError):
    """No clipboard tool (wl-copy, xclip, xsel, pbcopy) is installed."""


class UpstreamError(KeybrokerError):
    """The exchange's side. Carries the venue's own code when it gave one."""

    http_status = 502

    def __init__(
        self,
        message: str,
        *,
        exchange: str | None = None,
        code: str | int | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.exchange = exchange
        self.code = code
        self.status = status


class ExchangeRejected(UpstreamError):
    """The exchange answered "no"; resending the same request will not help."""


class AuthenticationFailed(ExchangeRejected):
    """Bad key, signature, source IP or permission."""


class TimestampOutsideWindow(ExchangeRejected):
    """Our clock and the exchange's disagree beyond the accepted window."""


class InsufficientBalance(ExchangeRejected):
    """Not enough funds for the order."""


class OrderRejected(ExchangeRejected):
    """Any other refusal of an order."""


class GatewayDenied(ExchangeRejected):
    """The keybroker gateway's own refusal (policy, grant, request shape): nothing was sent.

    What an adapter configured with ``gateway_config`` sees; ``code`` is the
    gateway's error name (``policy_denied``, ``not_granted``, ...) and the
    message carries its rule and detail.
    """


class RateLimitedUpstream(UpstreamError):
    """The exchange throttled us."""

    http_status = 429
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        exchange: str | None = None,
        code: str | int | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, exchange=exchange, code=code, status=status)
        self.retry_after = retry_after


class IPBanned(RateLimitedUpstream):
    """HTTP 418: the exchange banned our IP until ``ban_until_ms``."""

    def __init__(
        self,
        message: str,
        *,
        exchange: str | None = None,
        code: str | int | None = None,
        status: int | None = 418,
        retry_after: float | None = None,
        ban_until_ms: int | None = None,
    ) -> None:
        super().__init__(
            message, exchange=exchange, code=code, status=status, retry_after=retry_after
        )
        self.ban_until_ms = ban_until_ms


class ExchangeUnavailable(UpstreamError):
    """Timeout, 5xx or maintenance. Reads may retry; orders are looked up first."""

    http_status = 503
    retryable = True


class NetworkError(ExchangeUnavailable):
    """No answer at all: the request timed out or its connection was refused or dropped.

    For an order this means the outcome is unknown: it may have been placed.
    """

    http_status = 504


class AuditError(KeybrokerError):
    """The audit log cannot be opened or written, so the request it would record must not go out.

    Its message names the file and SQLite's own error text, never a row's values.
    """

    http_status = 503


class CoordinationUnavailable(KeybrokerError):
    """The store that several gateways share (``serve --redis``) cannot be reached.

    New orders fail closed on it: the shared rate limits, halts and order counts
    cannot be honoured without the store. Its message names the store's host,
    never the password in its URL.
    """

    http_status = 503
    retryable = True


class PaperError(KeybrokerError):
    """The paper ledger cannot be opened, read or written, or holds no such account.

    Its message names the file or the credential, never a balance or an order.
    """


class ExchangeError(KeybrokerError):
    """The one error the in-process adapters (``keybroker.client``) raise.

    ``code`` names the kind as a string a bot can switch on (``"AuthenticationFailed"``,
    ``"RateLimited"``, ``"IPBanned"``, ``"OrderRejected"``, ``"InsufficientBalance"``,
    ``"TimestampOutsideWindow"``, ``"NetworkError"``, ``"ExchangeUnavailable"``,
    ``"OrderNotFound"``, ``"InvalidConfig"``, ...). It is a sibling of UpstreamError,
    not a child, because it also covers configuration mistakes that never reached an
    exchange; when it translates an UpstreamError, that error is ``__cause__`` and
    its venue code is ``venue_code``. ``outcome_unknown`` is True only for an order
    whose fate could not be learned: place it again with the same client order id
    (the adapter looks it up before sending anything).
    """

    http_status = 502

    def __init__(
        self,
        message: str,
        *,
        code: str = "ExchangeError",
        exchange: str | None = None,
        status: int | None = None,
        venue_code: str | int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        ban_until_ms: int | None = None,
        client_order_id: str | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.exchange = exchange
        self.status = status
        self.venue_code = venue_code
        self.retryable = retryable
        self.retry_after = retry_after
        self.ban_until_ms = ban_until_ms
        self.client_order_id = client_order_id
        self.outcome_unknown = outcome_unknown
