"""Starting balances given from Python behave like the keys file's."""

from __future__ import annotations

from decimal import Decimal

from keybroker.emulator.keys import ApiKey
from keybroker.secret import Secret


def test_balances_given_as_text_or_numbers_become_decimals() -> None:
    key = ApiKey("FAKE-key", Secret("FAKE-secret"), balances={"BTC": "2", "USDT": 50000})
    assert key.balances == {"BTC": Decimal("2"), "USDT": Decimal("50000")}
    assert all(isinstance(v, Decimal) for v in (key.balances or {}).values())
