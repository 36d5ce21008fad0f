"""Device states shared by every role, with named groups, and the reconnect backoff."""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass


class DeviceState(enum.StrEnum):
    DISABLED = "disabled"  # the role is switched off in the configuration
    DISCONNECTED = "disconnected"  # not open; the worker will try again after a backoff
    CONNECTING = "connecting"
    READY = "ready"
    BUSY = "busy"  # printing a job / writing a frame
    PAPER_OUT = "paper_out"  # printer only: open, but the paper sensor says empty
    ERROR = "error"  # open failed or a write failed; last_error says why


#: States in which the device accepts work right now.
OPERATIONAL = frozenset({DeviceState.READY, DeviceState.BUSY})
#: States the device leaves by itself (the worker retries, or a person adds paper).
RECOVERABLE = frozenset({DeviceState.DISCONNECTED, DeviceState.ERROR, DeviceState.PAPER_OUT})
#: States in which a technician or cashier should be told something is wrong.
NEEDS_ATTENTION = frozenset({DeviceState.ERROR, DeviceState.PAPER_OUT, DeviceState.DISCONNECTED})


@dataclass(frozen=True, slots=True)
class Health:
    state: DeviceState
    last_error: str | None
    since: float  # time.monotonic() of the last state change


class HealthTracker:
    """Thread-safe holder of one device's state and last error."""

    def __init__(self, initial: DeviceState = DeviceState.DISCONNECTED) -> None:
        self._lock = threading.Lock()
        self._health = Health(initial, None, time.monotonic())

    def set(self, state: DeviceState, error: str | None = None) -> None:
        with self._lock:
            last_error = error if error is not None else self._health.last_error
            since = self._health.since if state == self._health.state else time.monotonic()
            self._health = Health(state, last_error, since)

    def fail(self, state: DeviceState, error: BaseException | str) -> None:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.set(state, text)

    @property
    def health(self) -> Health:
        with self._lock:
            return self._health

    @property
    def state(self) -> DeviceState:
        return self.health.state


class Backoff:
    """Bounded exponential backoff: first, first*2, ... capped at ``maximum`` seconds."""

    def __init__(self, first: float = 0.5, maximum: float = 30.0) -> None:
        self.first = first
        self.maximum = maximum
        self._next = first

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.first
