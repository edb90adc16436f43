"""One pipelined connection for the scripts on a request's way: a fraction of redis-py's cost.

    >>> link = Link.of(client)                 # same host, TLS, password and db as ``client``
    >>> script = link.script(ACQUIRE)          # like ``client.register_script(ACQUIRE)``
    >>> answer = await script(keys=[...], args=[...])
    >>> await link.close()

Measured on the 2-core machine this project is built on: a script call
through redis-py's asyncio client costs about 280 µs from one caller
(a pool lock, a ``wait_for``, a task and the packing, per command), the
same call written on a socket and read back with hiredis about 70 µs, and
the server's own round trip is about 50 µs. Every order runs a script
before it can leave (halts, counts and its budget), so that difference was
most of what sharing state through Redis added to an order.

A ``Link`` keeps one connection and writes each command on it at once;
Redis answers a connection's commands in the order they came, so each
answer goes to the oldest caller still waiting (pipelining: concurrent
requests share the connection without a pool). Everything else (probes,
``keybroker halt --redis``, the tests' checks) keeps using redis-py, and
the connection settings are taken from the redis-py client the link is made
from, so both reach the same store the same way: host and port, TLS with the
client's certificates, AUTH with its user and password, SELECT of its db.

Over plain TCP the link drives its own non-blocking socket (``_SocketWire``)
rather than a transport: a command is on the wire when ``start`` returns,
and an answer already in the socket is read without a turn of the event
loop. uvloop (the gateway's loop) queues a transport's writes until its
batch of callbacks ends, so an order's admission written through a
transport left only after two turns of the loop, and its answer, back
during the order's fsync, was read only after more. Over TLS the
transport stays (``_Wire``): ``ssl`` does the record layer.

Failures raise what redis-py raises, so callers treat both alike
(``STORE_FAILURES``): ``ConnectionError`` when the connection closes or
cannot be made (one immediate retry on a fresh connection when a connection
that was already open turns out closed, as the redis-py client the gateway
makes does), ``TimeoutError`` after the client's ``socket_timeout`` (the
connection is then dropped, since later answers could no longer be matched),
``ResponseError`` for an error the server answered.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import socket
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, cast

from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:
    import hiredis
except ImportError:  # pragma: no cover - the ``redis`` extra brings it
    HIREDIS = False
else:
    HIREDIS = True

Arg = str | bytes | int | float


def pack(args: Sequence[Arg]) -> bytes:
    """One command in RESP, as redis-py encodes its arguments (floats by ``repr``).

    hiredis's packer, in C: the Python one this replaced was the largest
    single cost of a script call in the gateway's profile (a script's keys
    and arguments are some fifty strings).
    """
    packed: bytes = hiredis.pack_command(tuple(args))  # type: ignore[arg-type]  # stub: 1-tuple
    return packed


class _Connection(Protocol):
    """What ``Link`` needs of a connection, over a transport (TLS) or its own socket."""

    closed: bool
    gone: asyncio.Future[None]

    @property
    def usable(self) -> bool: ...

    def send(self, command: bytes) -> asyncio.Future[Any]: ...

    def poll(self) -> None: ...

    def drop(self, kind: type[Exception], why: str) -> None: ...

    def shut(self) -> None: ...


def _answer_waiters(
    reader: Any, waiting: collections.deque[asyncio.Future[Any]], data: bytes
) -> None:
    """Feed ``data`` to hiredis and give each whole answer to the oldest waiter."""
    reader.feed(data)
    while (answer := reader.gets()) is not False:
        waiter = waiting.popleft()
        if waiter.done():  # its caller gave up (cancelled): the answer is dropped
            continue
        if isinstance(answer, ResponseError):
            waiter.set_exception(answer)
        else:
            waiter.set_result(answer)


class _SocketWire:
    """A plain TCP connection on a non-blocking socket the link drives itself.

    ``send`` writes at once (what the kernel does not take waits for the
    socket to be writable, in order); answers are read when the loop sees
    the socket readable, or at once by ``poll``.
    """

    _CHUNK = 65536

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self.closed = False
        self.gone: asyncio.Future[None] = loop.create_future()
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._reader = hiredis.Reader(replyError=ResponseError)
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._unsent = bytearray()
        loop.add_reader(self._fd, self.poll)

    @classmethod
    async def open(
        cls, loop: asyncio.AbstractEventLoop, host: str, port: int, timeout_s: float | None
    ) -> _SocketWire:
        """Connect to the first address of ``host`` that answers (``OSError`` if none)."""
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        error: OSError = OSError(f"no address for {host}")
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await asyncio.wait_for(loop.sock_connect(sock, address), timeout_s)
            except BaseException as failure:
                sock.close()
                if not isinstance(failure, OSError) or isinstance(failure, TimeoutError):
                    raise
                error = failure
                continue
            return cls(loop, sock)
        raise error

    @property
    def usable(self) -> bool:
        return not self.closed

    def send(self, command: bytes) -> asyncio.Future[Any]:
        if self.closed:
            raise RedisConnectionError("Connection closed by server.")
        waiter = self._loop.create_future()
        self._waiting.append(waiter)
        if self._unsent:  # earlier commands still wait for room: keep their order
            self._unsent += command
            return waiter
        try:
            sent = self._sock.send(command)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as error:
            self.drop(RedisConnectionError, f"cannot write to the store: {error.strerror}")
            return waiter
        if sent < len(command):
            self._unsent += command[sent:]
            self._loop.add_writer(self._fd, self._flush)
        return waiter

    def _flush(self) -> None:
        try:
            sent = self._sock.send(self._unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self.drop(RedisConnectionError, f"cannot write to the store: {error.strerror}")
            return
        del self._unsent[:sent]
        if not self._unsent:
            self._loop.remove_writer(self._fd)

    def poll(self) -> None:
        """Read whatever answers are in the socket now, without waiting."""
        while not self.closed:
            try:
                data = self._sock.recv(self._CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                self.drop(RedisConnectionError, f"cannot read from the store: {error.strerror}")
                return
            if not data:
                self.drop(RedisConnectionError, "Connection closed by server.")
                return
            try:
                _answer_waiters(self._reader, self._waiting, data)
            except (hiredis.ProtocolError, IndexError):
                self.drop(RedisConnectionError, "unreadable answer from the store")
                return
            if len(data) < self._CHUNK:
                return

    def drop(self, kind: type[Exception], why: str) -> None:
        """Close now, failing every waiter with ``kind(why)`` (their answers cannot be matched)."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(RuntimeError):  # a loop already closed (a test's)
            self._loop.remove_reader(self._fd)
            if self._unsent:
                self._loop.remove_writer(self._fd)
        self._sock.close()
        if not self.gone.done():
            self.gone.set_result(None)
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(kind(why))

    def shut(self) -> None:
        self.drop(RedisConnectionError, "Connection closed by client.")


class _Wire(asyncio.Protocol):
    """One connection over a transport (TLS): commands written as they come, answers given
    to waiters in order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._reader = hiredis.Reader(replyError=ResponseError)
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._lost: type[Exception] = RedisConnectionError
        self._why = "Connection closed by server."
        self.gone = asyncio.get_running_loop().create_future()
        """Done once the socket is closed (``close`` waits for it)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports (the gateway's loop) are no asyncio.Transport subclasses.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            _answer_waiters(self._reader, self._waiting, data)
        except (hiredis.ProtocolError, IndexError):
            self.drop(RedisConnectionError, "unreadable answer from the store")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.gone.done():
            self.gone.set_result(None)
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(self._lost(self._why))

    @property
    def usable(self) -> bool:
        """Open, and not closing (the peer's close is seen before ``connection_lost`` runs)."""
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def send(self, command: bytes) -> asyncio.Future[Any]:
        if not self.usable or self.transport is None:
            raise RedisConnectionError("Connection closed by server.")
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self.transport.write(command)
        return waiter

    def poll(self) -> None:
        """Nothing to do: the transport reads answers when the loop turns."""

    def drop(self, kind: type[Exception], why: str) -> None:
        """Close now, failing every waiter with ``kind(why)`` (their answers cannot be matched)."""
        self._lost, self._why = kind, why
        self.closed = True
        if self.transport is not None:
            self.transport.abort()  # connection_lost follows and fails the waiters
        else:
            self.connection_lost(None)

    def shut(self) -> None:
        """Start a clean close (over TLS: our close_notify; ``gone`` once the socket is)."""
        if self.transport is not None:
            self.transport.close()


class Link:
    """One pipelined connection to the store of a redis-py client (see the module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        ssl: Any = None,
        timeout_s: float | None = None,
        connect_timeout_s: float | None = None,
    ) -> None:
        self._host, self._port, self._db = host, port, db
        self._username, self._password = username, password
        self._ssl = ssl
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s or timeout_s
        self._wire: _Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Lock | None = None

    @classmethod
    def of(cls, client: Redis) -> Link | None:
        """A link to ``client``'s store, or None where its settings are beyond this class
        (a Unix socket, a credential provider) or without hiredis: the caller keeps using
        redis-py then."""
        if not HIREDIS:
            return None
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        if "path" in kwargs or kwargs.get("credential_provider") is not None:
            return None
        ssl = None
        connection = pool.make_connection()  # type: ignore[no-untyped-call]
        context = getattr(connection, "ssl_context", None)
        if context is not None:
            try:
                ssl = context.get()
            except (OSError, ValueError):  # e.g. a CA file not there (yet): redis-py says so
                return None  # when it connects, as a store failure, as it always has

        return cls(
            str(kwargs.get("host", "localhost")),
            int(kwargs.get("port", 6379)),
            db=int(kwargs.get("db", 0) or 0),
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            ssl=ssl,
            timeout_s=kwargs.get("socket_timeout"),
            connect_timeout_s=kwargs.get("socket_connect_timeout"),
        )

    @property
    def writes_at_once(self) -> bool:
        """Whether ``start`` puts a command on the wire before it returns (plain TCP, open)."""
        wire = self._wire
        return isinstance(wire, _SocketWire) and wire.usable

    def script(self, source: str) -> LinkScript:
        """A script called by its SHA-1, loaded on the server the first time it is missing."""
        return LinkScript(self, source)

    async def call(self, *args: Arg) -> Any:
        """Send one command and wait for its answer (redis-py's errors; see the docstring)."""
        return await self.start(*args)

    def start(self, *args: Arg) -> Awaitable[Any]:
        """Send one command now and return what to await for its answer.

        Over an open plain-TCP connection (``writes_at_once``) the command is
        on the wire when this returns, so the caller can do other work (an
        fsync) while the store answers; awaiting then reads an answer already
        there without a turn of the loop. Over TLS it goes when the loop's
        queued writes do; with no connection yet, once one is made (a task).
        Await the result exactly once, or the answer is lost to the caller.
        """
        command = pack(args)
        wire = self._wire
        if wire is None or not wire.usable or self._loop is not asyncio.get_running_loop():
            return asyncio.ensure_future(self._connect_and_answer(command))  # from the next turn
        waiter = wire.send(command)
        timer = None
        if self._timeout_s is not None:
            timer = asyncio.get_running_loop().call_later(
                self._timeout_s, wire.drop, RedisTimeoutError, "Timeout reading from the store"
            )
        return self._answered(wire, command, waiter, timer)

    async def close(self) -> None:
        """Close the connection and wait until its socket is (a loop stopping right after
        would leave it open)."""
        wire, self._wire = self._wire, None
        if wire is not None:
            await _closed(wire)

    async def _answered(
        self,
        wire: _Connection,
        command: bytes,
        waiter: asyncio.Future[Any],
        timer: asyncio.TimerHandle | None,
    ) -> Any:
        try:
            if not waiter.done():
                wire.poll()  # the answer may be in the socket already: no turn of the loop
            return await waiter
        except RedisConnectionError:
            pass
        finally:
            if timer is not None:
                timer.cancel()
        # A connection that was open before this call closed under it: the server may
        # have dropped an idle connection. A fresh one tells that apart from an outage.
        return await self._answer(await self._connect(), command)

    async def _connect_and_answer(self, command: bytes) -> Any:
        return await self._answer(await self._connect(), command)

    async def _answer(self, wire: _Connection, command: bytes) -> Any:
        waiter = wire.send(command)
        if self._timeout_s is None:
            return await waiter
        timer = asyncio.get_running_loop().call_later(
            self._timeout_s, wire.drop, RedisTimeoutError, "Timeout reading from the store"
        )
        try:
            return await waiter
        finally:
            timer.cancel()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (a test's): the old connection is its own
            old = self._wire
            if old is not None:
                with contextlib.suppress(RuntimeError):  # that loop is closed
                    old.shut()
            self._loop, self._wire, self._connecting = loop, None, asyncio.Lock()
        assert self._connecting is not None
        async with self._connecting:
            wire = self._wire
            if wire is not None and wire.usable:
                return wire  # another caller connected meanwhile
            if wire is not None:
                wire.shut()
            self._wire = None
            wire = await self._open(loop)
            self._wire = wire
            return wire

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        wire: _Connection
        try:
            if self._ssl is None:
                wire = await _SocketWire.open(loop, self._host, self._port, self._connect_timeout_s)
            else:
                _, wire = await asyncio.wait_for(
                    loop.create_connection(
                        _Wire, self._host, self._port, ssl=self._ssl, server_hostname=self._host
                    ),
                    self._connect_timeout_s,
                )
        except TimeoutError:
            raise RedisTimeoutError("Timeout connecting to the store") from None
        except OSError as error:
            raise RedisConnectionError(f"cannot connect to the store: {error.strerror}") from None
        try:
            if self._password is not None:
                login = [self._username, self._password] if self._username else [self._password]
                try:
                    await self._answer(wire, pack(["AUTH", *login]))
                except ResponseError as error:
                    raise AuthenticationError(str(error)) from None
            if self._db:
                await self._answer(wire, pack(["SELECT", self._db]))
        except BaseException:
            await _closed(wire)
            raise
        return wire


async def _closed(wire: _Connection) -> None:
    """Close ``wire`` and wait until its socket is closed: a second for a clean close, then
    an abort. Over TLS the clean close waits for the server's answer to our close_notify;
    a loop that stopped before it came would leave the TCP socket under TLS open."""
    wire.shut()
    if wire.gone.done():
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(wire.gone), 1.0)
        return
    wire.drop(RedisConnectionError, "Connection closed by client.")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(wire.gone), 1.0)


class LinkScript:
    """``client.register_script``'s Script, over a ``Link``: EVALSHA, then SCRIPT LOAD once."""

    def __init__(self, link: Link, source: str) -> None:
        self._link = link
        self._source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(
        self, keys: Sequence[Arg] = (), args: Sequence[Arg] = (), client: object = None
    ) -> Any:
        return await self.start(keys, args)

    def start(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Awaitable[Any]:
        """The script sent now (``Link.start``); await the result exactly once."""
        command = ("EVALSHA", self.sha, len(keys), *keys, *args)
        return self._loaded_if_missing(self._link.start(*command), command)

    async def _loaded_if_missing(self, first: Awaitable[Any], command: tuple[Arg, ...]) -> Any:
        try:
            return await first
        except ResponseError as error:
            if not str(error).startswith("NOSCRIPT"):
                raise
        await self._link.call("SCRIPT", "LOAD", self._source)
        return await self._link.call(*command)
