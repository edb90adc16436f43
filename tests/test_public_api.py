"""The public Python surface is one sorted list, and it is complete."""

from __future__ import annotations

from types import ModuleType

import keybroker


def test_public_api_is_sorted_and_complete() -> None:
    public = {
        name
        for name, value in vars(keybroker).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert keybroker.__all__ == sorted(public, key=str.casefold)


def test_version_is_a_string() -> None:
    assert isinstance(keybroker.__version__, str)
