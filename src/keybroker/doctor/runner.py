"""The checklist: every check in the issue's order, run one after the other.

    >>> results = run(inputs)                       # the whole checklist
    >>> results = run(inputs, CREDENTIAL_CHECKS)    # what `keybroker incident` ends with

A check that raises does not stop the others: a KeybrokerError becomes a
failed result with its one-line message; anything else (a bug) becomes a
failed result naming only the exception type, because its text might quote
what the check was reading.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from keybroker.doctor.audit_checks import check_alerts, check_audit_chain
from keybroker.doctor.code_checks import (
    check_env_files,
    check_secrets_in_files,
    check_secrets_in_history,
)
from keybroker.doctor.file_checks import check_own_files, check_passphrase_source
from keybroker.doctor.gateway_checks import check_gateway_cors, check_gateway_listen
from keybroker.doctor.inputs import Inputs
from keybroker.doctor.online_checks import check_online
from keybroker.doctor.output_checks import check_secret_safe_output
from keybroker.doctor.process_checks import check_core_dumps, check_memlock, check_root, check_swap
from keybroker.doctor.result import Result
from keybroker.doctor.vault_checks import check_environments, check_rotation, check_token_expiry
from keybroker.errors import KeybrokerError

Check = Callable[[Inputs], list[Result]]

# (group, check): the group names where a crash of the check is reported.
CHECKS: tuple[tuple[str, Check], ...] = (
    ("secrets", check_secrets_in_files),
    ("secrets", check_secrets_in_history),
    ("env", check_env_files),
    ("files", check_own_files),
    ("files", check_passphrase_source),
    ("output", check_secret_safe_output),
    ("environments", check_environments),
    ("online", check_online),
    ("rotation", check_rotation),
    ("audit", check_audit_chain),
    ("audit", check_alerts),
    ("gateway", check_gateway_listen),
    ("gateway", check_gateway_cors),
    ("gateway", check_token_expiry),
    ("process", check_root),
    ("process", check_core_dumps),
    ("process", check_swap),
    ("process", check_memlock),
)
"""The whole checklist, in the order of issue 7's list."""

CREDENTIAL_CHECKS: tuple[tuple[str, Check], ...] = tuple(
    (group, check)
    for group, check in CHECKS
    if group in ("files", "environments", "online", "rotation", "audit", "gateway")
)
"""The checks that say something about one credential (with ``Inputs.credential`` set)."""


def run(inputs: Inputs, checks: Sequence[tuple[str, Check]] = CHECKS) -> list[Result]:
    """Every check's results, in order; a check that raises becomes one failed result."""
    results: list[Result] = []
    for group, check in checks:
        name = f"{group}.{check.__name__.removeprefix('check_')}"
        try:
            results.extend(check(inputs))
        except KeybrokerError as error:
            results.append(Result(group, name, "fail", f"the check could not run: {error}"))
        except Exception as error:  # a bug in a check must not hide the other checks
            results.append(
                Result(
                    group,
                    name,
                    "fail",
                    f"the check crashed ({type(error).__name__}); rerun with --debug",
                )
            )
    return results
