"""The production checklist of seeds 000-003, checked by the program (``keybroker doctor``).

    >>> results = run(Inputs(settings=Settings.from_env(os.environ), environ=os.environ,
    ...                      repo=Path(".")))
    >>> exit_code(results, strict=False)
    0

Each check is a small function of ``Inputs`` returning ``Result``s (pass,
warn or fail, with one line of advice and optional details), grouped one
module per part of the checklist: ``code_checks`` (secrets in the repo and
its history, .env files), ``file_checks``, ``output_checks`` (a canary
secret through repr, str and logs), ``vault_checks`` (environments,
rotation, token expiry), ``online_checks`` (the exchange's view of each
key), ``audit_checks``, ``gateway_checks`` and ``process_checks``.
``runner.CHECKS`` is the list in order; ``result.report_document`` the JSON.
No result ever holds a secret: found values are shown as ``mask(value)``.
"""

from keybroker.doctor.inputs import Inputs, SystemFacts
from keybroker.doctor.result import (
    GROUPS,
    SCHEMA,
    SCHEMA_VERSION,
    Result,
    Status,
    exit_code,
    report_document,
)
from keybroker.doctor.runner import CHECKS, CREDENTIAL_CHECKS, run

__all__ = [
    "CHECKS",
    "CREDENTIAL_CHECKS",
    "GROUPS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Inputs",
    "Result",
    "Status",
    "SystemFacts",
    "exit_code",
    "report_document",
    "run",
]
