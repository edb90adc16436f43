"""Counters and latency histograms of one gateway, rendered in Prometheus' text format.

    >>> metrics.count("keybroker_requests_total", credential="binance-main", outcome="forwarded")
    >>> metrics.observe("keybroker_upstream_seconds", 0.012, exchange="binance")
    >>> metrics.render(extra_lines)      # what GET /_/metrics answers

Labels carry names only (credentials, bots, rules, exchanges): never a token,
key or path with a query.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

Labels = tuple[tuple[str, str], ...]

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HELP = {
    "keybroker_requests_total": "Requests the gateway answered, by credential, kind and outcome.",
    "keybroker_denials_total": "Requests refused by policy, by credential and rule.",
    "keybroker_upstream_requests_total": "Requests sent to exchanges, by exchange and status.",
    "keybroker_upstream_failures_total": "Exchange requests without an answer, by exchange.",
    "keybroker_upstream_seconds": "Time from sending a request to the exchange's full answer.",
    "keybroker_order_lookups_total": "Orders looked up by client order id after no clear answer.",
    "keybroker_auth_failures_total": "Requests refused for a bad, expired or revoked token.",
    "keybroker_decisions_total": "Requests by kind and decision (allow: sent; deny: refused).",
    "keybroker_throttled_total": "429 and 418 answers, from the exchange or the gateway itself.",
    "keybroker_gateway_added_seconds": "Time the gateway added to a request (total less upstream).",
    "keybroker_audit_write_seconds": "Time until an audit row was durable (group commit, fsync).",
    "keybroker_dashboard_logins_total": "Dashboard login attempts, by outcome.",
    "keybroker_dashboard_actions_total": "Dashboard actions (halt, resume, revoke), by action.",
}


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{escape(value)}"' for key, value in labels) + "}"


def format_number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class Metrics:
    """Plain counters and histograms; the gateway runs on one event loop, so no locks."""

    def __init__(self) -> None:
        self._counters: dict[str, dict[Labels, float]] = defaultdict(lambda: defaultdict(float))
        self._histograms: dict[str, dict[Labels, list[float]]] = defaultdict(dict)

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self._counters[name][tuple(sorted(labels.items()))] += amount

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        # One slot per bucket, then the sum and the count.
        slots = self._histograms[name].setdefault(key, [0.0] * (len(BUCKETS) + 2))
        for index, bound in enumerate(BUCKETS):
            if seconds <= bound:
                slots[index] += 1
        slots[-2] += seconds
        slots[-1] += 1

    def total(self, name: str, **labels: str) -> float:
        """Sum of a counter over every label set that includes ``labels``."""
        wanted = set(labels.items())
        return sum(v for key, v in self._counters.get(name, {}).items() if wanted <= set(key))

    def render(self, extra: Iterable[str] = ()) -> str:
        lines: list[str] = []
        for name in sorted(self._counters):
            lines.append(f"# HELP {name} {HELP.get(name, name)}")
            lines.append(f"# TYPE {name} counter")
            for labels, value in sorted(self._counters[name].items()):
                lines.append(f"{name}{format_labels(labels)} {format_number(value)}")
        for name in sorted(self._histograms):
            lines.append(f"# HELP {name} {HELP.get(name, name)}")
            lines.append(f"# TYPE {name} histogram")
            for labels, slots in sorted(self._histograms[name].items()):
                for bound, value in zip(BUCKETS, slots, strict=False):
                    bucket = (*labels, ("le", format_number(bound)))
                    lines.append(f"{name}_bucket{format_labels(bucket)} {format_number(value)}")
                inf = (*labels, ("le", "+Inf"))
                lines.append(f"{name}_bucket{format_labels(inf)} {format_number(slots[-1])}")
                lines.append(f"{name}_sum{format_labels(labels)} {slots[-2]!r}")
                lines.append(f"{name}_count{format_labels(labels)} {format_number(slots[-1])}")
        lines.extend(extra)
        return "\n".join(lines) + "\n"
