"""``ws_protocol.write_text``: a frame written at once, or nothing written and False.

A real uvicorn server with the gateway's own configuration (``serve_in_thread``
uses ``make_config``) runs a small Starlette app; the bots are ``websockets``
clients on loopback. The app writes with ``write_text`` where it can and with
the ASGI send where it cannot, as the relay does.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from keybroker.gateway.server import Running, serve_in_thread
from keybroker.gateway.ws_protocol import WRITE_TEXT

SIZES = (0, 10, 125, 126, 300, 65535, 65536, 70_000)  # every header form and its edges


class Seen:
    """What the app did, for the test to check (the server runs in another thread)."""

    def __init__(self) -> None:
        self.results: list[bool] = []
        self.done = threading.Event()


def app_for(seen: Seen) -> Starlette:
    async def sizes(websocket: WebSocket) -> None:
        await websocket.accept()
        write = websocket.scope["extensions"][WRITE_TEXT]
        for n, size in enumerate(SIZES):
            text = f"{n}:" + "x" * size
            if n % 2:  # every other frame through the ASGI send: one ordered stream
                await websocket.send_text(text)
            else:
                seen.results.append(write(text))
        await websocket.receive_text()  # the bot says when it has everything
        await websocket.close()
        seen.results.append(write("after the close"))
        seen.done.set()

    async def unread(websocket: WebSocket) -> None:
        """A bot that stops reading: write until the socket is full, then the ASGI send."""
        await websocket.accept()
        write = websocket.scope["extensions"][WRITE_TEXT]
        frame = "y" * 65536
        n = 0
        while write(f"{n}:{frame}"):
            seen.results.append(True)
            n += 1
            if n % 16 == 0:
                await asyncio.sleep(0)  # let the transport report a full socket
        seen.results.append(False)
        seen.done.set()
        await websocket.send_text(f"{n}:{frame}")  # waits until the bot reads again
        await websocket.send_text("end")
        await websocket.receive_text()

    return Starlette(routes=[WebSocketRoute("/sizes", sizes), WebSocketRoute("/unread", unread)])


@pytest.fixture
def served() -> Iterator[tuple[Running, Seen]]:
    seen = Seen()
    running = serve_in_thread(app_for(seen))
    try:
        yield running, seen
    finally:
        running.stop()


def url(running: Running, path: str) -> str:
    return running.url.replace("http://", "ws://") + path


def test_frames_of_every_length_arrive_intact_and_in_order_with_asgi_sends(
    served: tuple[Running, Seen],
) -> None:
    running, seen = served

    async def bot() -> list[Any]:
        async with websockets.connect(url(running, "/sizes"), max_size=None) as ws:
            got = [await ws.recv() for _ in SIZES]
            await ws.send("thanks")
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.recv()
            return got

    got = asyncio.run(bot())
    assert got == [f"{n}:" + "x" * size for n, size in enumerate(SIZES)]
    assert seen.done.wait(5)
    # Written at once while open; after the close nothing is written and it says so.
    assert seen.results == [True] * ((len(SIZES) + 1) // 2) + [False]


def test_a_full_socket_makes_it_refuse_and_nothing_is_lost_or_reordered(
    served: tuple[Running, Seen],
) -> None:
    running, seen = served

    async def bot() -> list[str]:
        async with websockets.connect(url(running, "/unread"), max_size=None) as ws:
            # Read nothing until the server found the socket full.
            await asyncio.get_running_loop().run_in_executor(None, seen.done.wait, 20)
            got: list[str] = []
            while (message := await ws.recv()) != "end":
                assert isinstance(message, str)
                got.append(message.split(":", 1)[0])
            await ws.send("bye")
            return got

    got = asyncio.run(bot())
    assert seen.results[-1] is False and all(seen.results[:-1])
    written = len(seen.results) - 1
    assert written > 0
    # Every frame write_text took, then the one the ASGI send waited with: none missing.
    assert got == [str(n) for n in range(written + 1)]
