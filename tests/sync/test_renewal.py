"""Certificate renewal over MQTT against a real Mosquitto with TLS, client certificates
and the generated ACL: the store asks with the certificate it holds, HQ signs only for
the topic's store, and the agent writes the new identity and reconnects with it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509

from core import protocol as p
from edge.demo_data import load_demo
from edge.enrol import CA_FILE, CERT_FILE, KEY_FILE, cert_not_after, make_key_and_csr
from edge.models import Outbox
from edge.services import sales
from edge.services.context import open_till
from edge.services.staff import sign_in
from edge.sync.agent import SyncAgent
from edge.sync.config import SyncConfig
from hq.config import HqConfig
from hq.models import Certificate, DeadLetter
from hq.pki import issue_store_certificate, revoke
from hq.worker import IngestWorker
from tests.broker import Identity, Mosquitto, TestPki
from tests.edge.conftest import make_config
from tests.sync.helpers import init_hq, wait_until


@pytest.fixture
def pki(tmp_path) -> TestPki:
    return TestPki(tmp_path / "pki")


@pytest.fixture
def broker(tmp_path, pki) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path / "mosquitto", persistence=False, pki=pki)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def worker(tmp_path, broker, pki) -> Iterator[IngestWorker]:
    url = f"sqlite:///{tmp_path / 'hq.sqlite3'}"
    config = HqConfig(
        database_url=url,
        mqtt=broker.hq_settings("hq-renewal-test"),
        ca_dir=str(pki.directory / "ca"),
    )
    w = IngestWorker(config, db=init_hq(url)).start()
    yield w
    w.stop()


def enrolled(pki: TestPki, directory: Path, store: str, days: int) -> Path:
    """What ``huiyuan-edge enrol`` leaves: a key, a certificate recorded at HQ, the CA."""
    key_pem, csr_pem = make_key_and_csr(store)
    cert_pem = issue_store_certificate(pki.ca, store, csr_pem, days=days)
    directory.mkdir(parents=True)
    (directory / KEY_FILE).write_bytes(key_pem)
    (directory / CERT_FILE).write_bytes(cert_pem)
    (directory / CA_FILE).write_bytes(pki.ca.ca_pem)
    return directory


def store_cfg(broker: Mosquitto, creds: Path, **extra) -> SyncConfig:
    return SyncConfig(
        broker_url=broker.url,
        ca=str(creds / CA_FILE),
        cert=str(creds / CERT_FILE),
        key=str(creds / KEY_FILE),
        credentials_dir=str(creds),
        ack_timeout=1.0,
        **extra,
    )


@pytest.fixture
def till(tmp_path):
    t = open_till(make_config(tmp_path / "box", store={"code": "S001"}), create_key=True)
    load_demo(t, members=2)  # two registrations to sync
    yield t
    t.db.close()


def test_a_store_near_expiry_renews_writes_the_files_and_keeps_syncing(
    tmp_path, broker, worker, pki, till
):
    creds = enrolled(pki, tmp_path / "credentials", "S001", days=5)
    old_cert, old_key = (creds / CERT_FILE).read_bytes(), (creds / KEY_FILE).read_bytes()
    agent = SyncAgent(till, store_cfg(broker, creds, renew_days=30)).start()
    try:
        wait_until(
            lambda: (
                cert_not_after((creds / CERT_FILE).read_bytes()) - dt.datetime.now(dt.UTC)
                > dt.timedelta(days=300)
            ),
            30,
            "a renewed certificate",
        )
        assert (creds / KEY_FILE).read_bytes() != old_key
        assert stat.S_IMODE(os.stat(creds / KEY_FILE).st_mode) == 0o600
        new = x509.load_pem_x509_certificate((creds / CERT_FILE).read_bytes())
        assert new.serial_number != x509.load_pem_x509_certificate(old_cert).serial_number
        assert [c.common_name for c in Certificate.select()] == ["S001", "S001"]
        # the agent reconnects with the new identity and goes on syncing
        wait_until(lambda: agent.cfg.cert == str(creds / CERT_FILE), 10, "new identity in use")
        wait_until(agent.connected.is_set, 20, "reconnected")
        wait_until(
            lambda: Outbox.select().where(Outbox.acked == False).count() == 0,  # noqa: E712
            30,
            "the outbox acked",
        )
        assert agent.renewer.pending_key is None
        assert not list(creds.glob(".*.tmp"))
        # the old certificate revoked and every connection dropped: only the new one gets in
        old_serial = x509.load_pem_x509_certificate(old_cert).serial_number
        pki.revoke(Identity("S001", "", "", "", old_serial))
        broker.restart()
        sell(till)
        wait_until(
            lambda: Outbox.select().where(Outbox.acked == False).count() == 0,  # noqa: E712
            30,
            "the sale after the broker restart acked",
        )
    finally:
        agent.stop()
    assert DeadLetter.select().count() == 0


def test_a_store_far_from_expiry_does_not_ask(tmp_path, broker, worker, pki, till):
    creds = enrolled(pki, tmp_path / "credentials", "S001", days=365)
    before = (creds / CERT_FILE).read_bytes()
    agent = SyncAgent(till, store_cfg(broker, creds, renew_days=30)).start()
    try:
        wait_until(
            lambda: Outbox.select().where(Outbox.acked == False).count() == 0,  # noqa: E712
            30,
            "the outbox acked",
        )
        assert agent.renewer.checked_at > 0  # it looked
    finally:
        agent.stop()
    assert (creds / CERT_FILE).read_bytes() == before
    assert Certificate.select().count() == 1


def sell(till) -> None:
    _, staff = sign_in(till, "1001", "1234")
    req = {"lines": [{"sku": "P0001"}], "tenders": [{"kind": "cash", "amount": 1000}]}
    sales.checkout(till, staff, sales.CheckoutRequest.from_request(req))


def test_a_certificate_not_written_by_enrolment_is_not_renewed(tmp_path, broker, worker, pki, till):
    """Files put in place by hand (a lab's, a test's) are not the enrolled identity: the
    agent does not ask, and writes nothing into credentials_dir."""
    creds = enrolled(pki, tmp_path / "by-hand", "S001", days=5)
    elsewhere = tmp_path / "credentials"
    elsewhere.mkdir()
    cfg = dataclasses.replace(
        store_cfg(broker, creds, renew_days=30), credentials_dir=str(elsewhere)
    )
    agent = SyncAgent(till, cfg).start()
    try:
        wait_until(
            lambda: Outbox.select().where(Outbox.acked == False).count() == 0,  # noqa: E712
            30,
            "the outbox acked",
        )
        wait_until(lambda: agent.renewer.checked_at > 0, 10, "the expiry looked at")
    finally:
        agent.stop()
    assert agent.renewer.pending_key is None
    assert list(elsewhere.iterdir()) == []
    assert Certificate.select().count() == 1


class RawStore:
    """A store's own MQTT client (its real certificate), sending by hand."""

    def __init__(self, broker: Mosquitto, creds: Path, code: str) -> None:
        self.code = code
        self.replies: list[bytes] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"raw-{code}", protocol=mqtt.MQTTv5
        )
        self.client.tls_set(
            ca_certs=str(creds / CA_FILE),
            certfile=str(creds / CERT_FILE),
            keyfile=str(creds / KEY_FILE),
        )
        self.client.on_connect = lambda c, *a: c.subscribe(p.down_topic(code, "cert"), qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = lambda c, u, msg: self.replies.append(msg.payload)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def ask(self, store: str, csr_cn: str) -> None:
        req = p.CertRequest(store, make_key_and_csr(csr_cn)[1].decode())
        self.client.publish(p.up_topic(self.code, "certreq"), p.encode_json(req.to_dict()), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize(
    ("store", "csr_cn", "code", "words"),
    [
        ("S001", "S001", "forged", "on 'S002'"),  # asks as another store
        ("S002", "S001", "invalid", "not 'S002'"),  # a CSR for another store's name
    ],
)
def test_a_store_cannot_get_a_certificate_for_another(
    tmp_path, broker, worker, pki, store, csr_cn, code, words
):
    raw = RawStore(broker, enrolled(pki, tmp_path / "s2", "S002", days=30), "S002")
    try:
        raw.ask(store, csr_cn)
        wait_until(lambda: DeadLetter.select().count() == 1, 20, "a dead letter")
    finally:
        raw.close()
    letter = DeadLetter.get()
    assert (letter.code, letter.store) == (code, "S002")
    assert words in letter.reason
    assert raw.replies == []
    assert Certificate.select().where(Certificate.common_name == "S001").count() == 0


def test_a_revoked_store_still_connected_gets_no_new_certificate(tmp_path, broker, worker, pki):
    raw = RawStore(broker, enrolled(pki, tmp_path / "s2", "S002", days=30), "S002")
    try:
        revoke("S002", "box stolen")  # before the broker reloads its CRL the box is still on
        raw.ask("S002", "S002")
        wait_until(lambda: DeadLetter.select().count() == 1, 20, "a dead letter")
    finally:
        raw.close()
    assert "no live certificate" in DeadLetter.get().reason
    assert raw.replies == []
    assert Certificate.select().count() == 1


@pytest.mark.parametrize("days", [-1, 366])
def test_renew_days_out_of_range_is_refused_by_name(days):
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match=f"sync.renew_days: {days} must be 0..365"):
        SyncConfig.from_dict({"renew_days": days})


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"v": 1, "store": "S001"}, "missing field 'csr'"),
        ({"v": 1, "store": "S001", "csr": "hello"}, "one PEM certificate request"),
        (
            {"v": 1, "store": "S001", "csr": "-----BEGIN CERTIFICATE REQUEST-----" + "A" * 9000},
            "8192",
        ),
        ({"v": 1, "store": "hq", "csr": "-----BEGIN CERTIFICATE REQUEST-----"}, "bad store code"),
        ({"v": 2, "store": "S001", "csr": "-----BEGIN CERTIFICATE REQUEST-----"}, "schema version"),
    ],
)
def test_a_malformed_certreq_is_refused_by_name(raw, words):
    with pytest.raises(p.ProtocolError, match=words):
        p.validate_cert_request(raw)


def test_a_cert_reply_must_hold_one_pem_certificate():
    with pytest.raises(p.ProtocolError, match="one PEM certificate"):
        p.validate_cert_reply({"v": 1, "store": "S001", "certificate": "-----BEGIN KEY-----"})
    reply = p.validate_cert_reply(
        {"v": 1, "store": "S001", "certificate": "-----BEGIN CERTIFICATE-----"}
    )
    assert reply.store == "S001"
