"""Check 4 (seed 000 §4): objects built with a canary secret never show it.

    >>> check_secret_safe_output(inputs)     # pass, or fail naming "ExchangeConfig: repr"

The check builds what holds a secret in keybroker (a ``Secret``, a
``Credential``, ``KeyMaterial``, ``ExchangeConfig`` for Binance and OKX, both
adapters, a signed request) and the errors that bad key material raises,
from a fresh random canary. It then looks for the canary (and its base64
and hex forms) in each object's ``repr``, ``str``, formatted traceback, and
in every log record written meanwhile. Only the labels of what leaked are
reported, never the canary.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import secrets
import traceback
from collections.abc import Iterable, Iterator

import httpx

from keybroker.doctor.inputs import Inputs
from keybroker.doctor.result import Result
from keybroker.errors import KeybrokerError
from keybroker.model import Credential
from keybroker.secret import Secret


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.texts.append(self.format(record))
            self.texts.append(repr(record.args))


def standard_subjects(canary: str) -> Iterator[tuple[str, object]]:
    """keybroker's own secret-bearing objects and errors, built with ``canary``."""
    from keybroker.client import BinanceAdapter, ExchangeConfig, OKXAdapter
    from keybroker.exchanges import get_profile
    from keybroker.vault import KeyMaterial

    api_key = "doctor-canary-api-key"
    loopback = "http://127.0.0.1:9"  # never contacted: nothing here sends a request
    yield "Secret", Secret(canary)
    yield "Credential", Credential("doctor", "okx", api_key, Secret(canary), Secret(canary))
    yield "KeyMaterial", KeyMaterial(api_key, Secret(canary), Secret(canary))
    binance = ExchangeConfig("binance", api_key, canary, rest_base_url=loopback)
    okx = ExchangeConfig("okx", api_key, canary, canary, rest_base_url=loopback)
    yield "ExchangeConfig(binance)", binance
    yield "ExchangeConfig(okx)", okx
    for label, adapter_type, config in (
        ("BinanceAdapter", BinanceAdapter, binance),
        ("OKXAdapter", OKXAdapter, okx),
    ):
        adapter = adapter_type(config)
        try:
            yield label, adapter
        finally:
            adapter.close()
    credential = Credential("doctor", "binance", api_key, Secret(canary))
    signed = get_profile("binance").sign(
        httpx.Request("GET", f"{loopback}/api/v3/account"), credential
    )
    yield "signed request", signed
    # Errors raised by bad key material: they must name the field, not the value.
    for label, build in (
        ("KeyMaterial error", lambda: KeyMaterial(api_key, Secret(canary + " x"))),
        ("ExchangeConfig error", lambda: ExchangeConfig("binance", api_key, canary, canary)),
        (
            "check_credential error",
            lambda: get_profile("okx").check_credential(
                api_key, Secret(canary + " x"), Secret(canary), "hmac"
            ),
        ),
    ):
        try:
            build()
        except KeybrokerError as error:
            yield label, error


def _forms(canary: str) -> tuple[str, ...]:
    raw = canary.encode()
    return (canary, base64.b64encode(raw).decode(), raw.hex())


def _texts(subject: object) -> Iterable[tuple[str, str]]:
    yield "repr", repr(subject)
    yield "str", str(subject)
    yield "format", f"{subject}"
    if isinstance(subject, BaseException):
        yield "traceback", "".join(traceback.format_exception(subject))


def check_secret_safe_output(inputs: Inputs) -> list[Result]:
    """No canary in any repr, str, traceback or log line of the objects built."""
    canary = "kbcanary" + secrets.token_hex(16)
    forms = _forms(canary)
    leaks: list[str] = []
    capture = _Capture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    logger = logging.getLogger("keybroker.doctor.canary")
    built = 0
    try:
        subjects = (inputs.canary_subjects or standard_subjects)(canary)
        for label, subject in subjects:
            built += 1
            for how, text in _texts(subject):
                if any(form in text for form in forms):
                    leaks.append(f"{label}: {how}")
            logger.debug("%s %r %s", label, subject, subject)
    finally:
        root.removeHandler(capture)
        root.setLevel(previous)
    if any(form in text for text in capture.texts for form in forms):
        leaks.append("log output")
    if leaks:
        return [
            Result(
                "output",
                "output.canary",
                "fail",
                "a canary secret showed in output: fix the repr/str of what is listed "
                "before any real key goes near it",
                tuple(dict.fromkeys(leaks)),
            )
        ]
    return [
        Result(
            "output",
            "output.canary",
            "pass",
            f"a canary secret stayed out of repr, str, tracebacks and logs of {built} objects",
        )
    ]
