"""The paper ledger, ``<home>/paper.db``: balances, orders, fills, positions, marks per credential.

    >>> ledger = Ledger.open(home / "paper.db")
    >>> ledger.reset("paper-bot", "binance", "testnet", {"USDT": Decimal(10000)}, now_ms=now)
    >>> ledger.balances("paper-bot")

SQLite in WAL mode; every change that belongs together (an order and its
immediate fills, one maker fill, a cancel, a reset) is one ``BEGIN
IMMEDIATE`` transaction, so a gateway killed at any instant leaves the ledger
as it was before or after that change, never between: balances always equal
the starting balances plus what the recorded fills moved, and locked funds
always equal what open orders reserve (``check`` proves both). Amounts are
stored as decimal text, so nothing is rounded on the way in or out.

Durability: ``synchronous=NORMAL`` in WAL mode, on purpose. A commit is in the
WAL file (the OS's page cache) when ``place`` returns, so it survives the
gateway being killed at any instant (SIGKILL, a crash: ``test_paper_crash``
kills a real ``serve`` under load and finds every answered order). Only a
power cut or an OS crash can lose the last commits (never part of one: the
WAL's checksums drop a torn tail, and the books still add up). ``FULL`` would
fsync every commit, several hundred µs per order on this kind of disk, for
money that is not real; NORMAL fsyncs only at checkpoints (every 50 to 100
orders; the order whose commit triggers one waits for it). A commit costs its
SQLite statements (about ten per order) and the WAL page writes; ``place``
keeps them few (one balance read, one fills insert, no read-back).
Group commit (several orders in one transaction, as the audit log does) would
save only the COMMIT (~a quarter of the cost) and only when orders arrive
within the same moment, which 45 bots at one order a second rarely do; it
would make every answer wait for its batch. Not worth it here.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from keybroker.errors import PaperError
from keybroker.paper.fills import Plan, fee
from keybroker.paper.model import (
    ZERO,
    Balance,
    Fees,
    Fill,
    Instrument,
    Level,
    NewOrder,
    Order,
    OrderType,
    Refusal,
    Refused,
    Side,
    Status,
    TimeInForce,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    credential TEXT PRIMARY KEY, exchange TEXT NOT NULL, environment TEXT NOT NULL,
    value_in TEXT NOT NULL, maker_fee TEXT NOT NULL, taker_fee TEXT NOT NULL,
    latency_ms INTEGER NOT NULL, reset_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS starting (
    credential TEXT NOT NULL, asset TEXT NOT NULL, amount TEXT NOT NULL,
    PRIMARY KEY (credential, asset));
CREATE TABLE IF NOT EXISTS balances (
    credential TEXT NOT NULL, asset TEXT NOT NULL, free TEXT NOT NULL, locked TEXT NOT NULL,
    PRIMARY KEY (credential, asset));
CREATE TABLE IF NOT EXISTS orders (
    order_id INTEGER PRIMARY KEY AUTOINCREMENT, credential TEXT NOT NULL,
    client_order_id TEXT NOT NULL, symbol TEXT NOT NULL, base TEXT NOT NULL, quote TEXT NOT NULL,
    side TEXT NOT NULL, type TEXT NOT NULL, time_in_force TEXT NOT NULL,
    post_only INTEGER NOT NULL, quantity TEXT, quote_quantity TEXT, price TEXT,
    status TEXT NOT NULL, executed_qty TEXT NOT NULL, cumulative_quote TEXT NOT NULL,
    reserved TEXT NOT NULL, reserve_asset TEXT NOT NULL, last_trade_id INTEGER NOT NULL,
    market_url TEXT NOT NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS orders_by_client_id ON orders (credential, client_order_id);
CREATE INDEX IF NOT EXISTS orders_open ON orders (status)
    WHERE status IN ('NEW', 'PARTIALLY_FILLED');
CREATE TABLE IF NOT EXISTS fills (
    fill_id INTEGER PRIMARY KEY AUTOINCREMENT, credential TEXT NOT NULL,
    order_id INTEGER NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL, price TEXT NOT NULL,
    qty TEXT NOT NULL, fee TEXT NOT NULL, fee_asset TEXT NOT NULL, is_maker INTEGER NOT NULL,
    mid TEXT, ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS fills_by_credential ON fills (credential, fill_id);
CREATE TABLE IF NOT EXISTS positions (
    credential TEXT NOT NULL, symbol TEXT NOT NULL, base TEXT NOT NULL, quote TEXT NOT NULL,
    qty TEXT NOT NULL, cost TEXT NOT NULL, realized TEXT NOT NULL,
    closes INTEGER NOT NULL, wins INTEGER NOT NULL, PRIMARY KEY (credential, symbol));
CREATE TABLE IF NOT EXISTS marks (
    exchange TEXT NOT NULL, environment TEXT NOT NULL, symbol TEXT NOT NULL,
    base TEXT NOT NULL, quote TEXT NOT NULL, ms INTEGER NOT NULL, price TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS marks_by_symbol ON marks (exchange, environment, symbol, ms);
"""

_INSERT_ORDER_TAIL = "updated_ms) VALUES (" + ", ".join("?" * 21) + ")"
_FILL_ROW = "(" + ", ".join("?" * 11) + ")"
_FILLS_PER_INSERT = 80
_INSERT_FILLS = (
    "INSERT INTO fills (credential, order_id, symbol, side, price, qty, fee, fee_asset, "
    "is_maker, mid, ms) VALUES"
)
_FILL_COLUMNS = "fill_id, order_id, symbol, side, price, qty, fee, fee_asset, is_maker, mid, ms"
_ORDER_COLUMNS = (
    "order_id, credential, client_order_id, symbol, base, quote, side, type, time_in_force, "
    "post_only, quantity, quote_quantity, price, status, executed_qty, cumulative_quote, "
    "created_ms, updated_ms"
)


@dataclass(frozen=True, slots=True)
class Account:
    """One credential's paper account settings (from its last reset)."""

    credential: str
    exchange: str
    environment: str
    value_in: str
    fees: Fees
    latency_ms: int
    reset_ms: int


@dataclass(frozen=True, slots=True)
class Resting:
    """An open limit order the trade poller watches."""

    order_id: int
    credential: str
    exchange: str
    environment: str
    symbol: str
    side: Side
    price: Decimal
    remaining: Decimal
    last_trade_id: int
    market_url: str


@dataclass(frozen=True, slots=True)
class Position:
    credential: str
    symbol: str
    base: str
    quote: str
    qty: Decimal
    cost: Decimal
    realized: Decimal
    closes: int
    wins: int


def _d(value: object) -> Decimal:
    return Decimal(str(value))


def _opt(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _read_back(value: Decimal | None) -> Decimal | None:
    # An amount as the ledger gives it back once stored (through its text).
    return None if value is None else _d(_text(value))


def _text(value: Decimal) -> str:
    # Plain notation, so amounts read back as they were written ("0.00100000", never "1E-3").
    return format(value, "f")


class Ledger:
    """The ledger file; methods are synchronous and short (the gateway calls them on its loop)."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Open (creating, 0600) the ledger at ``path``; PaperError when it cannot be."""
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            connection = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            connection.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL: a commit survives the process being killed (it is in the OS's
            # page cache); only a power cut can lose the last ones, and never half of one
            # (see the module docstring: the trade-off is deliberate for a paper ledger).
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise PaperError(f"cannot open the paper ledger {path}: {exc}") from None
        return cls(connection, path)

    def close(self) -> None:
        self._db.close()

    def durability(self) -> dict[str, str]:
        """This connection's journal mode and synchronous level (the bench prints them)."""
        mode = self._db.execute("PRAGMA journal_mode").fetchone()[0]
        level = int(self._db.execute("PRAGMA synchronous").fetchone()[0])
        names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
        return {"journal_mode": str(mode), "synchronous": names.get(level, str(level))}

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- accounts ------------------------------------------------------------------------------

    def reset(
        self,
        credential: str,
        exchange: str,
        environment: str,
        balances: Mapping[str, Decimal],
        *,
        now_ms: int,
        fees: Fees,
        value_in: str = "USDT",
        latency_ms: int = 0,
    ) -> Account:
        """Forget the credential's orders, fills and positions; start again from ``balances``."""
        with self._transaction() as db:
            for table in ("starting", "balances", "orders", "fills", "positions", "accounts"):
                db.execute(f"DELETE FROM {table} WHERE credential = ?", (credential,))  # noqa: S608
            db.execute(
                "INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    credential,
                    exchange,
                    environment,
                    value_in,
                    _text(fees.maker),
                    _text(fees.taker),
                    latency_ms,
                    now_ms,
                ),
            )
            for asset, amount in balances.items():
                db.execute(
                    "INSERT INTO starting VALUES (?, ?, ?)", (credential, asset, _text(amount))
                )
                db.execute(
                    "INSERT INTO balances VALUES (?, ?, ?, '0')", (credential, asset, _text(amount))
                )
        account = self.account(credential)
        assert account is not None
        return account

    def account(self, credential: str) -> Account | None:
        row = self._db.execute(
            "SELECT credential, exchange, environment, value_in, maker_fee, taker_fee, "
            "latency_ms, reset_ms FROM accounts WHERE credential = ?",
            (credential,),
        ).fetchone()
        if row is None:
            return None
        return Account(row[0], row[1], row[2], row[3], Fees(_d(row[4]), _d(row[5])), row[6], row[7])

    def accounts(self) -> list[Account]:
        names = [row[0] for row in self._db.execute("SELECT credential FROM accounts ORDER BY 1")]
        return [account for name in names if (account := self.account(name)) is not None]

    def starting(self, credential: str) -> dict[str, Decimal]:
        return {
            asset: _d(amount)
            for asset, amount in self._db.execute(
                "SELECT asset, amount FROM starting WHERE credential = ? ORDER BY asset",
                (credential,),
            )
        }

    def balances(self, credential: str) -> list[Balance]:
        return [
            Balance(asset, _d(free), _d(locked))
            for asset, free, locked in self._db.execute(
                "SELECT asset, free, locked FROM balances WHERE credential = ? ORDER BY asset",
                (credential,),
            )
        ]

    # -- orders --------------------------------------------------------------------------------

    def place(
        self,
        credential: str,
        order: NewOrder,
        instrument: Instrument,
        *,
        taken: Plan,
        rests: bool,
        fees: Fees,
        mid: Decimal | None,
        now_ms: int,
        market_url: str,
        last_trade_id: int = 0,
    ) -> tuple[Order, list[Fill]]:
        """Record a new order, its taker fills and (if it ``rests``) its reservation, at once.

        Raises Refused(INSUFFICIENT_BALANCE) when the account cannot pay for
        what is taken plus what is reserved, and Refused(DUPLICATE_CLIENT_ORDER_ID)
        when an open order already has its client order id; nothing is written then.
        """
        side = order.side
        filled = taken.qty
        remaining = (order.quantity or ZERO) - filled if rests else ZERO
        if side == "buy":
            reserve = remaining * (order.price or ZERO)
            need_asset, need = instrument.quote, taken.cost + reserve
            reserve_asset = instrument.quote
        else:
            need_asset, need = instrument.base, filled + remaining
            reserve, reserve_asset = remaining, instrument.base
        if filled >= (order.quantity or filled) and order.quantity is not None:
            status: Status = "FILLED"
        elif rests:
            status = "PARTIALLY_FILLED" if filled else "NEW"
        else:
            status = "FILLED" if order.quantity is None and filled else "EXPIRED"
        with self._transaction() as db:
            if (
                order.client_order_id
                and db.execute(
                    "SELECT 1 FROM orders WHERE credential = ? AND client_order_id = ? "
                    "AND status IN ('NEW', 'PARTIALLY_FILLED')",
                    (credential, order.client_order_id),
                ).fetchone()
            ):
                raise Refused(Refusal.DUPLICATE_CLIENT_ORDER_ID)
            held = self._held(db, credential, (instrument.base, instrument.quote))
            if held.get(need_asset, (ZERO, ZERO))[0] < need:
                raise Refused(Refusal.INSUFFICIENT_BALANCE)
            cursor = db.execute(
                "INSERT INTO orders (credential, client_order_id, symbol, base, quote, side, type, "
                "time_in_force, post_only, quantity, quote_quantity, price, status, executed_qty, "
                "cumulative_quote, reserved, reserve_asset, last_trade_id, market_url, created_ms, "
                + _INSERT_ORDER_TAIL,
                (
                    credential,
                    order.client_order_id,
                    order.symbol,
                    instrument.base,
                    instrument.quote,
                    side,
                    order.type,
                    order.time_in_force,
                    int(order.post_only),
                    None if order.quantity is None else _text(order.quantity),
                    None if order.quote_quantity is None else _text(order.quote_quantity),
                    None if order.price is None else _text(order.price),
                    status,
                    _text(filled),
                    _text(taken.cost),
                    _text(reserve),
                    reserve_asset,
                    last_trade_id,
                    market_url,
                    now_ms,
                    now_ms,
                ),
            )
            order_id = cast(int, cursor.lastrowid)
            deltas: dict[str, list[Decimal]] = {}
            if reserve:
                deltas[reserve_asset] = [-reserve, reserve]
            made = self._fills(
                db,
                credential,
                order_id,
                instrument,
                side,
                taken.levels,
                fees.taker,
                is_maker=False,
                mid=mid,
                now_ms=now_ms,
                deltas=deltas,
            )
            self._apply(db, credential, deltas, held)
        # What was just written, as a read would give it back (amounts through their text).
        placed = Order(
            order_id=order_id,
            credential=credential,
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            base=instrument.base,
            quote=instrument.quote,
            side=side,
            type=order.type,
            time_in_force=order.time_in_force,
            post_only=order.post_only,
            quantity=_read_back(order.quantity),
            quote_quantity=_read_back(order.quote_quantity),
            price=_read_back(order.price),
            status=status,
            executed_qty=_d(_text(filled)),
            cumulative_quote=_d(_text(taken.cost)),
            created_ms=now_ms,
            updated_ms=now_ms,
        )
        return placed, made

    def fill_resting(
        self,
        order_id: int,
        qty: Decimal,
        *,
        last_trade_id: int,
        rate: Decimal,
        mid: Decimal | None,
        now_ms: int,
    ) -> Fill | None:
        """One maker fill of a resting order at its limit price (qty 0: only note the trades seen).

        Returns None when the order is no longer open (cancelled meanwhile).
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT credential, symbol, base, quote, side, price, quantity, executed_qty, "
                "cumulative_quote, reserved, reserve_asset, status FROM orders WHERE order_id = ?",
                (order_id,),
            ).fetchone()
            if row is None or row[11] not in ("NEW", "PARTIALLY_FILLED"):
                return None
            credential, symbol, base, quote, side = row[0], row[1], row[2], row[3], row[4]
            price, quantity, executed = _d(row[5]), _d(row[6]), _d(row[7])
            qty = min(qty, quantity - executed)
            if qty <= 0:
                db.execute(
                    "UPDATE orders SET last_trade_id = ? WHERE order_id = ?",
                    (last_trade_id, order_id),
                )
                return None
            executed += qty
            released = price * qty if side == "buy" else qty
            reserved = _d(row[9]) - released
            status = "FILLED" if executed >= quantity else "PARTIALLY_FILLED"
            db.execute(
                "UPDATE orders SET executed_qty = ?, cumulative_quote = ?, reserved = ?, "
                "status = ?, last_trade_id = ?, updated_ms = ? WHERE order_id = ?",
                (
                    _text(executed),
                    _text(_d(row[8]) + price * qty),
                    _text(reserved),
                    status,
                    last_trade_id,
                    now_ms,
                    order_id,
                ),
            )
            deltas: dict[str, list[Decimal]] = {row[10]: [ZERO, -released]}
            instrument = Instrument(symbol, base, quote)
            (made,) = self._fills(
                db,
                credential,
                order_id,
                instrument,
                side,
                (Level(price, qty),),
                rate,
                is_maker=True,
                mid=mid,
                now_ms=now_ms,
                deltas=deltas,
                reserved=True,
            )
            self._apply(db, credential, deltas)
            return made

    def cancel(
        self,
        credential: str,
        *,
        symbol: str | None,
        order_id: int | None = None,
        client_order_id: str | None = None,
        now_ms: int,
    ) -> Order:
        """Cancel one open order and release what it reserved; Refused(UNKNOWN_ORDER) otherwise."""
        with self._transaction() as db:
            found = self._find(db, credential, symbol, order_id, client_order_id)
            if found is None or found[1] not in ("NEW", "PARTIALLY_FILLED"):
                raise Refused(Refusal.UNKNOWN_ORDER)
            self._close(db, found[0], "CANCELED", now_ms)
        cancelled = self.order(credential, order_id=found[0])
        assert cancelled is not None
        return cancelled

    def cancel_all(self, credential: str, symbol: str, *, now_ms: int) -> list[Order]:
        """Cancel every open order of ``credential`` on ``symbol``; the cancelled orders."""
        with self._transaction() as db:
            ids = [
                row[0]
                for row in db.execute(
                    "SELECT order_id FROM orders WHERE credential = ? AND symbol = ? "
                    "AND status IN ('NEW', 'PARTIALLY_FILLED') ORDER BY order_id",
                    (credential, symbol),
                )
            ]
            for order_id in ids:
                self._close(db, order_id, "CANCELED", now_ms)
        return [o for i in ids if (o := self.order(credential, order_id=i)) is not None]

    def _close(self, db: sqlite3.Connection, order_id: int, status: str, now_ms: int) -> None:
        credential, reserved, asset = db.execute(
            "SELECT credential, reserved, reserve_asset FROM orders WHERE order_id = ?",
            (order_id,),
        ).fetchone()
        amount = _d(reserved)
        if amount:
            self._move(db, credential, asset, free=amount, locked=-amount)
        db.execute(
            "UPDATE orders SET status = ?, reserved = '0', updated_ms = ? WHERE order_id = ?",
            (status, now_ms, order_id),
        )

    def _find(
        self,
        db: sqlite3.Connection,
        credential: str,
        symbol: str | None,
        order_id: int | None,
        client_order_id: str | None,
    ) -> tuple[int, str] | None:
        if order_id is not None:
            row = db.execute(
                "SELECT order_id, status, symbol FROM orders WHERE credential = ? AND order_id = ?",
                (credential, order_id),
            ).fetchone()
        elif client_order_id:
            row = db.execute(
                "SELECT order_id, status, symbol FROM orders WHERE credential = ? "
                "AND client_order_id = ? ORDER BY order_id DESC LIMIT 1",
                (credential, client_order_id),
            ).fetchone()
        else:
            return None
        if row is None or (symbol is not None and row[2] != symbol):
            return None
        return int(row[0]), str(row[1])

    def order(
        self,
        credential: str,
        *,
        symbol: str | None = None,
        order_id: int | None = None,
        client_order_id: str | None = None,
    ) -> Order | None:
        """One order by id or client order id (the newest with that id), on ``symbol`` if given."""
        found = self._find(self._db, credential, symbol, order_id, client_order_id)
        if found is None:
            return None
        row = self._db.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE order_id = ?",  # noqa: S608
            (found[0],),
        ).fetchone()
        return _order(row)

    def orders(
        self, credential: str, symbol: str | None = None, *, state: str = "all", limit: int = 1000
    ) -> list[Order]:
        """Orders oldest first: ``state`` "open", "closed" or "all"; the newest ``limit``."""
        where = "credential = ?"
        args: list[Any] = [credential]
        if symbol is not None:
            where += " AND symbol = ?"
            args.append(symbol)
        if state == "open":
            where += " AND status IN ('NEW', 'PARTIALLY_FILLED')"
        elif state == "closed":
            where += " AND status NOT IN ('NEW', 'PARTIALLY_FILLED')"
        rows = self._db.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE {where} "  # noqa: S608
            "ORDER BY order_id DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [_order(row) for row in reversed(rows)]

    def open_count(self, credential: str) -> int:
        """How many orders of ``credential`` are open (all symbols), for ``max_open_orders``."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM orders WHERE credential = ? "
            "AND status IN ('NEW', 'PARTIALLY_FILLED')",
            (credential,),
        ).fetchone()
        return int(row[0])

    def position(self, credential: str, symbol: str) -> Position | None:
        """The credential's position in ``symbol`` (None when it never traded it)."""
        row = self._db.execute(
            "SELECT credential, symbol, base, quote, qty, cost, realized, closes, wins "
            "FROM positions WHERE credential = ? AND symbol = ?",
            (credential, symbol),
        ).fetchone()
        if row is None:
            return None
        return Position(
            row[0], row[1], row[2], row[3], _d(row[4]), _d(row[5]), _d(row[6]), row[7], row[8]
        )

    def resting(self) -> list[Resting]:
        """Every open limit order of every account, for the trade poller."""
        rows = self._db.execute(
            "SELECT o.order_id, o.credential, a.exchange, a.environment, o.symbol, o.side, "
            "o.price, o.quantity, o.executed_qty, o.last_trade_id, o.market_url "
            "FROM orders o JOIN accounts a ON a.credential = o.credential "
            "WHERE o.status IN ('NEW', 'PARTIALLY_FILLED') ORDER BY o.order_id"
        ).fetchall()
        return [
            Resting(r[0], r[1], r[2], r[3], r[4], r[5], _d(r[6]), _d(r[7]) - _d(r[8]), r[9], r[10])
            for r in rows
        ]

    def fills(self, credential: str, symbol: str | None = None, limit: int = 100_000) -> list[Fill]:
        """Fills oldest first (the newest ``limit``)."""
        where, args = "credential = ?", [credential]
        if symbol is not None:
            where += " AND symbol = ?"
            args.append(symbol)
        rows = self._db.execute(
            f"SELECT {_FILL_COLUMNS} FROM fills WHERE {where} "  # noqa: S608
            "ORDER BY fill_id DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [
            Fill(
                r[0],
                r[1],
                r[2],
                r[3],
                _d(r[4]),
                _d(r[5]),
                _d(r[6]),
                r[7],
                bool(r[8]),
                _opt(r[9]),
                r[10],
            )
            for r in reversed(rows)
        ]

    def fills_of(self, order_ids: Iterable[int]) -> list[Fill]:
        """The fills of these orders, oldest first."""
        ids = sorted(set(order_ids))
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(
            f"SELECT {_FILL_COLUMNS} FROM fills WHERE order_id IN ({marks}) "  # noqa: S608
            "ORDER BY fill_id",
            ids,
        ).fetchall()
        return [
            Fill(
                r[0],
                r[1],
                r[2],
                r[3],
                _d(r[4]),
                _d(r[5]),
                _d(r[6]),
                r[7],
                bool(r[8]),
                _opt(r[9]),
                r[10],
            )
            for r in rows
        ]

    def orders_by_id(self, credential: str, order_ids: Iterable[int]) -> list[Order]:
        ids = sorted(set(order_ids))
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self._db.execute(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE credential = ? "  # noqa: S608
            f"AND order_id IN ({marks}) ORDER BY order_id",
            (credential, *ids),
        ).fetchall()
        return [_order(row) for row in rows]

    def positions(self, credential: str) -> list[Position]:
        return [
            Position(r[0], r[1], r[2], r[3], _d(r[4]), _d(r[5]), _d(r[6]), r[7], r[8])
            for r in self._db.execute(
                "SELECT credential, symbol, base, quote, qty, cost, realized, closes, wins "
                "FROM positions WHERE credential = ? ORDER BY symbol",
                (credential,),
            )
        ]

    # -- marks ---------------------------------------------------------------------------------

    def mark(
        self, exchange: str, environment: str, instrument: Instrument, price: Decimal, ms: int
    ) -> None:
        """Note a market price (a book's mid, a last trade) for valuation and the equity curve."""
        self._db.execute(
            "INSERT INTO marks VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                exchange,
                environment,
                instrument.symbol,
                instrument.base,
                instrument.quote,
                ms,
                _text(price),
            ),
        )

    def marks(
        self, exchange: str, environment: str, since_ms: int = 0
    ) -> list[tuple[int, str, str, Decimal]]:
        """(ms, base, quote, price) oldest first."""
        return [
            (r[0], r[1], r[2], _d(r[3]))
            for r in self._db.execute(
                "SELECT ms, base, quote, price FROM marks WHERE exchange = ? AND environment = ? "
                "AND ms >= ? ORDER BY ms, rowid",
                (exchange, environment, since_ms),
            )
        ]

    # -- consistency -----------------------------------------------------------------------

    def check(self, credential: str) -> list[str]:
        """What is inconsistent in the credential's books (empty when all holds).

        Each asset's free plus locked equals its starting amount plus what the
        fills moved; locked equals what open orders reserve; each order's
        executed quantity and quote equal its fills'; closed orders reserve nothing.
        """
        problems: list[str] = []
        expected = dict(self.starting(credential))
        for fill in self.fills(credential):
            order = self.order(credential, order_id=fill.order_id)
            if order is None:
                problems.append(f"fill {fill.fill_id} belongs to no order")
                continue
            sign = 1 if fill.side == "buy" else -1
            expected[order.base] = expected.get(order.base, ZERO) + sign * fill.qty
            expected[order.quote] = expected.get(order.quote, ZERO) - sign * fill.qty * fill.price
            expected[fill.fee_asset] = expected.get(fill.fee_asset, ZERO) - fill.fee
        reserved: dict[str, Decimal] = {}
        for order_id, status, asset, amount, executed, quote in self._db.execute(
            "SELECT order_id, status, reserve_asset, reserved, executed_qty, cumulative_quote "
            "FROM orders WHERE credential = ?",
            (credential,),
        ):
            fills = self._db.execute(
                "SELECT price, qty FROM fills WHERE order_id = ?", (order_id,)
            ).fetchall()
            if sum((_d(q) for _, q in fills), ZERO) != _d(executed) or sum(
                (_d(p) * _d(q) for p, q in fills), ZERO
            ) != _d(quote):
                problems.append(f"order {order_id}: executed amounts differ from its fills")
            if status in ("NEW", "PARTIALLY_FILLED"):
                reserved[asset] = reserved.get(asset, ZERO) + _d(amount)
            elif _d(amount):
                problems.append(f"order {order_id} is {status} yet still reserves funds")
        held = {b.asset: b for b in self.balances(credential)}
        for asset in sorted(set(expected) | set(held) | set(reserved)):
            balance = held.get(asset, Balance(asset, ZERO, ZERO))
            if balance.free + balance.locked != expected.get(asset, ZERO):
                problems.append(f"{asset}: balance differs from starting balance plus fills")
            if balance.locked != reserved.get(asset, ZERO):
                problems.append(f"{asset}: locked differs from what open orders reserve")
            if balance.free < 0:
                problems.append(f"{asset}: free balance is negative")
        return problems

    # -- inside a transaction -----------------------------------------------------------------

    def _move(
        self, db: sqlite3.Connection, credential: str, asset: str, *, free: Decimal, locked: Decimal
    ) -> None:
        row = db.execute(
            "SELECT free, locked FROM balances WHERE credential = ? AND asset = ?",
            (credential, asset),
        ).fetchone()
        old_free, old_locked = (ZERO, ZERO) if row is None else (_d(row[0]), _d(row[1]))
        db.execute(
            "INSERT OR REPLACE INTO balances VALUES (?, ?, ?, ?)",
            (credential, asset, _text(old_free + free), _text(old_locked + locked)),
        )

    def _held(
        self, db: sqlite3.Connection, credential: str, assets: Iterable[str]
    ) -> dict[str, tuple[Decimal, Decimal]]:
        """{asset: (free, locked)} of these assets (absent: never held)."""
        wanted = sorted(set(assets))
        marks = ",".join("?" * len(wanted))
        return {
            asset: (_d(free), _d(locked))
            for asset, free, locked in db.execute(
                "SELECT asset, free, locked FROM balances WHERE credential = ? "  # noqa: S608
                f"AND asset IN ({marks})",
                (credential, *wanted),
            )
        }

    def _apply(
        self,
        db: sqlite3.Connection,
        credential: str,
        deltas: Mapping[str, Sequence[Decimal]],
        held: Mapping[str, tuple[Decimal, Decimal]] | None = None,
    ) -> None:
        # One read and one write for all assets an order touched, however many fills it
        # had; no read when the caller passes ``held`` (this transaction's reading of every
        # asset in ``deltas``; an absent one was never held).
        if not deltas:
            return
        assets = sorted(deltas)
        if held is None:
            held = self._held(db, credential, assets)
        db.executemany(
            "INSERT OR REPLACE INTO balances VALUES (?, ?, ?, ?)",
            [
                (
                    credential,
                    asset,
                    _text(held.get(asset, (ZERO, ZERO))[0] + deltas[asset][0]),
                    _text(held.get(asset, (ZERO, ZERO))[1] + deltas[asset][1]),
                )
                for asset in assets
            ],
        )

    def _fills(
        self,
        db: sqlite3.Connection,
        credential: str,
        order_id: int,
        instrument: Instrument,
        side: Side,
        levels: Sequence[Level],
        rate: Decimal,
        *,
        is_maker: bool,
        mid: Decimal | None,
        now_ms: int,
        deltas: dict[str, list[Decimal]],
        reserved: bool = False,
    ) -> list[Fill]:
        """Record fills: rows, balance deltas (added to ``deltas``), the position, at once."""
        if not levels:
            return []
        base, quote = instrument.base, instrument.quote
        fee_asset = base if side == "buy" else quote

        def add(asset: str, free: Decimal) -> None:
            deltas.setdefault(asset, [ZERO, ZERO])[0] += free

        rows = []
        charged_each = []
        for level in levels:
            price, qty = level.price, level.qty
            charged = fee(side, price, qty, rate)
            charged_each.append(charged)
            if side == "buy":
                # A resting buy pays from its reservation (its locked delta is the caller's).
                if not reserved:
                    add(quote, -price * qty)
                add(base, qty - charged)
            else:
                if not reserved:
                    add(base, -qty)
                add(quote, price * qty - charged)
            rows.append(
                (
                    credential,
                    order_id,
                    instrument.symbol,
                    side,
                    _text(price),
                    _text(qty),
                    _text(charged),
                    fee_asset,
                    int(is_maker),
                    None if mid is None else _text(mid),
                    now_ms,
                )
            )
        # One statement per 80 fills (under SQLite's oldest limit of 999 parameters): its
        # lastrowid is its last fill's id, and the AUTOINCREMENT ids of one transaction's
        # rows are consecutive (nothing else writes meanwhile).
        last = 0
        for start in range(0, len(rows), _FILLS_PER_INSERT):
            chunk = rows[start : start + _FILLS_PER_INSERT]
            values = ", ".join([_FILL_ROW] * len(chunk))  # placeholders only
            cursor = db.execute(
                f"{_INSERT_FILLS} {values}", [value for row in chunk for value in row]
            )
            last = cast(int, cursor.lastrowid)
        first = last - len(rows) + 1
        self._position(db, credential, instrument, side, levels, charged_each)
        return [
            Fill(
                first + i,
                order_id,
                instrument.symbol,
                side,
                level.price,
                level.qty,
                charged_each[i],
                fee_asset,
                is_maker,
                mid,
                now_ms,
            )
            for i, level in enumerate(levels)
        ]

    def _position(
        self,
        db: sqlite3.Connection,
        credential: str,
        instrument: Instrument,
        side: Side,
        levels: Sequence[Level],
        charged_each: Sequence[Decimal],
    ) -> None:
        # Average cost: a buy adds what it received (net of its base fee) at what it paid; a
        # sell realises proceeds net of its quote fee against the average cost of what it
        # closes. Selling more than was bought here (starting inventory) realises nothing.
        row = db.execute(
            "SELECT qty, cost, realized, closes, wins FROM positions "
            "WHERE credential = ? AND symbol = ?",
            (credential, instrument.symbol),
        ).fetchone()
        held, cost, realized, closes, wins = (
            (ZERO, ZERO, ZERO, 0, 0)
            if row is None
            else (_d(row[0]), _d(row[1]), _d(row[2]), row[3], row[4])
        )
        for level, charged in zip(levels, charged_each, strict=True):
            price, qty = level.price, level.qty
            if side == "buy":
                held += qty - charged
                cost += price * qty
                continue
            closing = min(qty, held)
            if closing > 0:
                basis = cost * closing / held
                pnl = price * closing - charged * closing / qty - basis
                realized += pnl
                cost -= basis
                held -= closing
                closes += 1
                wins += 1 if pnl > 0 else 0
                if held == 0:
                    cost = ZERO
        db.execute(
            "INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                credential,
                instrument.symbol,
                instrument.base,
                instrument.quote,
                _text(held),
                _text(cost),
                _text(realized),
                closes,
                wins,
            ),
        )


def _order(row: Sequence[Any]) -> Order:
    return Order(
        order_id=row[0],
        credential=row[1],
        client_order_id=row[2],
        symbol=row[3],
        base=row[4],
        quote=row[5],
        side=cast(Side, row[6]),
        type=cast(OrderType, row[7]),
        time_in_force=cast(TimeInForce, row[8]),
        post_only=bool(row[9]),
        quantity=_opt(row[10]),
        quote_quantity=_opt(row[11]),
        price=_opt(row[12]),
        status=cast(Status, row[13]),
        executed_qty=_d(row[14]),
        cumulative_quote=_d(row[15]),
        created_ms=row[16],
        updated_ms=row[17],
    )
