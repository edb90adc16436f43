"""``ws_protocol``'s own reading of a bot's text frames: what the app receives, and how the
connection ends, are exactly what uvicorn's protocol alone gives.

Each case runs twice on a real uvicorn with the gateway's configuration: once with
``GatewayWebSocketProtocol`` and once with frames cutting turned off (uvicorn's own
``data_received``). A raw socket client sends hand-made frames — cut anywhere, several
in one write, fragmented, with pings between, and the kinds a server must refuse —
and records every frame the server sends back (the app echoes each message) and the
close code.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.server import ServerProtocol

from keybroker.gateway import server as gateway_server
from keybroker.gateway.server import Running, serve_in_thread
from keybroker.gateway.ws_protocol import GatewayWebSocketProtocol

HANDSHAKE = (
    b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0
) -> bytes:
    """One client frame (RFC 6455 section 5.2), masked as a client's must be."""
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    size = len(payload)
    bit = 0x80 if masked else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def text(body: str, **kw: object) -> bytes:
    return frame(0x1, body.encode(), **kw)  # type: ignore[arg-type]


CLOSE = frame(0x8, struct.pack("!H", 1000))
SIZES = (0, 1, 125, 126, 1000, 65535, 65536, 70_000)  # every length form; the last is long
ONE_BY_ONE = text('{"id":1,"method":"order.place"}') + text("ü€" * 20)

CASES: dict[str, list[bytes]] = {
    "every size, one write each": [text(f"{n}:" + "x" * n) for n in SIZES] + [CLOSE],
    "every size in one write": [b"".join(text(f"{n}:" + "y" * n) for n in SIZES) + CLOSE],
    "cut one byte at a time": [ONE_BY_ONE[i : i + 1] for i in range(len(ONE_BY_ONE))] + [CLOSE],
    "cut across a frame and the next": [
        (text("first") + text("second"))[:9],
        (text("first") + text("second"))[9:],
        CLOSE,
    ],
    "fragmented, a ping inside": [
        frame(0x1, b"ab", fin=False),
        frame(0x9, b"hi"),
        frame(0x0, b"cd"),
        text("after"),
        CLOSE,
    ],
    "binary, then text": [frame(0x2, b"\x00\x01"), text("t"), CLOSE],
    "a frame and the close in one write": [text("last") + CLOSE + text("never read")],
    "unmasked": [text("ok"), text("bad", masked=False)],
    "reserved bit": [text("ok"), text("bad", rsv=0x40)],
    "unknown opcode": [text("ok"), frame(0x3, b"x")],
    "not UTF-8": [text("ok"), frame(0x1, b"\xff\xfe")],
    "continuation without a start": [text("ok"), frame(0x0, b"x")],
    "text inside a fragmented message": [frame(0x1, b"a", fin=False), text("b")],
}


class Recorder:
    """Every message the app received, per connection, and how the connection ended.

    Recorded on the server's side rather than echoed: an echo races the bot's close.
    """

    def __init__(self) -> None:
        self.sessions: list[list[object]] = []
        self.ended = threading.Semaphore(0)

    async def serve(self, websocket: WebSocket) -> None:
        await websocket.accept()
        seen: list[object] = []
        self.sessions.append(seen)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    seen.append(("disconnect", message.get("code")))
                    return
                seen.append(message.get("text", message.get("bytes")))
        finally:
            self.ended.release()


@dataclass
class Served:
    url: str
    recorder: Recorder
    running: Running


def served(cutting: bool, monkeypatch: pytest.MonkeyPatch) -> Served:
    if not cutting:

        class Plain(GatewayWebSocketProtocol):
            data_received = WebSocketsSansIOProtocol.data_received  # type: ignore[assignment]

        monkeypatch.setattr(gateway_server, "GatewayWebSocketProtocol", Plain)
    recorder = Recorder()
    running = serve_in_thread(Starlette(routes=[WebSocketRoute("/echo", recorder.serve)]))
    monkeypatch.undo()
    return Served(running.url, recorder, running)


Outcome = tuple[list[object], list[tuple[int, bytes]], int | None]


def exchange(server: Served, chunks: list[bytes]) -> Outcome:
    """Send the chunks after the handshake: what the app received, every frame the server
    sent (pongs), and the server's close code."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(HANDSHAKE)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 101")
        received = answer.split(b"\r\n\r\n", 1)[1]
        for chunk in chunks:
            sock.sendall(chunk)
            time.sleep(0.002)  # most chunks arrive as reads of their own
        while True:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            received += data
    frames: list[tuple[int, bytes]] = []
    code = None
    while len(received) >= 2:
        opcode, length, at = received[0] & 0x0F, received[1] & 0x7F, 2
        if length == 126:
            length, at = struct.unpack("!H", received[2:4])[0], 4
        elif length == 127:
            length, at = struct.unpack("!Q", received[2:10])[0], 10
        payload, received = received[at : at + length], received[at + length :]
        if opcode == 0x8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        else:
            frames.append((opcode, payload))
    assert received == b""  # whole frames only
    assert server.recorder.ended.acquire(timeout=10)  # the app saw the end
    return server.recorder.sessions[-1], frames, code


@pytest.fixture
def both(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[bool, Served]]:
    servers = {cutting: served(cutting, monkeypatch) for cutting in (True, False)}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.running.stop()


@pytest.mark.parametrize("case", list(CASES))
def test_the_app_sees_what_uvicorns_protocol_alone_gives_it(
    both: dict[bool, Served], case: str
) -> None:
    cut = exchange(both[True], CASES[case])
    plain = exchange(both[False], CASES[case])
    assert cut == plain


def test_the_cases_mean_what_they_say(both: dict[bool, Served]) -> None:
    """The comparison above is not between two broken servers."""
    ours = both[True]
    seen, frames, code = exchange(ours, CASES["every size, one write each"])
    assert seen == [f"{n}:" + "x" * n for n in SIZES] + [("disconnect", 1000)]
    assert (frames, code) == ([], 1000)
    seen, frames, code = exchange(ours, CASES["cut one byte at a time"])
    assert seen == ['{"id":1,"method":"order.place"}', "ü€" * 20, ("disconnect", 1000)]
    seen, frames, code = exchange(ours, CASES["fragmented, a ping inside"])
    assert seen == ["abcd", "after", ("disconnect", 1000)]
    assert (frames, code) == ([(0xA, b"hi")], 1000)
    seen, frames, code = exchange(ours, CASES["binary, then text"])
    assert seen == [b"\x00\x01", "t", ("disconnect", 1000)]
    assert exchange(ours, CASES["a frame and the close in one write"])[0][0] == "last"
    for case, expected in [
        ("unmasked", 1002),
        ("reserved bit", 1002),
        ("unknown opcode", 1002),
        ("not UTF-8", 1007),
        ("continuation without a start", 1002),
    ]:
        seen, frames, code = exchange(ours, CASES[case])
        assert (seen[0], frames, code) == ("ok", [], expected), case
    assert exchange(ours, CASES["text inside a fragmented message"])[2] == 1002


def test_a_plain_text_frame_skips_websockets_parser(
    both: dict[bool, Served], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Else nothing was gained: only the handshake and the close reach websockets."""
    calls: list[int] = []
    original = ServerProtocol.receive_data

    def counted(self: ServerProtocol, data: bytes) -> None:
        calls.append(len(data))
        original(self, data)

    monkeypatch.setattr(ServerProtocol, "receive_data", counted)
    seen, _, code = exchange(both[True], [text(f"order {n}") for n in range(20)] + [CLOSE])
    assert seen[:-1] == [f"order {n}" for n in range(20)] and code == 1000
    assert calls == [len(HANDSHAKE), len(CLOSE)]
