"""How the adapters turn the profiles' typed errors into the one ExchangeError a bot catches.

    >>> error = translate(AuthenticationFailed("binance -2015: Invalid API-key", code=-2015))
    >>> error.code, error.venue_code
    ('AuthenticationFailed', -2015)

The profiles (``keybroker.exchanges``) already read each exchange's error
bodies into the UpstreamError tree; this module only names the kind for
``ExchangeError.code`` and carries the useful fields across. The adapters
raise the result ``from`` the UpstreamError, so the typed cause stays in the
traceback and in ``__cause__``.
"""

from __future__ import annotations

from typing import Final

from keybroker.errors import (
    AuthenticationFailed,
    ExchangeError,
    ExchangeRejected,
    ExchangeUnavailable,
    GatewayDenied,
    InsufficientBalance,
    IPBanned,
    NetworkError,
    OrderRejected,
    RateLimitedUpstream,
    TimestampOutsideWindow,
    UpstreamError,
)

# Codes for errors that never reached an exchange.
INVALID_CONFIG: Final = "InvalidConfig"
INVALID_REQUEST: Final = "InvalidRequest"
INVALID_RESPONSE: Final = "InvalidResponse"
UNSUPPORTED: Final = "Unsupported"
ORDER_NOT_FOUND: Final = "OrderNotFound"
CREDENTIAL_UNAVAILABLE: Final = "CredentialUnavailable"


# Most specific first: IPBanned is a RateLimitedUpstream, NetworkError an ExchangeUnavailable.
_KINDS: tuple[tuple[type[UpstreamError], str], ...] = (
    (GatewayDenied, "PolicyDenied"),
    (IPBanned, "IPBanned"),
    (RateLimitedUpstream, "RateLimited"),
    (AuthenticationFailed, "AuthenticationFailed"),
    (TimestampOutsideWindow, "TimestampOutsideWindow"),
    (InsufficientBalance, "InsufficientBalance"),
    (OrderRejected, "OrderRejected"),
    (ExchangeRejected, "ExchangeRejected"),
    (NetworkError, "NetworkError"),
    (ExchangeUnavailable, "ExchangeUnavailable"),
)


def kind_of(error: UpstreamError) -> str:
    """The ``ExchangeError.code`` for a profile's typed error."""
    for error_type, name in _KINDS:
        if isinstance(error, error_type):
            return name
    return "ExchangeError"


def translate(
    error: UpstreamError,
    *,
    code: str | None = None,
    message: str | None = None,
    client_order_id: str | None = None,
    outcome_unknown: bool = False,
) -> ExchangeError:
    """An ExchangeError that says what ``error`` says; raise it ``from error``."""
    translated = ExchangeError(
        message or error.message,
        code=code or kind_of(error),
        exchange=error.exchange,
        status=error.status,
        venue_code=error.code,
        # A ban is waited out (ban_until_ms), never retried into: that lengthens it.
        retryable=error.retryable and not isinstance(error, IPBanned),
        retry_after=getattr(error, "retry_after", None),
        ban_until_ms=getattr(error, "ban_until_ms", None),
        client_order_id=client_order_id,
        outcome_unknown=outcome_unknown,
    )
    translated.http_status = error.http_status
    return translated


def config_error(message: str) -> ExchangeError:
    """A configuration mistake found before anything was sent (exit code 1, like a usage error)."""
    error = ExchangeError(message, code=INVALID_CONFIG)
    error.exit_code = 1
    error.http_status = 400
    return error


def request_error(message: str, *, exchange: str | None = None) -> ExchangeError:
    """A call the adapter refuses to send as asked (bad side, missing price, ...)."""
    error = ExchangeError(message, code=INVALID_REQUEST, exchange=exchange)
    error.exit_code = 1
    error.http_status = 400
    return error
