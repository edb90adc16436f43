"""The gateway's own endpoints under ``/_/``: health, status and Prometheus metrics.

    $ curl -s 127.0.0.1:8787/_/health                          # no token needed
    $ curl -s -H "X-Keybroker-Token: $TOKEN" 127.0.0.1:8787/_/status
    $ curl -s -H "Authorization: Bearer $TOKEN" 127.0.0.1:8787/_/metrics

``/_/health`` says only that the process answers. ``/_/status`` (any valid
token) shows the limiter's buckets and breakers, halted credentials, the
hardening report and request counts. ``/_/metrics`` is the same in
Prometheus' text format. Neither shows a key, token or secret: there is none
in the state they read.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from keybroker import __version__
from keybroker.gateway.metrics import format_labels, format_number
from keybroker.gateway.state import Gateway


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.state.gateway
    return gateway


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers={"cache-control": "no-store"})


def status_document(gateway: Gateway) -> dict[str, object]:
    now = gateway.clock.now_ms()
    metrics = gateway.metrics
    return {
        "status": "ok",
        "version": __version__,
        "started_at": _iso(gateway.started_ms),
        "uptime_s": round((now - gateway.started_ms) / 1000, 3),
        "halted": {name: moment.isoformat() for name, moment in gateway.access.halted.items()},
        "limiter": gateway.limiter.snapshot(),
        "hardening": {
            step.name: {"held": step.held, "detail": step.detail} for step in gateway.hardening
        },
        "requests": {
            outcome: int(metrics.total("keybroker_requests_total", outcome=outcome))
            for outcome in ("forwarded", "denied", "rate_limited", "no_answer")
        },
        "deduplicated": gateway.dedup.shared,
        "coordination": gateway.coordination.describe() if gateway.coordination else None,
        "audit_path": str(gateway.config.audit_path),
        "openbao": gateway.remote_keys.status() if gateway.remote_keys is not None else None,
    }


async def status(request: Request) -> Response:
    body = json.dumps(status_document(gateway_of(request)), default=str, sort_keys=True)
    return Response(body, 200, {"cache-control": "no-store"}, media_type="application/json")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def state_lines(gateway: Gateway) -> list[str]:
    """Gauges from the gateway's state: up, start time, halts, hardening, limiter buckets."""
    lines = [
        "# HELP keybroker_up 1 while the gateway serves.",
        "# TYPE keybroker_up gauge",
        "keybroker_up 1",
        "# HELP keybroker_start_time_seconds When the gateway started (Unix time).",
        "# TYPE keybroker_start_time_seconds gauge",
        f"keybroker_start_time_seconds {gateway.started_ms / 1000!r}",
        "# HELP keybroker_deduplicated_total Public GETs answered from another's fetch.",
        "# TYPE keybroker_deduplicated_total counter",
        f"keybroker_deduplicated_total {gateway.dedup.shared}",
        "# HELP keybroker_audit_commits_total Audit log transactions (one fsync each), by the"
        " thread that made them: a request alone commits inline, others share the writer's.",
        "# TYPE keybroker_audit_commits_total counter",
        f'keybroker_audit_commits_total{{thread="inline"}} {gateway.audit.inline_commit_count}',
        f'keybroker_audit_commits_total{{thread="writer"}} '
        f"{gateway.audit.commit_count - gateway.audit.inline_commit_count}",
        "# HELP keybroker_halted 1 for each halted credential ('*' is all).",
        "# TYPE keybroker_halted gauge",
    ]
    for name in sorted(gateway.access.halted):
        lines.append(f"keybroker_halted{format_labels((('credential', name),))} 1")
    lines += [
        "# HELP keybroker_hardening 1 for each hardening step that held at start.",
        "# TYPE keybroker_hardening gauge",
    ]
    for step in gateway.hardening:
        lines.append(f"keybroker_hardening{format_labels((('step', step.name),))} {int(step.held)}")
    snapshot = gateway.limiter.snapshot()
    lines.extend(bucket_lines(snapshot))
    lines.extend(limiter_lines(snapshot))
    return lines


def bucket_lines(snapshot: list[dict[str, object]]) -> list[str]:
    """Weight used against each bucket's limit, and the limiter's queue length, by name.

    The same numbers appear among ``keybroker_ratelimit_*`` (every field of
    every row); these are the few a dashboard or an alert rule asks for.
    """
    series = {
        "keybroker_ratelimit_weight_used": ("used", "Weight spent in each bucket's window."),
        "keybroker_ratelimit_weight_limit": ("capacity", "Each bucket's capacity per window."),
    }
    samples: dict[str, list[str]] = {name: [] for name in series}
    waiting = 0
    for entry in snapshot:
        if entry.get("type") == "totals" and isinstance(entry.get("waiting"), int):
            waiting = int(str(entry["waiting"]))
        if entry.get("type") != "budget":
            continue
        labels = format_labels(
            (("bucket", str(entry.get("key", ""))), ("name", str(entry.get("name", ""))))
        )
        for name, (field, _) in series.items():
            value = entry.get(field)
            if isinstance(value, int | float) and not isinstance(value, bool):
                samples[name].append(f"{name}{labels} {format_number(float(value))}")
    lines: list[str] = []
    for name, (_, help_text) in series.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *samples[name]]
    return [
        *lines,
        "# HELP keybroker_ratelimit_queue_length Requests waiting for rate-limit budget now.",
        "# TYPE keybroker_ratelimit_queue_length gauge",
        f"keybroker_ratelimit_queue_length {waiting}",
    ]


def limiter_lines(snapshot: list[dict[str, object]]) -> list[str]:
    """Numeric fields of each limiter row as ``keybroker_ratelimit_<field>``; text as labels."""
    series: dict[str, list[str]] = {}
    for entry in snapshot:
        labels = tuple(
            sorted((key, str(value)) for key, value in entry.items() if isinstance(value, str))
        )
        for key, value in entry.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            name = f"keybroker_ratelimit_{_metric_name(key)}"
            series.setdefault(name, []).append(
                f"{name}{format_labels(labels)} {format_number(float(value))}"
            )
    lines: list[str] = []
    for name in sorted(series):
        lines.append(f"# TYPE {name} gauge")
        lines.extend(series[name])
    return lines


def _metric_name(key: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in key.lower())


async def metrics(request: Request) -> Response:
    gateway = gateway_of(request)
    text = gateway.metrics.render(state_lines(gateway))
    return Response(text, 200, media_type="text/plain; version=0.0.4; charset=utf-8")
