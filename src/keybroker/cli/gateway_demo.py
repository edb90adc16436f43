"""The gateway half of ``keybroker demo``: emulator, vault, gateway and a short bot, then a summary.

    >>> run_gateway_demo(walkthrough)      # walkthrough: demo._Walkthrough in a throwaway home

What runs is the real thing on 127.0.0.1: the exchange emulator (Binance's
API) and the gateway (``create_app`` on uvicorn, what ``keybroker serve``
runs) in threads of this process, the vault and audit log as files in the
throwaway home, and the bot's side through the public bridges only
(``connect_ccxt``, ``gateway_config``): it is given the gateway's URL and a
bot token, never the key. Each step's expected outcome is written down
beside it; the demo fails (exit 1) if any differs, so it is also a test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from keybroker.cli.output import print_table, say
from keybroker.errors import ExchangeError, KeybrokerError
from keybroker.secret import Secret

CREDENTIAL = "demo-binance"
BURST_CREDENTIAL = "demo-burst"
BOT = "demo-bot"
# The emulator's key: fake, and stored in the vault exactly as a testnet key would be.
EMULATOR_KEY = "DEMOfakeEmulatorKey00000000000000000000000000000000000000000001"
EMULATOR_SECRET = "DEMOfakeEmulatorSecret000000000000000000000000000000000000000001"  # noqa: S105
SPOT_ONLY = {"options": {"fetchMarkets": {"types": ["spot"]}}}


@dataclass
class Step:
    """One row of the summary: what the bot tried, what should happen, what did."""

    via: str
    action: str
    expected: str
    outcome: str = "not run"
    ok: bool = False


@dataclass
class Summary:
    steps: list[Step] = field(default_factory=list)

    def run(self, via: str, action: str, expected: str, call: Callable[[], str]) -> str:
        """Run ``call``: its text, or the refusal's rule, is the outcome; compare it."""
        step = Step(via, action, expected)
        self.steps.append(step)
        try:
            step.outcome = call()
        except Exception as exc:  # the outcome is the point; the table shows it
            step.outcome = _refusal(exc)
        step.ok = step.outcome.startswith(expected)
        mark = "ok" if step.ok else "UNEXPECTED"
        say(f"   [{mark}] {via}: {action} -> {step.outcome}")
        return step.outcome


def _refusal(exc: BaseException) -> str:
    # ccxt's and the adapter's errors both carry the gateway's rule in their text;
    # neither carries a secret (the bot never had one).
    text = str(exc)
    for rule in ("never_withdraw", "max_notional", "price_collar", "kill_switch", "rate_limited"):
        if rule in text:
            return f"denied: {rule}"
    if isinstance(exc, ExchangeError):
        return f"error: {exc.code}"
    return f"error: {type(exc).__name__}"


def run_gateway_demo(demo: Any) -> bool:
    """The gateway demo in ``demo.home`` (a ``_Walkthrough``); True if all went as expected.

    Everything started here is stopped before it returns, also on failure.
    """
    from keybroker.cli.demo import DEMO_KDF, DEMO_PASSPHRASE

    say(
        f"keybroker demo: the signing gateway, in a throwaway home {demo.home} "
        "(deleted at the end)."
    )
    say("Key derivation is at its floor (Argon2id, 64 MiB, 1 pass, 1 lane) so the demo is quick.")
    say(
        "The exchange is keybroker's local emulator of Binance's API; "
        "its key is a fake testnet key."
    )
    demo.write_passphrase()
    stops: list[Callable[[], None]] = []
    try:
        emulator_url = _start_emulator(stops)
        say(f"(The emulator listens on {emulator_url}.)")
        demo.run("Create the vault", "init", *DEMO_KDF, passphrase=True)
        for name in (CREDENTIAL, BURST_CREDENTIAL):
            demo.run(
                f"Store the emulator's testnet key as {name}",
                *("keys", "add", name, "--exchange", "binance", "--scope", "read,trade"),
                "--from-env",
                *("--base-url", emulator_url),
                environ={"BINANCE_API_KEY": EMULATOR_KEY, "BINANCE_API_SECRET": EMULATOR_SECRET},
                passphrase=True,
            )
            demo.run(
                f"A policy for {name}: trade BTCUSDT only, at most 1,000 USDT an order, "
                "limit prices within 5% of the last price",
                *("policy", "set", name, "--scope", "trade", "--symbols", "BTCUSDT"),
                *("--max-notional", "1000", "--price-collar", "5"),
                passphrase=True,
            )
        vault = _open_vault(demo.home, DEMO_PASSPHRASE)
        stops.append(vault.close)
        say()
        say(f"── {demo.step + 1}. A bot token for {BOT}, granted both credentials")
        say(
            f"$ keybroker tokens create {BOT} --credential {CREDENTIAL} "
            f"--credential {BURST_CREDENTIAL}"
        )
        demo.step += 1
        secret, _ = vault.create_token(
            BOT, [CREDENTIAL, BURST_CREDENTIAL], expires_at=None, max_orders_per_minute=None
        )
        token = secret.reveal_text()
        say("(Printed once; the vault keeps only its hash. The demo keeps it in memory, unshown.)")
        gateway_url = _start_gateway(vault, demo.home, emulator_url, stops)
        say()
        say(
            f"── {demo.step + 1}. The gateway listens on {gateway_url} "
            "(what `keybroker serve` runs)"
        )
        demo.step += 1
        say(f"   Order budget of {BURST_CREDENTIAL} turned down to 1 per 10 s, to show a wait.")
        summary = Summary()
        _bot(demo, summary, gateway_url, token)
    finally:
        for stop in reversed(stops):
            stop()
    say()
    print_table(
        "What the bot tried, through the gateway",
        ["#", "via", "request", "expected", "outcome", ""],
        [
            [str(n), s.via, s.action, s.expected, s.outcome, "ok" if s.ok else "UNEXPECTED"]
            for n, s in enumerate(summary.steps, 1)
        ],
    )
    audit_ok = True
    try:
        demo.run("Verify the audit log's hash chain", "audit", "verify")
    except KeybrokerError:
        audit_ok = False
    return audit_ok and all(step.ok for step in summary.steps)


def _bot(demo: Any, summary: Summary, gateway_url: str, token: str) -> None:
    """The bot: only the gateway's URL and the token, through the public bridges."""
    from keybroker.client import BinanceAdapter, connect_ccxt, gateway_config

    try:
        import ccxt  # noqa: F401 - only: is it installed?
    except ImportError:
        ccxt_bot: Any = _PlainHttpBot(gateway_url, token)
        via = "http"
        say()
        say(f"── {demo.step + 1}. ccxt is not installed (pip install keybroker[ccxt]); the same")
        say("   bot in plain HTTP: the exchange's own paths, unsigned, plus the token header")
        say(f"   {gateway_url}/{CREDENTIAL}/api/v3/order  with  X-Keybroker-Token: TOKEN")
    else:
        via = "ccxt"
        say()
        say(f"── {demo.step + 1}. A ccxt bot, changed in one line:")
        say(f'   exchange = keybroker.connect_ccxt("{CREDENTIAL}",')
        say(f'                                     gateway_url="{gateway_url}", token=TOKEN)')
        ccxt_bot = connect_ccxt(CREDENTIAL, gateway_url=gateway_url, token=token, config=SPOT_ONLY)
    demo.step += 1
    summary.run(via, "fetch_balance()", "ok", lambda: _balance(ccxt_bot))
    placed = summary.run(
        via,
        "limit buy 0.001 BTC @ 58,000",
        "ok",
        lambda: _ccxt_order(ccxt_bot, 0.001, 58000),
    )
    order_id = placed.rsplit(" ", 1)[-1]
    summary.run(
        via,
        "cancel that order",
        "ok",
        lambda: "ok: " + str(ccxt_bot.cancel_order(order_id, "BTC/USDT")["id"]),
    )
    summary.run(
        via,
        "withdraw 1 BTC",
        "denied: never_withdraw",
        lambda: str(ccxt_bot.withdraw("BTC", 1, "bc1qdemodemodemodemodemodemodemodemodemo0")),
    )
    summary.run(
        via,
        "limit buy 1 BTC @ 59,000 (59,000 USDT)",
        "denied: max_notional",
        lambda: _ccxt_order(ccxt_bot, 1, 59000),
    )
    summary.run(
        via,
        "limit buy 0.001 BTC @ 6,000 (fat finger)",
        "denied: price_collar",
        lambda: _ccxt_order(ccxt_bot, 0.001, 6000),
    )

    say()
    say(f"── {demo.step + 1}. The kill switch: halt, then try to trade, cancel, resume")
    demo.step += 1
    resting = summary.run(
        via, "limit buy 0.001 BTC @ 57,000", "ok", lambda: _ccxt_order(ccxt_bot, 0.001, 57000)
    )
    resting_id = resting.rsplit(" ", 1)[-1]
    demo.run("Halt the credential: no passphrase needed", "halt", CREDENTIAL, "--reason", "demo")
    summary.run(
        via,
        "limit buy while halted",
        "denied: kill_switch",
        lambda: _ccxt_order(ccxt_bot, 0.001, 58000),
    )
    summary.run(
        via,
        "cancel while halted",
        "ok",
        lambda: "ok: " + str(ccxt_bot.cancel_order(resting_id, "BTC/USDT")["id"]),
    )
    demo.run("Resume it (needs the passphrase)", "resume", CREDENTIAL, passphrase=True)
    again = summary.run(
        via, "limit buy after resume", "ok", lambda: _ccxt_order(ccxt_bot, 0.001, 58000)
    )
    again_id = again.rsplit(" ", 1)[-1]
    summary.run(
        via,
        "cancel it",
        "ok",
        lambda: "ok: " + str(ccxt_bot.cancel_order(again_id, "BTC/USDT")["id"]),
    )

    if isinstance(ccxt_bot, _PlainHttpBot):
        ccxt_bot.close()

    say()
    say(f"── {demo.step + 1}. The same through the adapter:")
    demo.step += 1
    say(f'   BinanceAdapter(keybroker.gateway_config("{BURST_CREDENTIAL}",')
    say(f'                                           gateway_url="{gateway_url}", token=TOKEN))')
    config = gateway_config(BURST_CREDENTIAL, token=Secret(token), gateway_url=gateway_url)
    with BinanceAdapter(config) as adapter:
        summary.run(
            "adapter", "ticker BTCUSDT", "ok", lambda: f"ok: last {adapter.ticker('BTCUSDT').last}"
        )
        placed_ids: list[str] = []
        for n in range(1, 4):
            started = time.monotonic()
            outcome = summary.run(
                "adapter",
                f"limit buy 0.001 BTC @ 58,000 (order {n})",
                "ok",
                lambda: _adapter_order(adapter, placed_ids),
            )
            waited = time.monotonic() - started
            if waited > 0.5 and outcome.startswith("ok"):
                summary.steps[-1].outcome += f", after a {waited:.1f} s rate-limit wait"
                say(f"   (the gateway held order {n} for {waited:.1f} s: the budget was spent)")
                break
        for order_id in placed_ids:
            summary.run(
                "adapter",
                f"cancel order {order_id}",
                "ok",
                lambda order_id=order_id: (
                    "ok: "  # type: ignore[misc]
                    + adapter.cancel_order("BTCUSDT", order_id=order_id).status
                ),
            )
        summary.run(
            "adapter",
            "limit buy 1 BTC @ 59,000",
            "denied: max_notional",
            lambda: _adapter_order(adapter, placed_ids, quantity="1", price="59000"),
        )
    waits = [step for step in summary.steps if "rate-limit wait" in step.outcome]
    if not waits:
        summary.steps.append(
            Step("adapter", "a rate-limit wait", "a wait", "no wait was needed", ok=False)
        )


class _PlainHttpBot:
    """The ccxt steps without ccxt: Binance's own REST paths, unsigned, to the gateway."""

    def __init__(self, gateway_url: str, token: str) -> None:
        import httpx

        self._http = httpx.Client(
            base_url=f"{gateway_url}/{CREDENTIAL}",
            headers={"X-Keybroker-Token": token},
            timeout=30,
        )

    def _call(self, method: str, path: str, params: dict[str, str]) -> Any:
        if method == "GET":
            response = self._http.request(method, path, params=params)
        else:
            response = self._http.request(method, path, data=params)
        if response.status_code != 200:
            raise ExchangeError(f"HTTP {response.status_code}: {response.text[:300]}")
        return response.json()

    def fetch_balance(self) -> dict[str, Any]:
        account = self._call("GET", "/api/v3/account", {})
        return {"total": {b["asset"]: float(b["free"]) + float(b["locked"])
                          for b in account["balances"]}}  # fmt: skip

    def create_order(
        self, symbol: str, kind: str, side: str, amount: float, price: float
    ) -> dict[str, Any]:
        params = {"symbol": symbol.replace("/", ""), "side": side.upper(), "type": kind.upper(),
                  "timeInForce": "GTC", "quantity": str(amount), "price": str(price)}  # fmt: skip
        return {"id": str(self._call("POST", "/api/v3/order", params)["orderId"])}

    def cancel_order(self, order_id: str, symbol: str) -> dict[str, Any]:
        params = {"symbol": symbol.replace("/", ""), "orderId": order_id}
        return {"id": str(self._call("DELETE", "/api/v3/order", params)["orderId"])}

    def withdraw(self, code: str, amount: float, address: str) -> Any:
        params = {"coin": code, "amount": str(amount), "address": address}
        return self._call("POST", "/sapi/v1/capital/withdraw/apply", params)

    def close(self) -> None:
        self._http.close()


def _balance(client: Any) -> str:
    balance = client.fetch_balance()
    return f"ok: {balance['total'].get('USDT')} USDT"


def _ccxt_order(client: Any, amount: float, price: float) -> str:
    order = client.create_order("BTC/USDT", "limit", "buy", amount, price)
    return f"ok: order {order['id']}"


def _adapter_order(
    adapter: Any, placed: list[str], quantity: str = "0.001", price: str = "58000"
) -> str:
    order = adapter.place_order("BTCUSDT", "buy", "limit", quantity, price)
    placed.append(order.order_id)
    return f"ok: order {order.order_id}"


def _start_emulator(stops: list[Callable[[], None]]) -> str:
    from keybroker.emulator import ApiKey, create_app, serve_in_thread

    url, stop = serve_in_thread(
        create_app("binance", [ApiKey(EMULATOR_KEY, Secret(EMULATOR_SECRET))])
    )
    stops.append(stop)
    return url


def _open_vault(home: Any, passphrase: str) -> Any:
    from keybroker.vault import Vault

    vault = Vault.open(home / "vault.db")
    vault.unlock(Secret(passphrase))
    return vault


def _start_gateway(
    vault: Any, home: Any, emulator_url: str, stops: list[Callable[[], None]]
) -> str:
    from keybroker.gateway import GatewayConfig, create_app, serve_in_thread
    from keybroker.ratelimit import MemoryLimiter, host_prefix

    host = urlsplit(emulator_url).netloc
    # One order per 10 s for demo-burst alone (Binance's ORDERS_10S is per account).
    burst = f"{host_prefix('binance', 'testnet', host)}:{BURST_CREDENTIAL}:ORDERS_10S"
    limiter = MemoryLimiter(limit_overrides={burst: 1})
    config = GatewayConfig(audit_path=home / "audit.db", rate_limit_deadline_s=15.0)
    running = serve_in_thread(create_app(vault, config, limiter=limiter))
    stops.append(running.stop)
    return running.url
