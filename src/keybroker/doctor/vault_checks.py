"""Checks 5, 7 and the token part of 9: what the vault says about environments, ages and tokens.

    >>> check_environments(inputs)   # production keys need allow_production in their policy
    >>> check_rotation(inputs)       # trade keys: warn after 30 days, due after 60; read: 60/90

Credential metadata and tokens are read while the vault is locked; policies
are sealed, so the production-policy check needs the vault unlocked (the
CLI unlocks only when the vault holds a production key, or for --online).
"""

from __future__ import annotations

from keybroker.doctor.inputs import Inputs
from keybroker.doctor.result import Result
from keybroker.errors import KeybrokerError
from keybroker.policy import DEFAULT_POLICY, Policy
from keybroker.vault import BotToken, CredentialRecord, Vault, rotation_status


def _no_vault(group: str, name: str, inputs: Inputs) -> Result:
    if inputs.vault_problem is not None:
        return Result(group, name, "fail", inputs.vault_problem)
    return Result(
        group, name, "pass", f"no vault at {inputs.settings.vault_path}: nothing to check"
    )


def _records(vault: Vault, inputs: Inputs) -> list[CredentialRecord]:
    return [r for r in vault.list_credentials() if inputs.credential in (None, r.name)]


def policy_of(vault: Vault, name: str) -> Policy:
    """The credential's policy (the default, read-only one when none was set); needs unlock."""
    document = vault.policy_document(name)
    return DEFAULT_POLICY if document is None else Policy.from_json(document)


def _active_tokens(vault: Vault, inputs: Inputs) -> list[BotToken]:
    tokens = [t for t in vault.list_tokens() if t.state(inputs.now) == "active"]
    if inputs.credential is not None:
        tokens = [t for t in tokens if t.allows(inputs.credential)]
    return tokens


def check_environments(inputs: Inputs) -> list[Result]:
    """Credentials by environment; production ones need allow_production and expiring tokens."""
    vault = inputs.vault
    if vault is None:
        return [_no_vault("environments", "environments.list", inputs)]
    records = _records(vault, inputs)
    by_environment: dict[str, list[str]] = {}
    for record in records:
        by_environment.setdefault(record.environment, []).append(record.name)
    listing = tuple(f"{env}: {', '.join(names)}" for env, names in sorted(by_environment.items()))
    results = [
        Result(
            "environments",
            "environments.list",
            "pass",
            f"{len(records)} credentials: "
            + ", ".join(f"{len(v)} {k}" for k, v in sorted(by_environment.items()))
            if records
            else "the vault holds no credential yet",
            listing,
        )
    ]
    production = by_environment.get("production", [])
    if not production:
        return results
    results.append(_production_policies(vault, production, inputs.vault_problem))
    results.append(_production_tokens(vault, inputs, set(production)))
    return results


def _production_policies(vault: Vault, production: list[str], problem: str | None) -> Result:
    name = "environments.production_policy"
    if not vault.is_unlocked:
        return Result(
            "environments",
            name,
            "warn",
            problem or "policies are sealed: unlock to check them (--passphrase-file)",
            tuple(production),
        )
    missing = []
    for credential in production:
        try:
            if not policy_of(vault, credential).allow_production:
                missing.append(credential)
        except KeybrokerError as error:
            missing.append(f"{credential}: {error}")
    if missing:
        return Result(
            "environments",
            name,
            "warn",
            "production credentials whose policy lacks allow_production: every request is "
            "refused; set it deliberately (keybroker policy set NAME --allow-production) or "
            "remove the credential",
            tuple(missing),
        )
    return Result(
        "environments", name, "pass", "every production credential's policy allows production"
    )


def _production_tokens(vault: Vault, inputs: Inputs, production: set[str]) -> Result:
    name = "environments.production_tokens"
    endless = [
        f"{t.bot} -> {', '.join(sorted(production & set(t.credentials)))}"
        for t in _active_tokens(vault, inputs)
        if t.expires_at is None and production & set(t.credentials)
    ]
    if endless:
        return Result(
            "environments",
            name,
            "fail",
            "bot tokens that reach production never expire: a leaked one trades until "
            "someone notices; revoke and recreate with --expires",
            tuple(endless),
        )
    return Result("environments", name, "pass", "every token reaching production expires")


def check_rotation(inputs: Inputs) -> list[Result]:
    """Key age against the rotation policy: trade keys 30-60 days, read-only 60-90."""
    vault = inputs.vault
    if vault is None:
        return [_no_vault("rotation", "rotation.age", inputs)]
    records = _records(vault, inputs)
    if not records:
        return [Result("rotation", "rotation.age", "pass", "no credential to rotate")]
    due, soon = [], []
    for record in records:
        status = rotation_status(record, inputs.now)
        age = (inputs.now - (record.rotated_at or record.created_at)).days
        kind = "trade" if "trade" in record.scopes else "read-only"
        line = f"{record.name}: {age} days old ({kind} key)"
        if status == "due":
            due.append(line)
        elif status == "warn":
            soon.append(line)
    if due:
        return [
            Result(
                "rotation",
                "rotation.age",
                "fail",
                "keys past their rotation age: make a new key at the exchange, "
                "`keybroker keys rotate NAME`, then delete the old key there",
                tuple(due + soon),
            )
        ]
    if soon:
        return [
            Result(
                "rotation",
                "rotation.age",
                "warn",
                "keys due for rotation within the month (trade keys by 60 days, read-only by 90)",
                tuple(soon),
            )
        ]
    return [Result("rotation", "rotation.age", "pass", f"{len(records)} keys within rotation age")]


def check_token_expiry(inputs: Inputs) -> list[Result]:
    """Active bot tokens without an expiry (any environment) -> warn."""
    vault = inputs.vault
    if vault is None:
        return [_no_vault("gateway", "gateway.token_expiry", inputs)]
    endless = [t.bot for t in _active_tokens(vault, inputs) if t.expires_at is None]
    if endless:
        return [
            Result(
                "gateway",
                "gateway.token_expiry",
                "warn",
                "bot tokens without expiry: recreate them with --expires so a forgotten "
                "one stops by itself",
                tuple(endless),
            )
        ]
    return [Result("gateway", "gateway.token_expiry", "pass", "every active bot token expires")]
