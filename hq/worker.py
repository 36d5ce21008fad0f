"""The HQ ingest worker: one MQTT v5 shared subscription, one dispatcher.

Several workers can run at once (``$share/ingest/hy/v1/+/up/#``): the broker gives
each message to one of them, the database serialises what must be serialised.
Every incoming message is acknowledged to the broker (manual PUBACK) only after it
has been handled: committed, and the ack / answer published. Every message ends
applied, answered, or refused with a reason (dead letter; an ack's ``rejected``
for a batch's items; a ``declined`` answer for an authorization), whatever it
holds: see docs/protocol.md, "Refusals".

    worker = IngestWorker(config)
    worker.start()      # init_database, init_mqtt, start_heartbeat
    ...
    worker.stop()
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import peewee as pw

from core.errors import ProtocolError
from core.ids import uuid7
from core.protocol import (
    INGEST_SUBSCRIPTION,
    MAX_CODE_CHARS,
    MAX_PAGE_CHANGES,
    MAX_PAYLOAD_BYTES,
    AuthResponse,
    Change,
    ChangePage,
    PeerState,
    decode_json,
    down_topic,
    encode_json,
    hq_changes_topic,
    hq_state_topic,
    parse_store_topic,
    safe_text,
    snapshot_chunks,
    validate_auth_request,
    validate_change_request,
    validate_hello,
    validate_snapshot_request,
    validate_state,
)
from core.systemd import BusyGuard, HealthCheck, service_ready
from hq import reconcile
from hq.auth import authorize_spend
from hq.changes import changes_after, latest_change_seq, snapshot_records
from hq.config import HqConfig
from hq.ingest import dead_letter, handle_hello, ingest_batch, note_store_state
from hq.lookup import ChainLookup, chain_lookup
from hq.metrics import WorkerMetrics, worker_listener
from hq.models import Store, bind, is_postgres, open_database, utcnow
from hq.mqtt import connect_properties, make_client, publish_properties

log = logging.getLogger("hq.worker")

# a message in its handler this long stops systemd's watchdog being fed (WatchdogSec=60 in
# huiyuan-hq-ingest@.service: a worker stuck that long is restarted a minute later). A
# snapshot request is answered in one handler call: keep this above the longest one.
STUCK_AFTER_S = 300.0
FAULT_ENV = "HY_HQ_FAULT"  # "kill_after_commit": SIGKILL between commit and ack (crash tests)


def iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _reply_to(msg: mqtt.MQTTMessage) -> tuple[str | None, bytes | None]:
    """A request's MQTT v5 response topic and correlation data (None where absent)."""
    props = msg.properties
    if not props:
        return None, None
    return getattr(props, "ResponseTopic", None), getattr(props, "CorrelationData", None)


def publish_changes(
    client: mqtt.Client, changes: list[Change], lookup: ChainLookup, latest: int | None = None
) -> None:
    """Push committed changes to every store on hy/v1/hq/chg, in pages that fit a message;
    members as every store may see them (``lookup``: no phone in clear)."""
    if not changes:
        return
    changes = [lookup.change_for_store(c) for c in changes]
    latest = latest if latest is not None else changes[-1].seq
    pending = [changes[i : i + MAX_PAGE_CHANGES] for i in range(0, len(changes), MAX_PAGE_CHANGES)]
    while pending:
        part = pending.pop(0)
        page = ChangePage(part[0].seq, part[-1].seq, tuple(part), False, latest)
        payload = encode_json(page.to_dict())
        if len(payload) > MAX_PAYLOAD_BYTES and len(part) > 1:
            half = len(part) // 2
            pending[:0] = [part[:half], part[half:]]
            continue
        client.publish(hq_changes_topic(), payload, qos=1)


class IngestWorker:
    def __init__(
        self,
        config: HqConfig,
        *,
        db: pw.Database | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        role: str = "ingest",
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
    ) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.role = role
        self.client: mqtt.Client | None = None
        self.connected = threading.Event()
        self.stop_event = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self.busy = BusyGuard()  # how long the message in hand has been handled
        self.fault = os.environ.get(FAULT_ENV, "")
        self.lookup = chain_lookup(config)
        self.metrics = WorkerMetrics()
        self.metrics_address = (metrics_host, metrics_port)
        self._metrics_listener: Any = None
        self.handlers: dict[str, Callable[[str, mqtt.MQTTMessage], None]] = {
            "tx": self.on_batch,
            "hello": self.on_hello,
            "auth": self.on_auth,
            "chgreq": self.on_change_request,
            "snapreq": self.on_snapshot_request,
            "state": self.on_store_state,
            "digest": self.on_reconcile,
            "digestrows": self.on_reconcile,
            "certreq": self.on_cert_request,
        }

    # ---- lifecycle ------------------------------------------------------------------

    def start(self, wait: float = 10.0) -> IngestWorker:
        self.start_metrics()
        self.init_database()
        self.init_mqtt()
        self.start_heartbeat()
        if not self.connected.wait(wait):
            log.warning(
                "not connected to %s after %.0fs; paho keeps trying", self.config.mqtt.url, wait
            )
        return self

    def stop(self) -> None:
        self.stop_event.set()
        if self._heartbeat:
            self._heartbeat.join(timeout=5)
        if self.client:
            self.client.disconnect()
            self.client.loop_stop()
        if self.db is not None and not self.db.is_closed():
            self.db.close()
        if self._metrics_listener is not None:
            self._metrics_listener.stop()

    def run_forever(self) -> None:
        """Start, then wait for SIGTERM/SIGINT; signals only set the stop event."""
        signal.signal(signal.SIGTERM, lambda *_: self.stop_event.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop_event.set())
        self.start()
        watchdog = service_ready(self.health_checks(), f"{self.role} worker")
        self.stop_event.wait()
        watchdog.stop()
        self.stop()

    def health_checks(self) -> list[HealthCheck]:
        """What systemd's watchdog is fed on: the heartbeat thread runs and no message
        has been in its handler for ``STUCK_AFTER_S`` (paho's one network thread runs
        every handler, so a stuck one stops the worker)."""

        def heartbeat_alive() -> bool:
            return self._heartbeat is not None and self._heartbeat.is_alive()

        def no_handler_stuck() -> bool:
            return self.busy.busy_for() < STUCK_AFTER_S

        return [heartbeat_alive, no_handler_stuck]

    def start_metrics(self) -> None:
        """This worker's /metrics on its own port (hq/metrics.py), when one is given."""
        host, port = self.metrics_address
        if port is not None:
            self._metrics_listener = worker_listener(
                self.metrics, host, port, self.config.metrics_token_file
            )
            log.info("metrics on http://%s:%d/metrics", host, self._metrics_listener.port)

    def init_database(self) -> None:
        if self.db is None:
            self.db = open_database(self.config.database_url)
        bind(self.db, create=False)

    def init_mqtt(self) -> None:
        settings = self.config.mqtt
        client = make_client(settings, self.role, manual_ack=True)
        client.will_set(
            hq_state_topic(), encode_json(PeerState(False, iso_now()).to_dict()), qos=1, retain=True
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client
        client.connect_async(
            settings.host,
            settings.port,
            keepalive=settings.keepalive,
            clean_start=False,
            properties=connect_properties(settings),
        )
        client.loop_start()

    def start_heartbeat(self) -> None:
        def beat() -> None:
            while not self.stop_event.wait(self.config.state_interval):
                if self.connected.is_set():
                    self.announce()

        self._heartbeat = threading.Thread(target=beat, name="hq-state", daemon=True)
        self._heartbeat.start()

    def announce(self) -> None:
        assert self.client is not None  # noqa: S101
        payload = encode_json(PeerState(True, iso_now()).to_dict())
        self.client.publish(hq_state_topic(), payload, qos=1, retain=True)

    def on_hq_state(self, payload: bytes) -> None:
        """HQ's retained state says offline while this worker runs: another worker died
        and the broker published its will. HQ is still here: say so at once."""
        try:
            online = validate_state(decode_json(payload, "hq state")).online if payload else True
        except ProtocolError:
            online = False  # whatever wrote it, the stores cannot read it either
        if not online and self.connected.is_set() and not self.stop_event.is_set():
            log.warning("HQ state says offline (another worker's will?): announcing online")
            self.announce()

    # ---- paho callbacks (network thread) ---------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            log.error("broker refused connection: %s", reason)
            return
        # HQ's state too (not shared): another worker's will must not tell the stores HQ is
        # gone while this one runs (docs/operations.md, "Scale")
        client.subscribe([(INGEST_SUBSCRIPTION, 1), (hq_state_topic(), 1)])
        self.announce()
        self.connected.set()
        self.metrics.connected.set(1)
        log.info("connected to %s, subscribed %s", self.config.mqtt.url, INGEST_SUBSCRIPTION)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.connected.clear()
        self.metrics.connected.set(0)
        if not self.stop_event.is_set():
            log.warning("disconnected from broker: %s", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == hq_state_topic():
            client.ack(msg.mid, msg.qos)
            self.on_hq_state(msg.payload)
            return
        try:
            with self.busy:
                self.dispatch(msg)
        except Exception:
            # the edge resends on its ack timeout; nothing is committed half
            log.exception("failed to handle %s", msg.topic)
        finally:
            client.ack(msg.mid, msg.qos)

    def dispatch(self, msg: mqtt.MQTTMessage) -> None:
        now = self.clock()
        try:
            store, direction, name = parse_store_topic(msg.topic)
        except ProtocolError as exc:
            self._dead_letter(msg.topic, msg.payload, "invalid", exc.message, now, None)
            return
        handler = self.handlers.get(name) if direction == "up" else None
        self.metrics.message(name if handler is not None else "other")
        if handler is None:
            self._dead_letter(
                msg.topic, msg.payload, "unknown_topic", f"no handler for {name!r}", now, store
            )
            return
        try:
            handler(store, msg)
        except Exception as exc:
            # no message is left unanswered: what HQ could not handle is refused with the
            # reason (if HQ cannot write even that, its database is down: the store resends)
            log.exception("failed to handle %s; refusing it", msg.topic)
            reason = (
                "总部无法处理此消息 (HQ could not process this message: "
                f"{type(exc).__name__}: {str(exc)[:500]})"
            )
            if name == "auth":
                self._decline(store, msg, "unprocessable", reason)
            self._dead_letter(msg.topic, msg.payload, "unprocessable", reason, self.clock(), store)

    def _dead_letter(
        self,
        topic: str,
        payload: bytes,
        code: str,
        reason: str,
        now: dt.datetime,
        store: str | None,
    ) -> None:
        assert self.db is not None  # noqa: S101
        with self.db.atomic():
            dead_letter(topic, payload, code, reason, now, store)
        self.metrics.dead_letters.labels(code).inc()

    def _decline(self, store: str, msg: mqtt.MQTTMessage, code: str, reason: str) -> None:
        """Answer an authorization HQ refuses with ``declined``, when it names a response
        topic HQ may answer on (the store's own down/auth)."""
        response_topic, correlation = _reply_to(msg)
        if response_topic != down_topic(store, "auth"):
            return
        try:
            raw = decode_json(msg.payload, "auth")
        except ProtocolError:
            raw = None
        sale_id = raw.get("sale_id") if isinstance(raw, dict) else None
        if (
            not isinstance(sale_id, str)
            or len(sale_id) > MAX_CODE_CHARS
            or safe_text(sale_id) != sale_id
        ):
            sale_id = ""
        response = AuthResponse(sale_id, "declined", code=code, reason=safe_text(reason)[:500])
        self._publish(response_topic, response.to_dict(), publish_properties(None, correlation))

    def _publish(self, topic: str, obj: dict[str, Any], props: Any = None) -> None:
        assert self.client is not None  # noqa: S101
        self.client.publish(topic, encode_json(obj), qos=1, properties=props)

    # ---- handlers ---------------------------------------------------------------------

    def on_batch(self, store: str, msg: mqtt.MQTTMessage) -> None:
        assert self.db is not None  # noqa: S101
        started = time.perf_counter()
        outcome = ingest_batch(self.db, msg.topic, store, msg.payload, self.clock())
        self.metrics.batch(outcome, time.perf_counter() - started)
        if self.fault == "kill_after_commit" and outcome.ack is not None:
            log.error("fault injection: SIGKILL after commit, before ack")
            os.kill(os.getpid(), signal.SIGKILL)
        if outcome.ack is not None:
            self._publish(down_topic(store, "ack"), outcome.ack.to_dict())
        if outcome.changes and self.client is not None:
            publish_changes(self.client, outcome.changes, self.lookup)

    def on_hello(self, store: str, msg: mqtt.MQTTMessage) -> None:
        assert self.db is not None  # noqa: S101
        now = self.clock()
        try:
            hello = validate_hello(decode_json(msg.payload, "hello"))
            if hello.store != store:
                raise ProtocolError(f"hello from {hello.store!r} on {store!r}'s topic")
        except ProtocolError as exc:
            code = "forged" if "topic" in exc.message else "invalid"
            self._dead_letter(msg.topic, msg.payload, code, exc.message, now, store)
            return
        ack = handle_hello(self.db, hello, now)
        self._publish(down_topic(store, "ack"), ack.to_dict())
        if ack.rewind:
            # HQ's database went back in time: the change seqs after the backup are being
            # issued again for other changes, so the store's cursor means nothing here
            self._send_page(store, hello.down_cursor or 0, 0, snapshot=True)
        elif hello.down_cursor is not None:
            self._send_page(store, hello.down_cursor, MAX_PAGE_CHANGES // 2)

    def on_change_request(self, store: str, msg: mqtt.MQTTMessage) -> None:
        now = self.clock()
        try:
            req = validate_change_request(decode_json(msg.payload, "chgreq"))
            if req.store != store:
                raise ProtocolError(f"change request from {req.store!r} on {store!r}'s topic")
        except ProtocolError as exc:
            code = "forged" if "topic" in exc.message else "invalid"
            self._dead_letter(msg.topic, msg.payload, code, exc.message, now, store)
            return
        if not self._known_store(msg, store, now):
            return
        self._send_page(store, req.after, req.limit)

    def _known_store(self, msg: mqtt.MQTTMessage, store: str, now: dt.datetime) -> bool:
        """Whether HQ knows ``store`` (it said hello, or was enrolled); a request from a
        store it does not know is dead-lettered and nothing is built or sent for it."""
        assert self.db is not None  # noqa: S101
        with self.db.atomic():
            known = Store.select().where(Store.code == store).exists()
        if not known:
            self._dead_letter(
                msg.topic,
                msg.payload,
                "unknown_store",
                f"no store {store!r} at HQ: nothing sent",
                now,
                store,
            )
        return known

    def _send_page(self, store: str, after: int, limit: int, snapshot: bool = False) -> None:
        assert self.db is not None  # noqa: S101
        with self.db.atomic():
            if snapshot:
                page = ChangePage(0, 0, (), False, latest_change_seq(), snapshot_required=True)
            else:
                page = changes_after(after, limit, self.lookup)
            Store.update(down_cursor=after).where(Store.code == store).execute()
        payload = encode_json(page.to_dict())
        while len(payload) > MAX_PAYLOAD_BYTES and len(page.changes) > 1:
            part = page.changes[: len(page.changes) // 2]
            page = ChangePage(page.from_seq, part[-1].seq, part, True, page.latest)
            payload = encode_json(page.to_dict())
        assert self.client is not None  # noqa: S101
        self.client.publish(down_topic(store, "chg"), payload, qos=1)

    def on_snapshot_request(self, store: str, msg: mqtt.MQTTMessage) -> None:
        assert self.db is not None  # noqa: S101
        now = self.clock()
        try:
            req = validate_snapshot_request(decode_json(msg.payload, "snapreq"))
            if req.store != store:
                raise ProtocolError(f"snapshot request from {req.store!r} on {store!r}'s topic")
        except ProtocolError as exc:
            code = "forged" if "topic" in exc.message else "invalid"
            self._dead_letter(msg.topic, msg.payload, code, exc.message, now, store)
            return
        if not self._known_store(msg, store, now):
            return
        with self.db.atomic():
            if is_postgres(self.db):
                self.db.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor, records = snapshot_records(self.db, self.lookup)
            chunks = snapshot_chunks(records, cursor, uuid7(), self.lookup.header())
        log.info("snapshot for %s: %d chunks at cursor %d", store, len(chunks), cursor)
        for chunk in chunks:
            self._publish(down_topic(store, "snap"), chunk.to_dict())

    def on_auth(self, store: str, msg: mqtt.MQTTMessage) -> None:
        assert self.db is not None  # noqa: S101
        now = self.clock()
        response_topic, correlation = _reply_to(msg)
        try:
            if response_topic != down_topic(store, "auth"):
                raise ProtocolError(
                    f"auth response topic must be {down_topic(store, 'auth')!r}, got {response_topic!r}"
                )
            req = validate_auth_request(decode_json(msg.payload, "auth"))
            if req.store != store:
                raise ProtocolError(f"auth request from {req.store!r} on {store!r}'s topic")
        except ProtocolError as exc:
            code = "forged" if "topic" in exc.message else "invalid"
            self._decline(
                store, msg, code, f"授权请求无效 (authorization request refused): {exc.message}"
            )
            self._dead_letter(msg.topic, msg.payload, code, exc.message, now, store)
            return
        response, changes = authorize_spend(self.db, req, now, self.config.business_day(now))
        self._publish(response_topic, response.to_dict(), publish_properties(None, correlation))
        if changes and self.client is not None:
            publish_changes(self.client, changes, self.lookup)

    def on_cert_request(self, store: str, msg: mqtt.MQTTMessage) -> None:
        """A store renewing its certificate (hq/enrol.py): signed only for the topic's store."""
        from hq.enrol import handle_cert_request

        assert self.db is not None  # noqa: S101
        now = self.clock()
        try:
            topic, answer = handle_cert_request(
                self.db, self.config.ca_dir, store, msg.payload, now
            )
        except ProtocolError as exc:
            code = "forged" if "topic" in exc.message else "invalid"
            self._dead_letter(msg.topic, msg.payload, code, exc.message, now, store)
            return
        self._publish(topic, answer)

    def on_store_state(self, store: str, msg: mqtt.MQTTMessage) -> None:
        assert self.db is not None  # noqa: S101
        try:
            note_store_state(self.db, store, msg.payload, self.clock())
        except ProtocolError as exc:
            self._dead_letter(msg.topic, msg.payload, "invalid", exc.message, self.clock(), store)

    def on_reconcile(self, store: str, msg: mqtt.MQTTMessage) -> None:
        """A balance digest or the rows of a drill-down (hq/reconcile.py)."""
        assert self.db is not None  # noqa: S101
        now = self.clock()
        name = msg.topic.rsplit("/", 1)[1]
        try:
            out = reconcile.handle_message(self.db, store, name, msg.payload, now)
        except ProtocolError as exc:
            code = "forged" if "topic" in exc.message else "invalid"
            self._dead_letter(msg.topic, msg.payload, code, exc.message, now, store)
            return
        if out.changes and self.client is not None:
            publish_changes(self.client, out.changes, self.lookup)
        for topic, obj in out.messages:
            self._publish(topic, obj)
