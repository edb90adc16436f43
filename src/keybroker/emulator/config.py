"""How one emulator instance behaves; frozen, built once by the CLI or a test.

>>> EmulatorConfig(seed=7, weight_limit=50, faults=FaultSpec.parse("error5xx=0.1"))
"""

from __future__ import annotations

from dataclasses import dataclass, field

from keybroker.emulator.faults import FaultSpec


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """``weight_limit`` is Binance's REQUEST_WEIGHT per minute per IP (spot and USDⓈ-M each).

    ``ban_after``: requests a client may send past a 429 within the same
    minute before it is banned with 418. ``okx_demo``: the OKX emulator is the
    demo-trading environment (private requests must carry
    ``x-simulated-trading: 1``); False makes it the live one (they must not).
    """

    seed: int = 1
    weight_limit: int = 1200
    ban_after: int = 5
    spot_orders_per_10s: int = 100
    spot_orders_per_day: int = 200_000
    usdm_orders_per_10s: int = 300
    usdm_orders_per_minute: int = 1200
    okx_demo: bool = True
    faults: FaultSpec = field(default_factory=FaultSpec)
