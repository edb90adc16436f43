"""Alerts (seed 000 §8): a log line always, plus an optional webhook and an optional command.

    >>> alerter = Alerter("https://hooks.example.com/T000/B000/XXXX", "notify-send keybroker")
    >>> alerter.notify({"alert": "PolicyDenied", "credential": "binance-main", "rule": "symbols"})
    >>> alerter.close()

``notify`` never blocks and never raises: the caller is a request on its way
to an exchange, and an alert must not slow or fail it. It writes the log line
at once and queues the rest.

The same alert again (same name, credential, bot, rule...) within
``repeat_window_s`` is counted, not sent: 45 bots running into a rate limit
would otherwise send hundreds of identical lines a second, flooding the log,
the webhook's channel and the sink's queue (which then drops the alert that
matters). The next one after the window carries ``repeated=N``, the number
held back since the last one sent. One background thread per sink delivers: the
webhook gets the event as a JSON POST, retried with exponential backoff on
network errors, 408, 429 and 5xx; the command gets the same JSON on stdin.

A webhook URL is often a secret itself (Slack and Discord put the key in the
path), so only its scheme and host are ever printed. The command runs
without a shell and without keybroker's own variables (the vault passphrase
may be one of them) or anything named like an exchange key.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import queue
import random
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from keybroker.audit.row import iso_time, mask_secrets
from keybroker.clock import Clock, SystemClock
from keybroker.errors import (
    AuthenticationFailed,
    InvalidInput,
    IPBanned,
    OrderRejected,
    PolicyDenied,
    RateLimited,
    RateLimitedUpstream,
    UnknownEndpoint,
)

logger = logging.getLogger("keybroker.alerts")

ALERTS = ("AuthenticationFailed", "RateLimited", "IPBanned", "OrderRejected", "PolicyDenied")
"""The alert names of seed 000 §8, as ``alert_name`` gives them."""

_SECRET_NAME_ENDINGS = (
    "_API_KEY",
    "_API_SECRET",
    "_SECRET",
    "_PASSPHRASE",
    "_PASSWORD",
    "_TOKEN",
    "_PRIVATE_KEY_PATH",
)
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_QUEUE_SIZE = 1000
_VARYING = frozenset({"time", "text", "source", "detail", "error", "repeated"})
"""Fields that differ between two events of one alert; the others say which alert it is."""
_REMEMBERED = 4096


def alert_name(error: BaseException) -> str | None:
    """Which alert of ``ALERTS`` an error raises, or None for errors that are not alerted."""
    if isinstance(error, IPBanned):
        return "IPBanned"
    if isinstance(error, RateLimitedUpstream | RateLimited):
        return "RateLimited"
    if isinstance(error, AuthenticationFailed):
        return "AuthenticationFailed"
    if isinstance(error, OrderRejected):
        return "OrderRejected"
    if isinstance(error, PolicyDenied | UnknownEndpoint):
        return "PolicyDenied"
    return None


def check_webhook_url(url: str) -> str:
    """https anywhere, or http to this machine only (an event should not cross a network bare)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and _is_loopback(host):
        return url
    raise InvalidInput("the alert webhook must be an https URL (or http to 127.0.0.1 / ::1)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shown(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


class _Sink:
    """One background thread draining one queue with one delivery function."""

    def __init__(self, name: str, deliver: Callable[[bytes, threading.Event], None]) -> None:
        self._name = name
        self._deliver = deliver
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUE_SIZE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, payload: bytes) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"keybroker-alert-{self._name}", daemon=True
                )
                self._thread.start()
        try:
            self._queue.put_nowait(payload)
        except queue.Full:
            logger.error(
                "alert %s queue is full (%d waiting); this alert is dropped",
                self._name,
                _QUEUE_SIZE,
            )

    def _run(self) -> None:
        while True:
            payload = self._queue.get()
            try:
                if payload is None:
                    return
                if not self._stop.is_set():
                    self._deliver(payload, self._stop)
            except Exception as exc:  # a bug must not kill the thread and silence later alerts
                logger.error("alert %s failed: %s", self._name, type(exc).__name__)
            finally:
                self._queue.task_done()

    def flush(self, deadline: float) -> bool:
        """Wait until everything queued is delivered or given up; False at the deadline."""
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, deadline: float) -> None:
        self.flush(deadline)
        self._stop.set()  # cuts short any backoff wait still running
        with self._lock:
            thread = self._thread
        if thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            thread.join(max(0.0, deadline - time.monotonic()) + 1.0)


class Alerter:
    """Sends each alert to the log, and to the webhook and command when configured."""

    def __init__(
        self,
        webhook_url: str | None = None,
        command: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        attempts: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 5.0,
        command_timeout: float = 30.0,
        repeat_window_s: float = 60.0,
    ) -> None:
        """``environ`` is what the command inherits (filtered); without it, only PATH.

        ``repeat_window_s``: how long the same alert is held back after it was
        sent (0 sends every one).

        InvalidInput for a webhook that is not https (or http to loopback), or
        a command that does not parse as shell words.
        """
        self._clock = clock or SystemClock()
        self._webhook = check_webhook_url(webhook_url) if webhook_url else None
        self._argv = shlex.split(command) if command else None
        if command is not None and not self._argv:
            raise InvalidInput("the alert command is empty")
        self._environ = _child_environment(environ)
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._timeout = timeout
        self._command_timeout = command_timeout
        self._repeat_ms = max(0, round(repeat_window_s * 1000))
        self._last_sent: dict[tuple[tuple[str, str], ...], tuple[int, int]] = {}
        """alert identity -> (when it was last sent, ms; how many were held back since)"""
        self._repeat_lock = threading.Lock()
        self._sinks: list[_Sink] = []
        if self._webhook is not None:
            self._sinks.append(_Sink("webhook", self._post))
        if self._argv is not None:
            self._sinks.append(_Sink("command", self._run_command))

    def __repr__(self) -> str:
        webhook = _shown(self._webhook) if self._webhook else None
        command = self._argv[0] if self._argv else None
        return f"Alerter(webhook={webhook!r}, command={command!r})"

    def notify(self, event: Mapping[str, str]) -> bool:
        """Log the alert now; queue it for the webhook and the command. Never raises.

        False when it was held back as a repeat (see the module's docstring).
        """
        try:
            repeated = self._held_back(event)
            if repeated is None:
                return False
            if repeated:
                event = {**event, "repeated": str(repeated)}
            payload = self._payload(event)
            logger.warning("alert %s", payload["text"])
            body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        except Exception as exc:
            logger.error("alert could not be prepared: %s", type(exc).__name__)
            return True
        for sink in self._sinks:
            sink.put(body)
        return True

    def _held_back(self, event: Mapping[str, str]) -> int | None:
        """None to hold this one back; else how many were held back before it."""
        if self._repeat_ms == 0:
            return 0
        identity = tuple(sorted((str(k), str(v)) for k, v in event.items() if k not in _VARYING))
        now = self._clock.now_ms()
        with self._repeat_lock:
            last = self._last_sent.get(identity)
            if last is not None and now - last[0] < self._repeat_ms:
                self._last_sent[identity] = (last[0], last[1] + 1)
                return None
            if len(self._last_sent) >= _REMEMBERED:  # forget those whose window has passed
                self._last_sent = {
                    key: value
                    for key, value in self._last_sent.items()
                    if now - value[0] < self._repeat_ms
                }
            self._last_sent[identity] = (now, 0)
            return last[1] if last is not None else 0

    def _payload(self, event: Mapping[str, str]) -> dict[str, str]:
        clean = {str(key): mask_secrets(str(value)) for key, value in event.items()}
        clean.setdefault("time", iso_time(self._clock.now_ms()))
        name = clean.get("alert") or clean.get("kind") or "alert"
        details = " ".join(
            f"{key}={value}"
            for key, value in sorted(clean.items())
            if key not in ("alert", "kind", "text", "time", "source")
        )
        clean.setdefault("text", f"keybroker {name}: {details}".rstrip(": "))
        clean.setdefault("source", "keybroker")
        return clean

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait for queued alerts to be delivered (or given up); False if time ran out."""
        deadline = time.monotonic() + timeout
        return all(sink.flush(deadline) for sink in self._sinks)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued for up to ``timeout`` seconds, then stop (retries are cut)."""
        deadline = time.monotonic() + timeout
        for sink in self._sinks:
            sink.close(deadline)

    # -- delivery (background threads) ----------------------------------------------

    def _post(self, body: bytes, stop: threading.Event) -> None:
        import httpx  # only a process with a webhook pays for it

        assert self._webhook is not None
        where = _shown(self._webhook)
        headers = {"content-type": "application/json", "user-agent": "keybroker-alerts"}
        with httpx.Client(timeout=self._timeout, follow_redirects=False) as client:
            for attempt in range(1, self._attempts + 1):
                retry_after: float | None = None
                try:
                    response = client.post(self._webhook, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                else:
                    if response.is_success:
                        logger.debug("alert delivered to %s", where)
                        return
                    outcome = f"HTTP {response.status_code}"
                    if response.status_code not in _RETRY_STATUSES:
                        logger.error("alert webhook %s refused the alert (%s)", where, outcome)
                        return
                    retry_after = _seconds(response.headers.get("retry-after"))
                if attempt == self._attempts:
                    break
                wait = min(self._max_backoff, self._backoff * 2 ** (attempt - 1))
                wait = max(wait * random.uniform(0.8, 1.2), retry_after or 0.0)  # noqa: S311
                logger.warning(
                    "alert webhook %s: %s; retry %d in %.1f s", where, outcome, attempt, wait
                )
                if stop.wait(min(wait, self._max_backoff)):
                    break
        logger.error("alert webhook %s: gave up after %d attempts (%s)", where, attempt, outcome)

    def _run_command(self, body: bytes, stop: threading.Event) -> None:
        assert self._argv is not None
        name = os.path.basename(self._argv[0])
        try:
            done = subprocess.run(
                self._argv,
                input=body,
                stdout=subprocess.DEVNULL,
                env=self._environ,
                timeout=self._command_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            logger.error(
                "alert command %s ran longer than %.0f s; killed", name, self._command_timeout
            )
            return
        except OSError as exc:
            logger.error("alert command %s could not start: %s", name, type(exc).__name__)
            return
        if done.returncode != 0:
            logger.error("alert command %s exited with code %d", name, done.returncode)


def _child_environment(environ: Mapping[str, str] | None) -> dict[str, str]:
    if environ is None:
        return {"PATH": os.defpath}
    return {
        name: value
        for name, value in environ.items()
        if not name.upper().startswith("KEYBROKER_")
        and not name.upper().endswith(_SECRET_NAME_ENDINGS)
    }


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
