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
)
from hq import reconcile
from hq.auth import authorize_spend
from hq.changes import changes_after, latest_change_seq, snapshot_records
from hq.config import HqConfig
from hq.ingest import dead_letter, handle_hello, ingest_batch, note_store_state
from hq.models import Store, bind, is_postgres, open_database, utcnow
from hq.mqtt import connect_properties, make_client, publish_properties

log = logging.getLogger("hq.worker")

FAULT_ENV = "HY_HQ_FAULT"  # "kill_after_commit": SIGKILL between commit and ack (crash tests)


def iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _reply_to(msg: mqtt.MQTTMessage) -> tuple[str | None, bytes | None]:
    """A request's MQTT v5 response topic and correlation data (None where absent)."""
    props = msg.properties
    if not props:
        return None, None
    return getattr(props, "ResponseTopic", None), getattr(props, "CorrelationData", None)


def publish_changes(client: mqtt.Client, changes: list[Change], latest: int | None = None) -> None:
    """Push committed changes to every store on hy/v1/hq/chg, in pages that fit a message."""
    if not changes:
        return
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
    ) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.role = role
        self.client: mqtt.Client | None = None
        self.connected = threading.Event()
        self.stop_event = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self.fault = os.environ.get(FAULT_ENV, "")
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

    def run_forever(self) -> None:
        """Start, then wait for SIGTERM/SIGINT; signals only set the stop event."""
        signal.signal(signal.SIGTERM, lambda *_: self.stop_event.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop_event.set())
        self.start()
        self.stop_event.wait()
        self.stop()

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

    # ---- paho callbacks (network thread) ---------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            log.error("broker refused connection: %s", reason)
            return
        client.subscribe(INGEST_SUBSCRIPTION, qos=1)
        self.announce()
        self.connected.set()
        log.info("connected to %s, subscribed %s", self.config.mqtt.url, INGEST_SUBSCRIPTION)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.connected.clear()
        if not self.stop_event.is_set():
            log.warning("disconnected from broker: %s", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
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
        outcome = ingest_batch(self.db, msg.topic, store, msg.payload, self.clock())
        if self.fault == "kill_after_commit" and outcome.ack is not None:
            log.error("fault injection: SIGKILL after commit, before ack")
            os.kill(os.getpid(), signal.SIGKILL)
        if outcome.ack is not None:
            self._publish(down_topic(store, "ack"), outcome.ack.to_dict())
        if outcome.changes and self.client is not None:
            publish_changes(self.client, outcome.changes)

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
            self._dead_letter(msg.topic, msg.payload, "invalid", exc.message, now, store)
            return
        self._send_page(store, req.after, req.limit)

    def _send_page(self, store: str, after: int, limit: int, snapshot: bool = False) -> None:
        assert self.db is not None  # noqa: S101
        with self.db.atomic():
            if snapshot:
                page = ChangePage(0, 0, (), False, latest_change_seq(), snapshot_required=True)
            else:
                page = changes_after(after, limit)
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
            self._dead_letter(msg.topic, msg.payload, "invalid", exc.message, now, store)
            return
        with self.db.atomic():
            if is_postgres(self.db):
                self.db.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor, records = snapshot_records(self.db)
            chunks = snapshot_chunks(records, cursor, uuid7())
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
        response, changes = authorize_spend(self.db, req, now)
        self._publish(response_topic, response.to_dict(), publish_properties(None, correlation))
        if changes and self.client is not None:
            publish_changes(self.client, changes)

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
            publish_changes(self.client, out.changes)
        for topic, obj in out.messages:
            self._publish(topic, obj)
