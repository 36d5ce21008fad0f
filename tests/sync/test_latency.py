"""Round trips through the broker are not held by Nagle's algorithm meeting delayed ACKs.

With TCP_NODELAY off on either side, a QoS 1 request and its answer waited about 40 ms
(Linux's delayed ACK) on each leg: 88 ms on loopback for a spend's authorization. Both
the clients (``core.sockets.no_delay`` on paho's socket) and every broker configuration
we write (``set_tcp_nodelay true``) must turn it off; one side alone still costs 44 ms.
"""

from __future__ import annotations

import socket
import threading

import pytest

from edge.sync.demo import PrivateBroker
from edge.sync.mqtt import make_client
from hq.mqtt import make_client as make_hq_client


def connected(client) -> socket.socket:  # noqa: ANN001
    done = threading.Event()
    client.on_connect = lambda *a: done.set()
    client.loop_start()
    assert done.wait(10), "not connected"
    return client.socket()


@pytest.mark.parametrize("side", ["edge", "hq"])
def test_every_mqtt_client_turns_nagle_off(own_mosquitto, side):
    if side == "edge":
        client = make_client(own_mosquitto.sync_config("nd"), "nd-e")
    else:
        client = make_hq_client(own_mosquitto.hq_settings("nd-h"), "test")
    client.connect(own_mosquitto.host, own_mosquitto.port)
    try:
        sock = connected(client)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        client.disconnect()
        client.loop_stop()


def broker_options(conf) -> dict[str, str]:  # noqa: ANN001
    return dict(
        line.split(None, 1) for line in conf.read_text().splitlines() if line and " " in line
    )


def test_every_broker_config_we_write_turns_nagle_off(tmp_path, own_mosquitto):
    """How fast the round trip is, is bench/sync.py's to prove (auth_rtt_p50_ms/p99_ms);
    here: the option that removes the 40 ms a leg is in every config we write."""
    demo = PrivateBroker(tmp_path / "demo-mosquitto")
    for conf in (demo.conf, own_mosquitto.conf):
        assert broker_options(conf).get("set_tcp_nodelay", "").startswith("true"), conf
