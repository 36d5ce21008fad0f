"""The broker as `huiyuan-hq broker-config` writes it, against a real Mosquitto with TLS
(MQTT v5): a store's certificate speaks only as that store, an unknown or revoked
certificate does not get in, and the genuine store keeps syncing meanwhile.

Mosquitto 2.0's ACL file does not check SUBSCRIBE itself (its subscribe hook grants
every filter: "FIXME - implement ACL subscription strings" in security_default.c);
it checks read access on every message it would deliver. So a store subscribing to
another store's acks gets SUBACK 0x01 and then none of the messages: that is what
these tests assert, with a marker message on the store's own topic sent afterwards
to know when delivery is done.
"""

from __future__ import annotations

import queue
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from core import protocol as p
from hq.config import HqConfig
from hq.models import Store as HqStore
from hq.worker import IngestWorker
from tests.broker import Identity, Mosquitto, TestPki
from tests.sync.conftest import new_code
from tests.sync.helpers import StoreBox, init_hq, wait_until

NOT_AUTHORIZED = 0x87
WAIT = 10.0


@dataclass
class Probe:
    """A raw MQTT v5 client that records what the broker answers."""

    client: mqtt.Client
    connected: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)
    connack: ReasonCode | None = None
    acks: dict[int, queue.Queue[Any]] = field(default_factory=dict)
    messages: queue.Queue[mqtt.MQTTMessage] = field(default_factory=queue.Queue)

    def publish(self, topic: str, payload: bytes = b"{}", retain: bool = False) -> int:
        """Publish at QoS 1 and return the PUBACK's reason code."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        return self._ack(info.mid)[0].value

    def subscribe(self, topic: str) -> int:
        result, mid = self.client.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        return self._ack(mid)[0][0].value

    def _ack(self, mid: int) -> Any:
        return self.acks.setdefault(mid, queue.Queue()).get(timeout=WAIT)

    def next_message(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=WAIT)

    def close(self) -> None:
        if self.connected.is_set() and not self.closed.is_set():
            self.client.disconnect()
            self.closed.wait(WAIT)
        self.client.loop_stop()
        # paho closes its internal socket pair in __del__; the callbacks (closures over
        # this probe) make a cycle that the garbage collector would end in any order,
        # sockets first, which warns of unclosed sockets. Break it.
        for hook in ("on_connect", "on_disconnect", "on_publish", "on_subscribe", "on_message"):
            setattr(self.client, hook, None)


def probe(broker: Mosquitto, who: Identity | None, ca: str | None = None) -> Probe:
    """Connect to ``broker`` with ``who``'s certificate (None: no certificate) and wait
    for the outcome: ``connack`` set, or ``closed`` set by a refused handshake."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"probe-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    client.tls_set(
        ca_certs=ca or broker.pki.ca_path,
        certfile=who.cert if who else None,
        keyfile=who.key if who else None,
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    found = Probe(client)

    def on_connect(_c, _u, _flags, reason, _props) -> None:
        found.connack = reason
        found.connected.set()

    def on_disconnect(_c, _u, _flags, _reason, _props) -> None:
        found.closed.set()

    def on_publish(_c, _u, mid, reason, _props) -> None:
        found.acks.setdefault(mid, queue.Queue()).put((reason,))

    def on_subscribe(_c, _u, mid, reasons, _props) -> None:
        found.acks.setdefault(mid, queue.Queue()).put((reasons,))

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_publish = on_publish
    client.on_subscribe = on_subscribe
    client.on_message = lambda _c, _u, msg: found.messages.put(msg)
    try:
        client.connect(broker.host, broker.port, keepalive=30)
    except (ssl.SSLError, OSError):
        found.closed.set()
        return found
    client.loop_start()
    assert wait_until(lambda: found.connected.is_set() or found.closed.is_set(), WAIT, "CONNACK")
    return found


def refused(broker: Mosquitto, who: Identity | None, ca: str | None = None) -> bool:
    """True when the broker will not let ``who`` in (no CONNACK, the TLS handshake fails)."""
    attempt = probe(broker, who, ca)
    try:
        return not attempt.connected.is_set()
    finally:
        attempt.close()


@pytest.fixture
def connect(mosquitto):
    made: list[Probe] = []

    def make(common_name: str) -> Probe:
        made.append(probe(mosquitto, mosquitto.identity(common_name)))
        assert made[-1].connack is not None and made[-1].connack.value == 0
        return made[-1]

    yield make
    for one in made:
        one.close()


@pytest.mark.parametrize(
    "topic",
    [
        "hy/v1/{other}/up/tx",
        "hy/v1/{other}/up/hello",
        "hy/v1/{other}/up/snapreq",
        "hy/v1/{other}/up/state",
        "hy/v1/{other}/down/ack",
        "hy/v1/{me}/down/ack",  # a store does not write its own down topics either
        "hy/v1/hq/state",
        "hy/v1/hq/chg",
        "hy/v1/other-root",
    ],
)
def test_a_store_certificate_may_not_publish_outside_its_own_up_topics(connect, topic):
    me, other = new_code(), new_code()
    store = connect(me)
    assert store.publish(topic.format(me=me, other=other)) == NOT_AUTHORIZED
    # and its own up topics are open to it (no subscriber here: 0x10)
    assert store.publish(p.up_topic(me, "tx")) in (0x00, 0x10)


def test_a_store_receives_nothing_of_another_stores_down_topics(connect):
    me, other = new_code(), new_code()
    hq, spy, victim = connect("hq"), connect(me), connect(other)
    for topic in (p.down_topic(other, "ack"), "hy/v1/+/down/#", "hy/v1/#"):
        assert spy.subscribe(topic) == 1  # Mosquitto 2.0 grants; delivery is checked
    assert victim.subscribe(p.down_topic(other, "#")) == 1
    assert hq.publish(p.down_topic(other, "ack"), b'{"acked_through": 7}') == 0
    assert hq.publish(p.down_topic(other, "chg"), b'{"changes": []}', retain=True) == 0
    assert hq.publish(p.down_topic(me, "ack"), b"marker") == 0
    # the marker matches two of the spy's filters (+/down/# and #): one copy each,
    # after anything published before it. HQ's broadcasts (hy/v1/hq/#) it may read.
    got: list[tuple[str, bytes]] = []
    while got.count((p.down_topic(me, "ack"), b"marker")) < 2:
        message = spy.next_message()
        if not message.topic.startswith("hy/v1/hq/"):
            got.append((message.topic, message.payload))
    assert got == [(p.down_topic(me, "ack"), b"marker")] * 2
    assert [victim.next_message().topic for _ in range(2)] == [
        p.down_topic(other, "ack"),
        p.down_topic(other, "chg"),
    ]


def test_a_store_does_not_see_another_stores_up_topics_or_retained_state(connect):
    me, other = new_code(), new_code()
    spy, victim, hq = connect(me), connect(other), connect("hq")
    assert victim.publish(p.up_topic(other, "state"), b'{"online": true}', retain=True) in (
        0x00,
        0x10,
    )
    assert spy.subscribe(f"hy/v1/{other}/up/#") == 1
    assert spy.subscribe("hy/v1/hq/#") == 1
    assert hq.publish(p.hq_state_topic(), b"marker") == 0
    got = spy.next_message()
    while got.retain and got.topic == p.hq_state_topic():  # HQ's own, from other tests
        got = spy.next_message()
    assert (got.topic, got.payload) == (p.hq_state_topic(), b"marker")
    assert spy.messages.empty()
    assert victim.publish(p.up_topic(other, "state"), b"", retain=True) in (0x00, 0x10)


def test_hq_reads_every_store_through_the_shared_subscription_and_writes_its_topics(connect):
    me = new_code()
    hq, store = connect("hq"), connect(me)
    assert hq.subscribe(p.INGEST_SUBSCRIPTION) == 1
    assert store.subscribe(p.down_topic(me, "ack")) == 1
    assert store.subscribe(p.hq_changes_topic()) == 1
    assert store.publish(p.up_topic(me, "tx"), b"batch") == 0
    got = hq.next_message()
    while got.retain:  # other tests' stores' retained state, delivered on subscribing
        got = hq.next_message()
    assert (got.topic, got.payload) == (p.up_topic(me, "tx"), b"batch")
    assert hq.publish(p.down_topic(me, "ack"), b"ack") == 0
    assert hq.publish(p.hq_changes_topic(), b"chg") == 0
    assert [store.next_message().payload for _ in range(2)] == [b"ack", b"chg"]


def test_no_certificate_and_another_cas_certificate_are_refused_at_connect(mosquitto, tmp_path):
    stranger = TestPki(tmp_path / "stranger").identity(new_code())
    assert refused(mosquitto, None)
    assert refused(mosquitto, stranger)
    # the other CA's certificate is refused even by a client that trusts the broker
    assert refused(mosquitto, stranger, ca=mosquitto.pki.ca_path)
    assert not refused(mosquitto, mosquitto.identity(new_code()))


def test_the_brokers_own_server_certificate_is_no_client_identity(mosquitto, pki):
    """A certificate issued for a server (extendedKeyUsage serverAuth) cannot log in."""
    server = pki.issue("hq", ("127.0.0.1",))
    assert refused(mosquitto, server)


def test_a_revoked_certificate_is_refused_once_the_crl_is_rewritten_and_reloaded(
    tmp_path, pki, sqlite_hq_url, stores
):
    broker = Mosquitto(tmp_path / "broker", pki)
    broker.start()
    worker = None
    live = None
    try:
        worker = IngestWorker(
            HqConfig(database_url=sqlite_hq_url, mqtt=broker.hq_settings("hq-acl-test")),
            db=init_hq(sqlite_hq_url),
        ).start()
        code = new_code("G")
        genuine = StoreBox(tmp_path / "g", code, broker)
        stores.append(genuine)
        genuine.load_demo(members=1)
        genuine.start_agent()
        genuine.sell(None, [{"sku": "P0001", "qty": 1}])
        wait_until(lambda: genuine.pending() == 0, 30, "the genuine store drained")

        stolen = pki.issue(new_code("X"))
        live = probe(broker, stolen)
        assert live.connected.is_set()
        pki.revoke(stolen)
        broker.reload()
        wait_until(lambda: refused(broker, stolen), WAIT, "the revoked certificate refused")
        # a connection opened before the reload stays open (why docs/operations.md
        # says to restart the broker after a revocation) ...
        assert live.publish(p.up_topic(stolen.common_name, "tx")) in (0x00, 0x10)
        genuine.sell(None, [{"sku": "P0001", "qty": 2}])
        wait_until(lambda: genuine.pending() == 0, 30, "the genuine store drained again")
        # ... and a restart cuts it, for good
        broker.restart()
        wait_until(live.closed.is_set, WAIT, "the stolen box's connection cut")
        assert refused(broker, stolen)
        genuine.sell(None, [{"sku": "P0001", "qty": 3}])
        wait_until(lambda: genuine.pending() == 0, 60, "the genuine store drained after restart")
        assert HqStore.get_by_id(code).acked_through == genuine.outbox_count()
    finally:
        if live is not None:
            live.close()
        if worker is not None:
            worker.stop()
        broker.stop()


def test_hq_dead_letters_a_batch_speaking_for_another_store_whatever_the_broker_lets_in(
    mosquitto, connect, sqlite_hq_url
):
    """A broker whose ACL were wrong is played here by HQ's own identity, which may write
    every store's up topics: HQ still refuses a batch whose store is not the topic's,
    and the store whose topic it was keeps its cursor."""
    from core.ids import uuid7
    from hq.models import DeadLetter
    from tests.hq.edge_sim import Items

    victim, claimed = new_code(), new_code()
    worker = IngestWorker(
        HqConfig(database_url=sqlite_hq_url, mqtt=mosquitto.hq_settings("hq-forged")),
        db=init_hq(sqlite_hq_url),
    ).start()
    try:
        wrong_acl = connect("hq")
        batch = p.make_batch(claimed, 1, [Items(claimed).registration(uuid7(), "13800000009")])
        assert wrong_acl.publish(p.up_topic(victim, "tx"), batch) == 0
        letter = wait_until(
            lambda: DeadLetter.get_or_none(DeadLetter.store == victim), WAIT, "a dead letter"
        )
        assert letter.code == "forged"
        assert claimed in letter.reason
        assert HqStore.get_or_none(HqStore.code == claimed) is None
        victim_row = HqStore.get_or_none(HqStore.code == victim)
        assert victim_row is None or victim_row.acked_through == 0
    finally:
        worker.stop()
