"""Socket options every MQTT client of ours sets: paho leaves Nagle's algorithm on.

With Nagle on, a small packet written while an earlier one is still unacknowledged waits
for that ACK, and the peer delays its ACK (Linux: 40 ms) while it has nothing to send:
a QoS 1 request and its answer crossed that wait on each leg (88 ms on loopback against
under 1 ms without it). The broker must set ``set_tcp_nodelay true`` for its side.
"""

from __future__ import annotations

import socket
from typing import Any

TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


def no_delay(client: Any, userdata: Any, sock: Any) -> None:
    """paho's ``on_socket_open``: TCP_NODELAY on each new connection (TLS included), before
    CONNECT is sent; a Unix socket has no Nagle to turn off."""
    if getattr(sock, "family", None) in TCP_FAMILIES:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
