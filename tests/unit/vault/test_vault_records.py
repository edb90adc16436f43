"""Associated data and validation, as properties over many inputs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vault_testkit import FAST_KDF, PASSPHRASE

from keybroker import errors
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial, Vault
from keybroker.vault.records import COLUMNS, associated_data, check_name

column_values = st.one_of(st.none(), st.integers(), st.text(max_size=20))
rows = st.fixed_dictionaries({column: column_values for column in COLUMNS})
vault_ids = st.text(min_size=1, max_size=8)
record_ids = st.integers(min_value=1, max_value=2**62)


@given(a=st.tuples(vault_ids, record_ids, rows), b=st.tuples(vault_ids, record_ids, rows))
def test_associated_data_differs_whenever_anything_bound_differs(
    a: tuple[str, int, dict[str, object]], b: tuple[str, int, dict[str, object]]
) -> None:
    # Injective: no edit to a bound value can keep the same associated data.
    assert (associated_data(*a) == associated_data(*b)) == (a == b)


@given(name=st.text(max_size=70))
def test_names_are_exactly_1_to_64_of_the_safe_characters(name: str) -> None:
    if re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name):
        check_name(name)
    else:
        with pytest.raises(errors.InvalidInput):
            check_name(name)


# Printable, no whitespace: what a key or secret typed by a user looks like.
tokens = st.text(
    alphabet=st.characters(
        min_codepoint=0x21, max_codepoint=0x10FFFF, exclude_categories=["Z", "C"]
    ),
    min_size=1,
    max_size=80,
)


@pytest.fixture(scope="module")
def shared_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    """One vault for every example below (a vault per example would pay the KDF each time)."""
    home = tmp_path_factory.mktemp("records")
    home.chmod(0o700)
    with Vault.create(Path(home) / "vault.db", Secret(PASSPHRASE), kdf=FAST_KDF) as vault:
        yield vault


@settings(max_examples=40, deadline=None)
@given(
    api_key=tokens,
    secret=tokens,
    passphrase=st.none() | tokens,
    notes=st.text(max_size=200),
    number=st.integers(min_value=0, max_value=10**9),
)
def test_whatever_goes_in_comes_out(
    shared_vault: Vault,
    api_key: str,
    secret: str,
    passphrase: str | None,
    notes: str,
    number: int,
) -> None:
    name = f"prop-{number}"
    if any(record.name == name for record in shared_vault.list_credentials()):
        shared_vault.remove(name)
    material = KeyMaterial(
        api_key, Secret(secret), None if passphrase is None else Secret(passphrase)
    )
    record = shared_vault.add(name, "kraken", material, notes=notes)
    assert shared_vault.record(name) == record
    credential = shared_vault.credential(name)
    assert (credential.api_key, credential.secret.reveal_text()) == (api_key, secret)
    got = None if credential.passphrase is None else credential.passphrase.reveal_text()
    assert got == passphrase
