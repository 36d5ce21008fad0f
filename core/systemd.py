"""systemd's notify protocol (sd_notify) in the standard library: ``Type=notify`` units
with ``WatchdogSec=`` that each service feeds while its main loop is healthy.

systemd passes ``$NOTIFY_SOCKET`` (a unix datagram socket; a name starting with ``@``
is in the abstract namespace) and, with ``WatchdogSec=``, ``$WATCHDOG_USEC`` (and
``$WATCHDOG_PID``, the process it is meant for). A service sends ``READY=1`` once it
serves, ``WATCHDOG=1`` at least once per watchdog interval while healthy (systemd
kills and restarts it otherwise) and ``STOPPING=1`` when it begins to stop. Outside
systemd (no ``$NOTIFY_SOCKET``) every call does nothing.

``Watchdog`` pings at half the interval only while every health check passes; a check
is a plain function, e.g. ``LoopPulse.advanced`` (the loop went round since the last
look) or ``BusyGuard.healthy`` (no handler stuck for longer than a limit).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

HealthCheck = Callable[[], bool]

log = logging.getLogger("core.systemd")


class Notifier:
    """Sends state lines to ``$NOTIFY_SOCKET``; every send is a no-op without one."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if address.startswith("@"):
            self.address = b"\0" + address[1:].encode()
        elif address.startswith("/"):
            self.address = address
        self.watchdog_interval = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *states: str) -> bool:
        """Send ``states`` (``READY=1``, ...) as one datagram; False if not under systemd
        or the socket is gone (the service keeps running: systemd is then no longer
        watching it, and there is nothing better to do than carry on)."""
        if self.address is None:
            return False
        message = "\n".join(states).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.connect(self.address)
                sock.sendall(message)
            except OSError:
                return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def ping(self) -> bool:
        return self.notify("WATCHDOG=1")


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds from ``$WATCHDOG_USEC`` when it is meant for this process, else None."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000


class LoopPulse:
    """A loop calls ``tick()`` each round; ``advanced()`` says whether it went round since
    the previous ``advanced()`` (a loop that sleeps less than half the watchdog interval
    between rounds always has, unless it is wedged)."""

    def __init__(self) -> None:
        self.rounds = 0
        self._seen = -1

    def tick(self) -> None:
        self.rounds += 1  # one loop ticks it; the watchdog thread only reads

    def advanced(self) -> bool:
        now = self.rounds
        went_round = now != self._seen
        self._seen = now
        return went_round


class BusyGuard:
    """For a loop that waits for work (a message callback): ``with guard:`` around each
    piece of work; ``busy_for()`` is how long the piece under way has run (0 when idle),
    so a handler stuck on a lock or a dead connection shows."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.since: float | None = None

    def __enter__(self) -> BusyGuard:
        self.since = self.clock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.since = None

    def busy_for(self) -> float:
        since = self.since
        return 0.0 if since is None else self.clock() - since


class Watchdog:
    """Pings systemd's watchdog every half interval while every check passes.

    With no watchdog configured (``WatchdogSec=`` unset, or outside systemd) ``start``
    does nothing. A check that raises counts as failing."""

    def __init__(
        self, notifier: Notifier, checks: list[HealthCheck], interval: float | None = None
    ) -> None:
        self.notifier = notifier
        self.checks = checks
        self.interval = interval if interval is not None else notifier.watchdog_interval
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.pings = 0

    def healthy(self) -> bool:
        for check in self.checks:
            try:
                if not check():
                    log.warning("watchdog not fed: %s failed", getattr(check, "__name__", check))
                    return False
            except Exception:  # a check that cannot tell is a failing check
                log.warning("watchdog not fed: %s raised", check, exc_info=True)
                return False
        return True

    def start(self) -> Watchdog:
        if self.interval is None or not self.notifier.enabled:
            return self
        self.thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        assert self.interval is not None  # noqa: S101 - start() checked
        while not self.stop_event.wait(self.interval / 2):
            if self.healthy() and self.notifier.ping():
                self.pings += 1

    def stop(self) -> None:
        """Stop pinging and tell systemd the service is stopping."""
        self.notifier.stopping()
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=5)


def service_ready(checks: list[HealthCheck], status: str = "") -> Watchdog:
    """Tell systemd the service is up (``READY=1``) and feed its watchdog while every
    check passes; ``stop()`` the result when the service begins to stop."""
    notifier = Notifier()
    notifier.ready(status)
    return Watchdog(notifier, checks).start()
