"""Round trips through the broker are not held by Nagle's algorithm meeting delayed ACKs.

With TCP_NODELAY off on either side, a QoS 1 request and its answer waited about 40 ms
(Linux's delayed ACK) on each leg: 88 ms on loopback for a spend's authorization. Both
the clients (``core.sockets.no_delay`` on paho's socket) and every broker configuration
we write (``set_tcp_nodelay true``) must turn it off; one side alone still costs 44 ms.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
import uuid

import pytest

from core.ids import uuid7
from edge.services.context import SpendRequest
from edge.sync.config import SyncConfig
from edge.sync.demo import PrivateBroker
from edge.sync.mqtt import make_client
from hq.config import MqttSettings
from hq.mqtt import make_client as make_hq_client
from tests.sync.helpers import wait_until
from tests.sync.test_authorization import chain  # noqa: F401 - the fixture, reused

# far under the 40 ms of one delayed ACK, far over a loopback round trip on a busy box
ROUND_TRIP_P50_MS = 20
# with HQ's transaction on top (8-13 ms p50 at load 6-10 on two CPUs), still under the
# 44 ms that one side without TCP_NODELAY adds
AUTHORIZATION_P50_MS = 35


def connected(client) -> socket.socket:  # noqa: ANN001
    done = threading.Event()
    client.on_connect = lambda *a: done.set()
    client.loop_start()
    assert done.wait(10), "not connected"
    return client.socket()


@pytest.mark.parametrize("side", ["edge", "hq"])
def test_every_mqtt_client_turns_nagle_off(own_mosquitto, side):
    if side == "edge":
        client = make_client(SyncConfig.from_dict({"broker_url": own_mosquitto.url}), "nd-e")
    else:
        client = make_hq_client(MqttSettings(url=own_mosquitto.url, client_id="nd-h"), "test")
    client.connect(own_mosquitto.host, own_mosquitto.port)
    try:
        sock = connected(client)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        client.disconnect()
        client.loop_stop()


def request_answer_ms(host: str, port: int, n: int) -> list[float]:
    """A QoS 1 request answered from the responder's callback, as HQ's worker answers."""
    cfg = SyncConfig.from_dict({"broker_url": f"mqtt://{host}:{port}"})
    ask, answer = f"t/{uuid.uuid4().hex}/ask", f"t/{uuid.uuid4().hex}/answer"
    got, subscribed = threading.Event(), threading.Semaphore(0)
    responder, requester = make_client(cfg, "rt-responder"), make_client(cfg, "rt-requester")
    responder.on_message = lambda c, u, msg: c.publish(answer, msg.payload, qos=1)
    requester.on_message = lambda *a: got.set()
    for client, topic in ((responder, ask), (requester, answer)):
        client.on_subscribe = lambda *a: subscribed.release()
        client.on_connect = lambda c, *a, topic=topic: c.subscribe(topic, qos=1)
        client.connect(host, port)
        client.loop_start()
    took = []
    try:
        assert subscribed.acquire(timeout=10) and subscribed.acquire(timeout=10)
        for _ in range(n):
            got.clear()
            started = time.perf_counter()
            requester.publish(ask, b"x" * 300, qos=1)
            assert got.wait(5), "no answer"
            took.append((time.perf_counter() - started) * 1000)
    finally:
        for client in (requester, responder):
            client.disconnect()
            client.loop_stop()
    return took


def test_request_answer_through_the_test_broker_is_fast(own_mosquitto):
    took = request_answer_ms(own_mosquitto.host, own_mosquitto.port, 30)
    assert statistics.median(took) < ROUND_TRIP_P50_MS, took


def test_request_answer_through_the_demo_broker_is_fast(tmp_path):
    broker = PrivateBroker(tmp_path / "demo-mosquitto").start()
    try:
        took = request_answer_ms("127.0.0.1", broker.port, 30)
    finally:
        broker.stop()
    assert statistics.median(took) < ROUND_TRIP_P50_MS, took


def test_authorization_round_trip_is_fast(chain):  # noqa: F811
    """The till's authorizer through the broker and a real HQ worker: a points hold."""
    authorizer = chain["authorizer"]
    wait_until(lambda: authorizer.connected.is_set(), 10, "the authorizer connected")
    took = []
    for _ in range(30):
        req = SpendRequest(uuid7(), chain["zhang"], stored_value=1, points=0, day="2026-11-23")
        started = time.perf_counter()
        decision = authorizer.authorize(req)
        took.append((time.perf_counter() - started) * 1000)
        assert decision.online and decision.approved, decision
    assert statistics.median(took) < AUTHORIZATION_P50_MS, took
