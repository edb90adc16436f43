"""Check 6 (``--online``): the exchange's own view of each key, asked through the signer.

    >>> check_online(inputs)   # fail: "binance-main can withdraw"; warn: "no IP restriction"

For each credential the exchange profile's ``permission_request`` is signed
with the vault's key (``profile.sign``, the same signer the gateway uses) and
sent to the credential's base URL; ``parse_permission_response`` reads the
answer (seed 000 §6-7, seed 001). A key that can withdraw fails: keybroker
never signs a withdrawal, so the right only serves a thief who copies the
key. A key bound to no IP warns, and so does a key that can trade while its
policy only reads (the exchange would honour what the policy refuses, for
anyone holding a copy). The exchange's public clock is compared with ours:
signed requests are refused beyond the receive window.
"""

from __future__ import annotations

import time

import httpx

from keybroker.doctor.inputs import Inputs
from keybroker.doctor.result import Result, Status
from keybroker.doctor.vault_checks import policy_of
from keybroker.errors import ExchangeRejected, InvalidInput, KeybrokerError, UpstreamError
from keybroker.exchanges import ExchangeProfile, KeyPermissions, get_profile
from keybroker.model import Credential
from keybroker.vault import CredentialRecord, Vault

SKEW_WARN_MS = 1000
"""Binance refuses a timestamp 1 s ahead of its clock; OKX allows 30 s in all."""
SKEW_FAIL_MS = 5000
"""Binance's default receive window: beyond it every signed request fails."""
TIMEOUT_S = 10.0


def rebased(request: httpx.Request, base_url: str | None) -> httpx.Request:
    """``request`` sent to ``base_url`` instead (an emulator, a regional host), path kept."""
    if base_url is None:
        return request
    target = base_url.rstrip("/") + request.url.raw_path.decode("ascii")
    return httpx.Request(request.method, target, headers=request.headers, content=request.content)


def _unsigned(build: object, credential: Credential) -> httpx.Request:
    assert callable(build)
    try:
        request: httpx.Request = build(credential.environment)
    except InvalidInput:
        if credential.base_url is None:
            raise
        # A credential with its own base URL (an emulator) names the host itself;
        # the path is the same in every environment, so take production's.
        request = build("production")
    return rebased(request, credential.base_url)


def ask_permissions(
    http: httpx.Client, profile: ExchangeProfile, credential: Credential
) -> KeyPermissions:
    """The key's rights as the exchange reports them; UpstreamError / InvalidInput otherwise."""
    request = profile.sign(_unsigned(profile.permission_request, credential), credential)
    try:
        response = http.send(request)
    except httpx.HTTPError as exc:
        raise InvalidInput(f"could not reach {request.url.host}: {type(exc).__name__}") from None
    error = profile.map_error(response.status_code, response.content, response.headers)
    if error is not None:
        raise error
    return profile.permissions(response.content)


def _permissions_result(inputs: Inputs, vault: Vault, record: CredentialRecord) -> Result:
    subject = record.name
    profile = get_profile(record.exchange)
    if profile.permission_request is None or profile.parse_permission_response is None:
        return Result(
            "online", "online.permissions", "warn",
            f"{profile.name} cannot be asked about a key: {profile.permission_note}; "
            "check withdrawals and IP binding on its website",
            subject=subject,
        )  # fmt: skip
    assert inputs.http is not None
    try:
        permissions = ask_permissions(inputs.http, profile, vault.credential(record.name))
    except ExchangeRejected as error:
        return Result(
            "online", "online.permissions", "fail",
            f"{profile.name} refused the key: {error}",
            subject=subject,
        )  # fmt: skip
    except (UpstreamError, InvalidInput) as error:
        return Result(
            "online", "online.permissions", "warn",
            f"could not ask {profile.name}: {error}", subject=subject,
        )  # fmt: skip
    status: Status = "pass"
    findings = []
    if permissions.can_withdraw:
        status = "fail"
        findings.append("withdrawals enabled: turn them off for this key at the exchange")
    if permissions.ip_restricted is False:
        status = "fail" if status == "fail" else "warn"
        findings.append("no IP restriction: bind the key to the gateway's address")
    elif permissions.ip_restricted is None:
        status = "fail" if status == "fail" else "warn"
        findings.append(f"{profile.name} did not say whether the key is IP-bound")
    read_only = _policy_reads_only(vault, record.name)
    if permissions.can_trade and read_only:
        status = "fail" if status == "fail" else "warn"
        findings.append("the key can trade but its policy only reads: make a read-only key")
    if not findings:
        return Result(
            "online", "online.permissions", "pass",
            "cannot withdraw, IP-bound"
            + (", read-only as its policy" if not permissions.can_trade else ""),
            subject=subject,
        )  # fmt: skip
    return Result(
        "online", "online.permissions", status, findings[0], tuple(findings), subject=subject
    )


def _policy_reads_only(vault: Vault, name: str) -> bool:
    try:
        return "trade" not in policy_of(vault, name).scopes
    except KeybrokerError:
        return False


def measure_skew(http: httpx.Client, profile: ExchangeProfile, credential: Credential) -> int:
    """Exchange clock minus ours in ms, taken at the middle of the round trip."""
    assert profile.parse_server_time is not None
    request = _unsigned(profile.time_request, credential)
    before = time.time_ns() // 1_000_000
    try:
        response = http.send(request)
    except httpx.HTTPError as exc:
        raise InvalidInput(f"could not reach {request.url.host}: {type(exc).__name__}") from None
    after = time.time_ns() // 1_000_000
    error = profile.map_error(response.status_code, response.content, response.headers)
    if error is not None:
        raise error
    return profile.parse_server_time(response.content) - (before + after) // 2


def _clock_result(inputs: Inputs, vault: Vault, record: CredentialRecord) -> Result | None:
    profile = get_profile(record.exchange)
    if profile.time_request is None or profile.parse_server_time is None:
        return None
    assert inputs.http is not None
    where = record.base_url or f"{profile.name} {record.environment}"
    try:
        skew = measure_skew(inputs.http, profile, vault.credential(record.name))
    except (UpstreamError, InvalidInput) as error:
        return Result("online", "online.clock", "warn", f"no time from {where}: {error}",
                      subject=where)  # fmt: skip
    text = f"our clock is {abs(skew)} ms {'behind' if skew > 0 else 'ahead of'} {where}"
    if abs(skew) > SKEW_FAIL_MS:
        return Result("online", "online.clock", "fail",
                      f"{text}: signed requests are refused; sync the clock (chrony/ntp)",
                      subject=where)  # fmt: skip
    if abs(skew) > SKEW_WARN_MS:
        return Result("online", "online.clock", "warn",
                      f"{text}: near the exchange's limit; sync the clock (chrony/ntp)",
                      subject=where)  # fmt: skip
    return Result("online", "online.clock", "pass", text, subject=where)


def check_online(inputs: Inputs) -> list[Result]:
    """Permissions of each credential, then the clock of each exchange host (``--online``)."""
    if not inputs.online:
        return []
    vault = inputs.vault
    if vault is None or not vault.is_unlocked:
        why = inputs.vault_problem or (
            "no vault" if vault is None else "the vault is locked: --online needs the passphrase"
        )
        return [Result("online", "online.permissions", "warn", why)]
    owned = inputs.http is None
    http = inputs.http or httpx.Client(timeout=TIMEOUT_S)
    inputs.http = http
    try:
        records = [r for r in vault.list_credentials() if inputs.credential in (None, r.name)]
        results = [_permissions_result(inputs, vault, record) for record in records]
        hosts: set[str] = set()
        for record in records:
            key = f"{record.exchange} {record.environment} {record.base_url}"
            if key in hosts:
                continue
            hosts.add(key)
            clock = _clock_result(inputs, vault, record)
            if clock is not None:
                results.append(clock)
    finally:
        if owned:
            http.close()
            inputs.http = None
    if not results:
        return [Result("online", "online.permissions", "pass", "no credential to ask about")]
    return results
