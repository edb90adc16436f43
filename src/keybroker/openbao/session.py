"""A gateway's login to OpenBao: unwrap the single-use secret id, log in, keep the token alive.

    >>> session = Session(connection, AsyncOpenBao(connection.addr), on_spent=forget_wrap)
    >>> await session.start()                    # unwrap + AppRole login, or retry in run()
    >>> data = await session.write("transit/hmac/k/sha2-256", body)

The token is periodic (``token_period`` on the role): it lives as long as it
is renewed within the period, so ``run()`` renews it at a third of each
lease. When OpenBao cannot be reached, ``run()`` keeps trying; meanwhile
every ``write`` raises ``KeyStoreUnavailable`` and the gateway answers 503.
The secret id is used for one login (``secret_id_num_uses=1``) and then
dropped: a token lost for good (revoked, or expired while OpenBao was away)
needs a new secret id from ``keybroker openbao setup`` and a restart, which
``run()`` says once, as an alert.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from keybroker.errors import KeyStoreError, KeyStoreUnavailable
from keybroker.openbao.client import AsyncOpenBao
from keybroker.openbao.connection import Connection
from keybroker.secret import Secret

log = logging.getLogger("keybroker.openbao")

RETRY_S = 1.0


class Session:
    """The gateway's token and how it gets and keeps one."""

    def __init__(
        self,
        connection: Connection,
        client: AsyncOpenBao,
        *,
        on_spent: Callable[[], None] = lambda: None,
        alert: Callable[..., None] = lambda name, **fields: None,
    ) -> None:
        self.connection = connection
        self.client = client
        self._on_spent = on_spent
        self._alert = alert
        self._wrapped = (
            None if connection.wrapped_secret_id is None else Secret(connection.wrapped_secret_id)
        )
        self._secret_id: Secret | None = None
        self._token: Secret | None = None
        self._lease_s = 0.0
        self._lost = False
        self.problem: str | None = "not logged in yet"

    def __repr__(self) -> str:
        state = "logged in" if self._token is not None else "not logged in"
        return f"Session({self.connection.addr!r}, role={self.connection.role!r}, {state})"

    @property
    def is_ready(self) -> bool:
        return self._token is not None

    async def start(self) -> None:
        """Unwrap and log in once; raises KeyStoreError/Unavailable, which ``run`` retries."""
        if self._secret_id is None:
            if self._wrapped is None:
                self._lost = True
                raise KeyStoreError(
                    "this gateway has no OpenBao secret id left: run `keybroker openbao setup` "
                    "for a new single-use one, then restart the gateway"
                )
            try:
                unwrapped = await self.client.write("sys/wrapping/unwrap", {}, self._wrapped)
            except KeyStoreUnavailable:
                raise  # the wrapping token is still good: run() tries again
            except KeyStoreError:
                # Spent or expired: someone else may have unwrapped it, which is
                # exactly what response wrapping exists to reveal.
                self._drop_wrapped()
                raise KeyStoreError(
                    "OpenBao refused to unwrap the gateway's secret id (already used, or "
                    "expired): if this gateway did not use it, someone else did; run "
                    "`keybroker openbao setup` for a new one"
                ) from None
            self._drop_wrapped()
            secret_id = (unwrapped.get("data") or {}).get("secret_id")
            if not isinstance(secret_id, str) or not secret_id:
                raise KeyStoreError("OpenBao's wrapped answer holds no secret id")
            self._secret_id = Secret(secret_id)
        try:
            answer = await self.client.write(
                "auth/approle/login",
                {"role_id": self.connection.role_id, "secret_id": self._secret_id.reveal_text()},
                None,
            )
        except KeyStoreUnavailable:
            raise  # not used yet: kept for the next try
        except KeyStoreError:
            self._drop_secret_id()
            raise
        self._drop_secret_id()  # single use: spent by this login
        self._take(answer)
        self.problem = None
        log.info("logged in to OpenBao at %s as %s", self.connection.addr, self.connection.role)

    async def run(self) -> None:
        """Forever: log in if not yet, renew at a third of each lease, retry while unreachable."""
        while True:
            try:
                if self._token is None:
                    if self._lost:
                        return
                    await self.start()
                await asyncio.sleep(max(self._lease_s / 3, RETRY_S))
                await self._renew()
            except KeyStoreUnavailable as unavailable:
                self.problem = str(unavailable)
                await asyncio.sleep(RETRY_S)
            except KeyStoreError as error:
                # Not a network blip: a lost token or a refused login. Say so once.
                self.problem = str(error)
                self._token = None
                self._lost = self._secret_id is None and self._wrapped is None
                log.error("OpenBao: %s", error)
                self._alert("openbao_login_lost", detail=str(error))
                if self._lost:
                    return
                await asyncio.sleep(RETRY_S)

    async def write(self, path: str, body: dict[str, object]) -> dict[str, Any]:
        """POST with the gateway's token; KeyStoreUnavailable before a login succeeded."""
        token = self._token
        if token is None:
            raise KeyStoreUnavailable(f"the gateway is not logged in to OpenBao: {self.problem}")
        return await self.client.write(path, body, token)

    def _drop_wrapped(self) -> None:
        if self._wrapped is not None:
            self._wrapped.wipe()
            self._wrapped = None
            self._on_spent()

    def _drop_secret_id(self) -> None:
        if self._secret_id is not None:
            self._secret_id.wipe()
            self._secret_id = None

    async def _renew(self) -> None:
        token = self._token
        if token is None:
            return
        self._take(await self.client.write("auth/token/renew-self", {}, token))

    def _take(self, answer: dict[str, Any]) -> None:
        auth = answer.get("auth")
        if not isinstance(auth, dict) or not isinstance(auth.get("client_token"), str):
            raise KeyStoreError("OpenBao's login answer holds no token")
        old = self._token
        self._token = Secret(auth["client_token"])
        if old is not None:
            old.wipe()
        lease = auth.get("lease_duration")
        self._lease_s = float(lease) if isinstance(lease, int | float) and lease > 0 else 60.0
