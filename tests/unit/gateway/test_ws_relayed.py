"""``Relayed``: the relay's own frame reader keeps every rule ``websockets`` kept.

The exchange here is a real TCP server on loopback that answers the handshake
with ``websockets``' sans-I/O server and then writes frames byte for byte as the
test builds them, cut into whatever pieces the test chooses. The gateway's side
is the real ``_connect`` with a listener, as the stream hub and the API use it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest
from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.server import ServerProtocol

from keybroker.gateway import websocket as gateway_ws

TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bool = False, rsv: int = 0
) -> bytes:
    """A frame as an exchange's server writes it (RFC 6455 section 5.2), built by hand."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    size = len(payload)
    if size < 126:
        head = bytes((first, size | (0x80 if mask else 0)))
    elif size < 65536:
        head = bytes((first, 126 | (0x80 if mask else 0))) + size.to_bytes(2)
    else:
        head = bytes((first, 127 | (0x80 if mask else 0))) + size.to_bytes(8)
    if mask:
        key = b"\x01\x02\x03\x04"
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


class Exchange:
    """One connection's server: the handshake by websockets, then raw bytes from the test."""

    def __init__(self) -> None:
        self.protocol = ServerProtocol()
        self.writer: asyncio.StreamWriter | None = None
        self.received: list[Frame] = []  # what the gateway sent (pongs, closes)
        self.connected = asyncio.Event()
        self.closed_by_peer = asyncio.Event()
        self.first_write = b""  # written with the handshake's answer, in the same write

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        while not writer.is_closing():
            data = await reader.read(65536)
            if not data:
                self.closed_by_peer.set()
                return
            self.protocol.receive_data(data)
            out = b""
            for event in self.protocol.events_received():
                if isinstance(event, Frame):
                    self.received.append(event)
                    continue
                self.protocol.send_response(self.protocol.accept(event))
                out += b"".join(self.protocol.data_to_send()) + self.first_write
                self.connected.set()
            for chunk in self.protocol.data_to_send():  # a close's echo, then the end
                if chunk:
                    out += chunk
                else:
                    writer.write(out)
                    out = b""
                    writer.close()
            if out:
                writer.write(out)

    async def send(self, data: bytes, *, piece: int | None = None) -> None:
        assert self.writer is not None
        if piece is None:
            self.writer.write(data)
        else:
            for at in range(0, len(data), piece):
                self.writer.write(data[at : at + piece])
                await self.writer.drain()
                await asyncio.sleep(0)  # let the gateway read each piece on its own
        await self.writer.drain()


Scenario = Callable[[Exchange, list[str], gateway_ws.ClientConnection], Awaitable[None]]


def run(scenario: Scenario, *, first_write: bytes = b"") -> tuple[Exchange, list[str]]:
    async def main() -> tuple[Exchange, list[str]]:
        exchange = Exchange()
        exchange.first_write = first_write
        server = await asyncio.start_server(exchange.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        messages: list[str] = []
        upstream = await gateway_ws._connect(f"ws://127.0.0.1:{port}/", messages.append)
        try:
            await asyncio.wait_for(exchange.connected.wait(), 5)
            await asyncio.wait_for(scenario(exchange, messages, upstream), 10)
        finally:
            await upstream.close()
            server.close()
        return exchange, messages

    return asyncio.run(main())


async def until(check: Callable[[], bool]) -> None:
    while not check():
        await asyncio.sleep(0.005)


def close_code(exchange: Exchange) -> int | None:
    closes = [f for f in exchange.received if f.opcode is Opcode.CLOSE]
    return Close.parse(closes[0].data).code if closes else None


@pytest.mark.parametrize("piece", [None, 997, 4093])
def test_messages_cut_anywhere_arrive_whole_and_in_order(piece: int | None) -> None:
    small, medium, large = "s" * 10, "m" * 300, "L" * 70_000  # 7-, 16- and 64-bit lengths
    wire = b"".join(frame(TEXT, m.encode()) for m in (small, medium, large, "{}"))

    async def scenario(exchange: Exchange, messages: list[str], upstream: object) -> None:
        await exchange.send(wire, piece=piece)
        await until(lambda: len(messages) == 4)

    _, messages = run(scenario)
    assert messages == [small, medium, large, "{}"]


def test_byte_by_byte_frames_are_read_whole() -> None:
    wire = frame(TEXT, b'{"e":"trade","p":"1"}') + frame(TEXT, b"x" * 200)

    async def scenario(exchange: Exchange, messages: list[str], upstream: object) -> None:
        await exchange.send(wire, piece=1)
        await until(lambda: len(messages) == 2)

    _, messages = run(scenario)
    assert messages == ['{"e":"trade","p":"1"}', "x" * 200]


def test_frames_written_with_the_handshake_answer_are_not_lost() -> None:
    first = frame(TEXT, b"first") + frame(TEXT, b"second")[:3]  # and half of a second

    async def scenario(exchange: Exchange, messages: list[str], upstream: object) -> None:
        await exchange.send(frame(TEXT, b"second")[3:])
        await until(lambda: len(messages) == 2)

    _, messages = run(scenario, first_write=first)
    assert messages == ["first", "second"]


def test_a_fragmented_message_with_a_ping_inside_is_whole_and_the_ping_answered() -> None:
    wire = (
        frame(TEXT, b'{"a":', fin=False)
        + frame(PING, b"hi")
        + frame(CONT, b'"b",', fin=False)
        + frame(CONT, b'"c":1}')
        + frame(BINARY, b"\xe2\x82\xac")  # a binary frame is relayed as its UTF-8 text
    )

    async def scenario(exchange: Exchange, messages: list[str], upstream: object) -> None:
        await exchange.send(wire, piece=2)
        await until(lambda: len(messages) == 2)
        await until(lambda: any(f.opcode is Opcode.PONG for f in exchange.received))

    exchange, messages = run(scenario)
    assert messages == ['{"a":"b","c":1}', "€"]
    pongs = [f for f in exchange.received if f.opcode is Opcode.PONG]
    assert [bytes(p.data) for p in pongs] == [b"hi"]


def test_the_exchanges_close_closes_the_connection_and_later_bytes_are_not_relayed() -> None:
    close = Close(CloseCode.GOING_AWAY, "maintenance").serialize()
    wire = frame(TEXT, b"before") + frame(CLOSE, close) + frame(TEXT, b"after")

    async def scenario(
        exchange: Exchange, messages: list[str], upstream: gateway_ws.ClientConnection
    ) -> None:
        await exchange.send(wire)
        await upstream.wait_closed()

    exchange, messages = run(scenario)
    assert messages == ["before"]
    assert close_code(exchange) == CloseCode.GOING_AWAY  # the close echoed


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (frame(TEXT, b"masked", mask=True), CloseCode.PROTOCOL_ERROR),
        (frame(TEXT, b"rsv", rsv=4), CloseCode.PROTOCOL_ERROR),
        (frame(3, b"opcode 3 is reserved"), CloseCode.PROTOCOL_ERROR),
        (frame(CONT, b"no start"), CloseCode.PROTOCOL_ERROR),
        (frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), CloseCode.PROTOCOL_ERROR),
        (frame(PING, b"p", fin=False), CloseCode.PROTOCOL_ERROR),  # control frames are whole
        # Over max_size: refused from its header, before its payload arrives.
        (frame(TEXT, b"")[:1] + b"\x7f" + (2**40).to_bytes(8), CloseCode.MESSAGE_TOO_BIG),
        (
            frame(TEXT, b"x" * 65536, fin=False)
            + b"".join(frame(CONT, b"x" * 65536, fin=False) for _ in range(16)),
            CloseCode.MESSAGE_TOO_BIG,
        ),
    ],
    ids=[
        "masked",
        "reserved-bits",
        "reserved-opcode",
        "orphan-continuation",
        "new-message-mid-fragments",
        "fragmented-ping",
        "oversized-frame",
        "oversized-fragments",
    ],
)
def test_a_frame_websockets_refuses_fails_the_connection_with_its_code(
    wire: bytes, code: CloseCode
) -> None:
    async def scenario(
        exchange: Exchange, messages: list[str], upstream: gateway_ws.ClientConnection
    ) -> None:
        await exchange.send(frame(TEXT, b"good") + wire + frame(TEXT, b"after"))
        await until(lambda: close_code(exchange) is not None)

    exchange, messages = run(scenario)
    assert messages == ["good"]
    assert close_code(exchange) == code


def test_a_listener_that_raises_does_not_stop_the_relay_and_its_log_quotes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> list[str]:
        exchange = Exchange()
        server = await asyncio.start_server(exchange.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        seen: list[str] = []

        def listener(text: str) -> None:
            seen.append(text)
            if text == "boom":
                raise ValueError(f"a listener's bug on {text}-canary")

        upstream = await gateway_ws._connect(f"ws://127.0.0.1:{port}/", listener)
        try:
            await asyncio.wait_for(exchange.connected.wait(), 5)
            await exchange.send(frame(TEXT, b"boom") + frame(TEXT, b"next"))
            await asyncio.wait_for(until(lambda: len(seen) == 2), 5)
        finally:
            with contextlib.suppress(Exception):
                await upstream.close()
            server.close()
        return seen

    assert asyncio.run(main()) == ["boom", "next"]
    assert "ValueError" in caplog.text
    assert "canary" not in caplog.text and "boom" not in caplog.text


def test_frames_written_at_once_reach_the_exchange_masked_whole_and_in_order() -> None:
    """``write_text`` (the API's signed frames) beside ``send()``: one ordered stream the
    exchange's own parser reads (it refuses an unmasked client frame); nothing written,
    and False, once the socket is full or the connection closed."""
    texts = [f"{n}:" + "x" * size for n, size in enumerate((0, 10, 125, 126, 300, 65535, 70_000))]
    written: list[bool] = []

    async def scenario(exchange: Exchange, messages: list[str], upstream: object) -> None:
        relayed = upstream
        assert isinstance(relayed, gateway_ws.Relayed)
        for n, text in enumerate(texts):
            if n % 2:
                await relayed.send(text)
            else:
                written.append(relayed.write_text(text))
        relayed.pause_writing()  # what the transport calls when the socket is full
        written.append(relayed.write_text("while full"))
        relayed.resume_writing()
        await until(lambda: len(exchange.received) == len(texts))
        await relayed.close()
        written.append(relayed.write_text("after the close"))

    exchange, _ = run(scenario)
    data = [f for f in exchange.received if f.opcode is Opcode.TEXT]
    assert [f.data.decode() for f in data] == texts
    assert written == [True, True, True, True, False, False]
