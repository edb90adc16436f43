"""Alerts against a real HTTP server on 127.0.0.1 and a real command."""

from __future__ import annotations

import json
import logging
import shlex
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from keybroker import errors
from keybroker.audit import ALERTS, Alerter, alert_name
from keybroker.clock import FixedClock
from keybroker.errors import InvalidInput

TOKEN = "kb_FAKEtokenNotReal0000000000000000000000000001"
EVENT = {"alert": "PolicyDenied", "credential": "binance-main", "bot": "bot1", "rule": "symbols"}


class Webhook:
    """A real HTTP server: answers each POST with the next scripted status (then 200)."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.delay = 0.0
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                time.sleep(hook.delay)
                with hook.arrived:
                    hook.received.append((dict(self.headers.items()), body))
                    status = hook.statuses.pop(0) if hook.statuses else 200
                    hook.arrived.notify_all()
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{port}/services/T000/B000/FAKEwebhookPathSecret"

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.received) >= count, timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def fast(url: str | None = None, command: str | None = None, **options: object) -> Alerter:
    return Alerter(url, command, backoff=0.01, clock=FixedClock(1_700_000_000_000), **options)  # type: ignore[arg-type]


def test_the_webhook_gets_the_event_as_json(webhook: Webhook) -> None:
    alerter = fast(webhook.url)
    alerter.notify(EVENT)
    assert alerter.flush(10)
    alerter.close()
    [(headers, body)] = webhook.received
    assert headers["content-type"] == "application/json"
    payload = json.loads(body)
    assert payload == {
        **EVENT,
        "source": "keybroker",
        "time": "2023-11-14T22:13:20.000Z",
        "text": "keybroker PolicyDenied: bot=bot1 credential=binance-main rule=symbols",
    }


def test_server_errors_and_429_are_retried_with_backoff(webhook: Webhook) -> None:
    webhook.statuses = [503, 429, 500]
    alerter = fast(webhook.url)
    alerter.notify(EVENT)
    webhook.wait_for(4)
    assert alerter.flush(10)
    alerter.close()
    assert len(webhook.received) == 4
    assert len({body for _, body in webhook.received}) == 1  # the same alert each time


def test_a_refusal_is_not_retried_and_giving_up_is_logged(
    webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.statuses = [400]
    alerter = fast(webhook.url)
    alerter.notify(EVENT)
    assert alerter.flush(10)
    assert len(webhook.received) == 1
    webhook.statuses = [500] * 10
    alerter.notify({**EVENT, "rule": "size"})  # another alert (the same one would be held back)
    assert alerter.flush(10)
    alerter.close()
    assert len(webhook.received) == 1 + 6
    messages = [record.getMessage() for record in caplog.records]
    assert any("refused the alert (HTTP 400)" in m for m in messages)
    assert any("gave up after 6 attempts" in m for m in messages)
    assert not any("FAKEwebhookPathSecret" in m for m in messages)  # only scheme and host


def test_notify_never_waits_for_a_slow_or_dead_webhook(webhook: Webhook) -> None:
    webhook.delay = 0.5
    slow = fast(webhook.url)
    dead = fast("http://127.0.0.1:9/hook", attempts=2)  # the discard port: refused
    started = time.perf_counter()
    for _ in range(20):
        slow.notify(EVENT)
        dead.notify(EVENT)
    assert time.perf_counter() - started < 0.2
    slow.close(timeout=0.1)
    dead.close(timeout=2)


def test_the_command_gets_the_json_on_stdin_without_secret_variables(tmp_path: Path) -> None:
    out = tmp_path / "alert.json"
    script = (
        "import json, os, sys; seen = {'stdin': sys.stdin.read(), 'env': dict(os.environ)}; "
        "open(sys.argv[1], 'w').write(json.dumps(seen))"
    )
    command = shlex.join([sys.executable, "-c", script, str(out)])
    environ = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "KEYBROKER_PASSPHRASE": "FAKE-passphrase-not-real",
        "BINANCE_API_SECRET": "FAKE-secret-not-real",
        "SOME_SERVICE_TOKEN": "FAKE-token-not-real",
    }
    alerter = fast(command=command, environ=environ)
    alerter.notify({**EVENT, "detail": f"token {TOKEN}"})
    assert alerter.flush(20)
    alerter.close()
    seen = json.loads(out.read_text())
    payload = json.loads(seen["stdin"])
    assert payload["alert"] == "PolicyDenied" and payload["detail"] == "token kb_***"
    assert "LANG" in seen["env"]
    assert not {"KEYBROKER_PASSPHRASE", "BINANCE_API_SECRET", "SOME_SERVICE_TOKEN"} & set(
        seen["env"]
    )


def test_a_failing_or_missing_command_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    for command in ("false", "/nonexistent/alert-command --flag"):
        alerter = fast(command=command, environ={"PATH": "/usr/bin:/bin"})
        alerter.notify(EVENT)
        assert alerter.flush(10)
        alerter.close()
    messages = [record.getMessage() for record in caplog.records]
    assert any("alert command false exited with code 1" in m for m in messages)
    assert any("alert-command could not start: FileNotFoundError" in m for m in messages)


def test_the_same_alert_again_is_held_back_for_a_minute_then_sent_with_its_count(
    webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="keybroker.alerts")
    clock = FixedClock(1_700_000_000_000)
    alerter = Alerter(webhook.url, backoff=0.01, clock=clock)
    assert alerter.notify({**EVENT, "detail": "first"})
    for second in range(300):  # a bot hammering a limit for 30 s: one alert, not 300
        clock.advance(100)
        assert not alerter.notify({**EVENT, "detail": f"again {second}"})
    assert alerter.notify({**EVENT, "rule": "size"})  # another rule is another alert
    assert alerter.notify({**EVENT, "bot": "bot2"})  # and so is another bot
    clock.advance(30_000)  # the first one's minute is over
    assert alerter.notify(EVENT)
    assert not alerter.notify(EVENT)
    assert alerter.flush(10)
    alerter.close()
    received = [json.loads(body) for _, body in webhook.received]
    assert [(e["rule"], e["bot"], e.get("repeated")) for e in received] == [
        ("symbols", "bot1", None),
        ("size", "bot1", None),
        ("symbols", "bot2", None),
        ("symbols", "bot1", "300"),
    ]
    lines = [r.getMessage() for r in caplog.records if r.name == "keybroker.alerts"]
    assert len(lines) == 4 and "repeated=300" in lines[-1]


def test_a_zero_repeat_window_sends_every_alert(webhook: Webhook) -> None:
    alerter = Alerter(webhook.url, clock=FixedClock(1_700_000_000_000), repeat_window_s=0)
    assert all(alerter.notify(EVENT) for _ in range(3))
    assert alerter.flush(10)
    alerter.close()
    assert len(webhook.received) == 3


def test_every_alert_is_a_log_line_even_without_sinks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="keybroker.alerts")
    alerter = fast()
    alerter.notify({"alert": "IPBanned", "credential": "binance-main", "detail": TOKEN})
    alerter.close()
    [record] = [r for r in caplog.records if r.name == "keybroker.alerts"]
    assert record.levelno == logging.WARNING
    assert "IPBanned" in record.getMessage() and "credential=binance-main" in record.getMessage()
    assert TOKEN not in record.getMessage()


@pytest.mark.parametrize(
    "url", ["http://example.com/hook", "ftp://127.0.0.1/x", "https:///nohost", "hook"]
)
def test_webhooks_must_be_https_or_loopback(url: str) -> None:
    with pytest.raises(InvalidInput):
        Alerter(url, None)


def test_the_webhook_path_is_never_shown() -> None:
    alerter = Alerter("https://hooks.example.com/services/FAKEwebhookPathSecret", "notify-send kb")
    assert "FAKEwebhookPathSecret" not in repr(alerter)
    assert repr(alerter) == "Alerter(webhook='https://hooks.example.com', command='notify-send')"
    Alerter("http://localhost:8080/x", None)
    Alerter("http://[::1]:8080/x", None)
    with pytest.raises(InvalidInput):
        Alerter(None, "   ")


def test_the_alerted_errors() -> None:
    assert alert_name(errors.IPBanned("x")) == "IPBanned"
    assert alert_name(errors.RateLimitedUpstream("x")) == "RateLimited"
    assert alert_name(errors.RateLimited("x")) == "RateLimited"
    assert alert_name(errors.AuthenticationFailed("x")) == "AuthenticationFailed"
    assert alert_name(errors.OrderRejected("x")) == "OrderRejected"
    assert alert_name(errors.PolicyDenied("x")) == "PolicyDenied"
    assert alert_name(errors.UnknownEndpoint("x")) == "PolicyDenied"
    assert alert_name(errors.InsufficientBalance("x")) is None
    assert alert_name(ValueError("x")) is None
    assert set(ALERTS) == {
        "AuthenticationFailed",
        "RateLimited",
        "IPBanned",
        "OrderRejected",
        "PolicyDenied",
    }
