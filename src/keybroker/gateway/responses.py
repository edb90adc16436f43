"""The gateway's own answers: every refusal and failure as a small JSON body a bot can switch on.

    >>> refusal(403, "policy_denied", "withdrawals are never signed", rule="never_withdraw")
    >>> error_response(RateLimited("budget spent", retry_after=2.0))   # 429, Retry-After: 2

An exchange's answer is passed through unchanged (``upstream.py``); only what
the gateway itself decided is built here. Each body carries ``error`` (a fixed
code) and ``detail`` (one line), and each such response has an
``X-Keybroker-Error`` header with the same code, so a bot can tell the
gateway's no from the exchange's. Messages come from ``KeybrokerError``
texts, which are built from names and codes only (errors.py); an error that is
not ours becomes ``internal_error`` with no text at all, since its message may
quote anything.
"""

from __future__ import annotations

import json
import math

from starlette.responses import Response

from keybroker.errors import (
    AuditError,
    BadToken,
    CoordinationUnavailable,
    CredentialNotFound,
    ExchangeUnavailable,
    InvalidInput,
    KeybrokerError,
    KeyStoreError,
    KeyStoreUnavailable,
    NetworkError,
    PaperRefused,
    PolicyDenied,
    RateLimited,
    RecordTampered,
    SigningError,
    UnknownEndpoint,
    UnknownExchange,
    UnreadableAmount,
    UpstreamError,
    UsageError,
    VaultError,
    VaultLocked,
)

ERROR_HEADER = "x-keybroker-error"


# Most specific class first: the first match names the error.
_CODES: tuple[tuple[type[KeybrokerError], int, str], ...] = (
    (BadToken, 401, "bad_token"),
    (UnknownEndpoint, 403, "policy_denied"),
    (PolicyDenied, 403, "policy_denied"),
    (RateLimited, 429, "rate_limited"),
    (PaperRefused, 403, "paper_refused"),
    (CredentialNotFound, 404, "unknown_credential"),
    (UnknownExchange, 400, "invalid_request"),
    (UnreadableAmount, 400, "unreadable_amount"),
    (InvalidInput, 400, "invalid_request"),
    (UsageError, 400, "invalid_request"),
    (VaultLocked, 503, "vault_locked"),
    (RecordTampered, 500, "vault_record_tampered"),
    (VaultError, 503, "vault_error"),
    (AuditError, 503, "audit_unavailable"),
    (KeyStoreUnavailable, 503, "key_store_unavailable"),
    (KeyStoreError, 503, "key_store_refused"),
    (CoordinationUnavailable, 503, "coordination_unavailable"),
    (SigningError, 500, "signing_failed"),
    (NetworkError, 504, "upstream_unreachable"),
    (ExchangeUnavailable, 503, "upstream_unavailable"),
    (UpstreamError, 502, "upstream_error"),
)


def refusal(
    status: int,
    error: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: object,
) -> Response:
    """A JSON answer of the gateway's own: ``{"error": error, "detail": detail, **extra}``."""
    body = {"error": error, "detail": detail, **extra}
    all_headers = {ERROR_HEADER: error, "cache-control": "no-store", **(headers or {})}
    return Response(
        json.dumps(body, separators=(",", ":"), default=str).encode("utf-8"),
        status,
        all_headers,
        media_type="application/json",
    )


def denial(rule: str, detail: str) -> Response:
    """403 ``{"error": "policy_denied", "rule", "detail"}``: the request never left the machine."""
    return refusal(403, "policy_denied", detail, rule=rule)


def error_response(error: BaseException) -> Response:
    """The answer for an error raised on the request's way; never the text of a foreign error."""
    if not isinstance(error, KeybrokerError):
        return refusal(500, "internal_error", "the gateway failed; see its log")
    status, code = next(
        ((status, code) for cls, status, code in _CODES if isinstance(error, cls)),
        (500, "internal_error"),
    )
    if isinstance(error, BadToken):
        return refusal(status, code, str(error), headers={"www-authenticate": "Bearer"})
    if isinstance(error, UnknownEndpoint):
        return denial("unknown_endpoint", str(error))
    if isinstance(error, RateLimited):
        retry_after = error.retry_after
        headers = {}
        if retry_after is not None:
            headers["retry-after"] = str(max(1, math.ceil(retry_after)))
        return refusal(status, code, str(error), headers=headers, retry_after=retry_after)
    return refusal(status, code, str(error))
