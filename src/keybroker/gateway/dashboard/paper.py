"""The paper page's seam: where the dashboard gets each credential's mode and paper figures.

    >>> view = PaperView(mode=lambda name: "paper" if name in paper_names else "live",
    ...                  summary=lambda name: summarize(home / "paper.db", name))
    >>> app = create_app(vault, config, paper=view)

Paper trading lives in its own package (``keybroker.paper``); the dashboard
does not import it, it is handed two callables instead. By default every
credential is live and has no paper ledger, and the page says so. A summary
is any object with the fields of ``PaperSummary`` (``paper.report`` returns
one); the dashboard reads nothing else from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

Number = Decimal | float | int


class PaperSummary(Protocol):
    """What the paper page shows of one credential's paper ledger."""

    @property
    def realized_pnl(self) -> Number: ...
    @property
    def unrealized_pnl(self) -> Number: ...
    @property
    def fees(self) -> Number: ...
    @property
    def fills(self) -> int: ...
    @property
    def win_rate(self) -> Number | None: ...
    @property
    def slippage_vs_mid(self) -> Number | None: ...
    @property
    def equity(self) -> tuple[tuple[int, Decimal], ...]:
        """(ms since the epoch, equity) points, oldest first."""
        ...


def live(credential: str) -> str:
    """Every credential is live until paper trading is wired in."""
    return "live"


def no_paper_ledger(credential: str) -> PaperSummary | None:
    """No credential has a paper ledger until paper trading is wired in."""
    return None


@dataclass(frozen=True, slots=True)
class PaperView:
    """``mode(name)`` is ``"live"`` or ``"paper"``; ``summary(name)`` the ledger's figures or None.

    ``summary`` may read a file: the dashboard calls it off the event loop,
    and shows an error's type (never its message) if it raises.
    """

    mode: Callable[[str], str] = field(default=live)
    summary: Callable[[str], PaperSummary | None] = field(default=no_paper_ledger)


def summary_json(summary: PaperSummary) -> dict[str, object]:
    """The figures as JSON-safe text (Decimals stay exact as strings)."""

    def text(value: Number | None) -> str | None:
        return None if value is None else str(value)

    return {
        "realized_pnl": text(summary.realized_pnl),
        "unrealized_pnl": text(summary.unrealized_pnl),
        "fees": text(summary.fees),
        "fills": int(summary.fills),
        "win_rate": text(summary.win_rate),
        "slippage_vs_mid": text(summary.slippage_vs_mid),
        "equity": [[int(ms), str(value)] for ms, value in summary.equity],
    }
