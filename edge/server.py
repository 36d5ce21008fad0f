"""The till's HTTP server (waitress) and a stop that lets the requests in flight finish.

``huiyuan-edge serve`` runs ``TillServer.serve`` in the main thread, one listening
socket per address in ``http.listen`` (loopback by default); SIGTERM (systemd's
stop) and SIGINT (Ctrl-C) only set ``stopping`` (``stop_on_signals``). The server then
stops accepting connections, finishes each request already received or being received
(for at most ``grace`` seconds, 5 by default), and returns, so that the caller's shutdown runs: the
WAL checkpointer stops and removes its counts file, the devices and the online
authorizer stop.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from core.systemd import LoopPulse


def stop_on_signals(event: threading.Event) -> None:
    """SIGTERM and SIGINT only set ``event``; whoever waits on it does the stopping. (A
    handler of our own also covers a SIGINT ignored at start, as in a background job.)"""

    def handler(signum: int, frame: object) -> None:
        event.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)


def ignore_signals_from_now() -> None:
    """Once the shutdown has run, the process only exits: a further Ctrl-C or SIGTERM is
    ignored. (Our handler would do no harm, but interpreter shutdown puts SIGINT and
    SIGTERM back to their default, which kills the process with the signal: a second
    Ctrl-C landing there gave status -2 instead of 0. An ignored signal stays ignored.)"""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)


def listen_spec(addresses: list[str] | tuple[str, ...], port: int) -> str:
    """waitress's ``listen``: each address on ``port`` (an IPv6 one in brackets)."""
    return " ".join(f"[{a}]:{port}" if ":" in a else f"{a}:{port}" for a in addresses)


class TillServer:
    """waitress on each of ``addresses`` (one port), served until ``stopping`` is set.
    Which clients it answers is the app's business (edge.api checks http.allow)."""

    def __init__(
        self,
        app: Any,
        addresses: list[str] | tuple[str, ...],
        port: int,
        threads: int = 4,
        grace: float = 5.0,
        stopping: threading.Event | None = None,
    ) -> None:
        from waitress.server import BaseWSGIServer, create_server

        self.map: dict[int, Any] = {}
        self.server = create_server(
            app, map=self.map, listen=listen_spec(addresses, port), threads=threads
        )
        # one listening socket per address (waitress registers each in the map)
        self.listeners = [ch for ch in self.map.values() if isinstance(ch, BaseWSGIServer)]
        self.stopping = stopping or threading.Event()
        self.grace = grace
        self.pulse = LoopPulse()  # systemd's watchdog is fed while the loop goes round

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(address, port) of each listening socket, as bound."""
        return [(ch.effective_host, int(ch.effective_port)) for ch in self.listeners]

    def serve(self) -> None:
        from waitress import wasyncore

        adj = self.server.adj
        # one loop round at a time, so that a set ``stopping`` is seen within a second
        # (a signal interrupts the poll; the handler runs; the poll resumes until timeout)
        while not self.stopping.is_set():
            self.pulse.tick()
            wasyncore.loop(
                timeout=adj.asyncore_loop_timeout,
                map=self.map,
                use_poll=adj.asyncore_use_poll,
                count=1,
            )
        # stop listening (only the listening socket: the trigger still wakes the loop
        # when a worker thread has a response ready), then finish what is in flight
        for listener in self.listeners:
            wasyncore.dispatcher.close(listener)
        deadline = time.monotonic() + self.grace
        while self.in_flight() and time.monotonic() < deadline:
            wasyncore.loop(timeout=0.05, map=self.map, use_poll=adj.asyncore_use_poll, count=1)
        self.server.task_dispatcher.shutdown()
        wasyncore.close_all(self.map)

    def in_flight(self) -> bool:
        """A connection holds a request being received or run, or a response not yet sent."""
        return any(
            getattr(ch, "request", None) is not None
            or getattr(ch, "requests", None)
            or getattr(ch, "total_outbufs_len", 0)
            for ch in list(self.map.values())
        )
