"""The store's sync agent: drains the outbox to HQ and applies HQ's changes.

One process beside the till API; they share only the SQLite database. paho's
network thread only queues what arrives; one worker thread owns the database
work and the drain, so the order of acks, pages and batches is simple to follow.

    agent = SyncAgent(till, SyncConfig.from_dict(...))
    agent.start()      # init_database, init_mqtt, start_worker
    ...
    agent.stop()       # mirror: stop_worker, stop_mqtt, close database

Resend rules (docs/protocol.md): from ``acked_through + 1`` on (re)connect with a
Hello, when no ack has moved the outbox for ``ack_timeout`` (doubling to 60 s), and
when HQ's retained state turns online again. Only HQ's ack marks outbox rows done.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from core.errors import HuiyuanError, ProtocolError
from core.protocol import (
    MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    ChangeRequest,
    Hello,
    PeerState,
    SnapshotChunk,
    SnapshotRequest,
    assemble_snapshot,
    decode_json,
    encode_json,
    hq_changes_topic,
    hq_state_topic,
    up_topic,
    validate_ack,
    validate_change_page,
    validate_snapshot_chunk,
    validate_state,
)
from core.systemd import LoopPulse, service_ready
from edge.backup import move_past_hq_cursor
from edge.models import Outbox
from edge.phones import keep_since, prune_phones, records_need_key
from edge.services.context import Till
from edge.services.sync_link import LinkNote
from edge.sync.apply import (
    apply_page,
    down_cursor,
    ensure_sync_tables,
    get_setting,
    load_snapshot,
    put_setting,
)
from edge.sync.config import SyncConfig
from edge.sync.digest import DigestPublisher
from edge.sync.mqtt import make_client, session_properties
from edge.sync.renewal import CertRenewer
from edge.sync.rules import retry_refused_rules

log = logging.getLogger("edge.sync")

ACKED_THROUGH = "sync.acked_through"
EPOCH = "sync.epoch"
MAX_ACK_TIMEOUT = 60.0
PAGE_RETRY_S = 5.0
GAP_REQUEST_S = 0.5  # at most one change request per this after a gap in the live pages
POLL_S = 0.1  # how soon a sale the till just committed is picked up


@dataclass
class InFlight:
    first: int
    last: int
    sent_at: float


@dataclass
class DrainState:
    acked_through: int = 0
    sent_through: int = 0
    inflight: list[InFlight] = field(default_factory=list)
    last_progress: float = 0.0
    ack_timeout: float = 5.0


def build_batch(
    store: str, epoch: int, rows: list[tuple[int, str]]
) -> list[tuple[int, int, bytes]]:
    """Batches of (first_seq, last_seq, payload) from outbox rows (seq, item JSON).

    The item JSON is published exactly as the till stored it; a batch that would pass
    MAX_PAYLOAD_BYTES is split in halves."""
    pending = [rows]
    out = []
    while pending:
        part = pending.pop(0)
        first, last = part[0][0], part[-1][0]
        payload = (
            f'{{"epoch":{epoch},"first_seq":{first},"items":['
            + ",".join(p for _, p in part)
            + f'],"last_seq":{last},"store":"{store}","v":{SCHEMA_VERSION}}}'
        ).encode()
        if len(payload) > MAX_PAYLOAD_BYTES and len(part) > 1:
            half = len(part) // 2
            pending[:0] = [part[:half], part[half:]]
            continue
        out.append((first, last, payload))
    return out


class SyncAgent:
    def __init__(self, till: Till, cfg: SyncConfig, client_id: str = "") -> None:
        self.till = till
        self.cfg = cfg
        self.store = till.store
        self.client_id = client_id or f"edge-{self.store}-sync"
        self.client: mqtt.Client | None = None
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.stop_event = threading.Event()
        self.connected = threading.Event()
        self.worker: threading.Thread | None = None
        self.pulse = LoopPulse()  # the worker loop's rounds: systemd's watchdog is fed by them
        self.epoch = 1
        self.drain = DrainState(ack_timeout=cfg.ack_timeout)
        self.hq_online: bool | None = None
        self.link = LinkNote()
        self.page_requested_at = 0.0
        self.page_pending = False  # a hello or change request not yet answered
        # a live page showed changes after a gap while a request had just gone: ask again
        # once the rate limit allows (that request's answer may predate those changes)
        self.gap_seen = False
        self.snapshot_requested_at = 0.0
        self.snapshot_last_chunk = 0.0
        self.snapshot_chunks: dict[int, SnapshotChunk] = {}
        self.snapshot_id: str | None = None
        self.digests = DigestPublisher(
            till,
            cfg.digest_interval,
            self.connected,
            lambda name, obj: self._publish(up_topic(self.store, name), obj),
        )
        self.renewer = CertRenewer(  # the certificate, before it expires: edge/sync/renewal.py
            self.store,
            cfg,
            lambda name, obj: self._publish(up_topic(self.store, name), obj),
            self.use_identity,
        )
        self.handlers = {
            "cert": self.renewer.on_cert,
            "ack": self.on_ack,
            "chg": self.on_page,
            "live": self.on_live_page,
            "snap": self.on_snapshot_chunk,
            "hqstate": self.on_hq_state,
            "connected": self.on_connected,
        }

    # ---- lifecycle ----------------------------------------------------------------

    def start(self) -> SyncAgent:
        self.init_database()
        self.init_mqtt()
        self.start_worker()
        self.digests.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.digests.stop()
        if self.worker is not None:
            self.worker.join(timeout=10)
        if self.client is not None:
            if self.connected.is_set():
                self._publish_state(False)
            self.client.disconnect()
            self.client.loop_stop()

    def run_forever(self) -> None:
        """Start, then wait for SIGTERM/SIGINT; signals only set the stop event."""
        signal.signal(signal.SIGTERM, lambda *_: self.stop_event.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop_event.set())
        self.start()
        watchdog = service_ready([self.pulse.advanced], f"store {self.store} syncing")
        self.stop_event.wait()
        watchdog.stop()
        self.stop()

    def init_database(self) -> None:
        db = self.till.db
        ensure_sync_tables(db)
        with db.atomic():
            self.epoch = int(get_setting(EPOCH, 0) or 0)
            if not self.epoch:
                self.epoch = 1
                put_setting(EPOCH, 1)
            acked = get_setting(ACKED_THROUGH)
            if acked is None:
                last = (
                    Outbox.select(Outbox.seq)
                    .where(Outbox.acked == False)  # noqa: E712
                    .order_by(Outbox.seq)
                    .first()
                )
                top = Outbox.select(Outbox.seq).order_by(Outbox.seq.desc()).first()
                acked = (last.seq - 1) if last else (top.seq if top else 0)
                put_setting(ACKED_THROUGH, acked)
        retry_refused_rules(db, self.store, self._iso())  # upgraded: take what was refused
        self.drain.acked_through = self.drain.sent_through = int(acked)
        log.info(
            "store %s epoch %d: acked through %d, down cursor %d",
            self.store,
            self.epoch,
            self.drain.acked_through,
            down_cursor(),
        )

    def init_mqtt(self) -> None:
        client = make_client(self.cfg, self.client_id)
        client.max_inflight_messages_set(max(20, self.cfg.window * 2))
        client.max_queued_messages_set(0)
        client.will_set(
            up_topic(self.store, "state"),
            encode_json(PeerState(False, self._iso(), self.epoch).to_dict()),
            qos=1,
            retain=True,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client
        client.connect_async(
            self.cfg.host,
            self.cfg.port,
            keepalive=self.cfg.keepalive,
            clean_start=False,
            properties=session_properties(self.cfg.session_expiry),
        )
        client.loop_start()

    def start_worker(self) -> None:
        self.worker = threading.Thread(target=self._work, name="edge-sync", daemon=True)
        self.worker.start()

    # ---- paho callbacks: queue only -----------------------------------------------

    def _on_connect(self, client, userdata, flags, reason, props) -> None:  # noqa: ANN001
        if reason.is_failure:
            log.error("broker refused connection: %s", reason)
            return
        client.subscribe(
            [(hq_state_topic(), 1), (hq_changes_topic(), 1), (f"hy/v1/{self.store}/down/#", 1)]
        )
        self.connected.set()
        self.events.put(("connected", None))

    def _on_disconnect(self, client, userdata, flags, reason, props) -> None:  # noqa: ANN001
        self.connected.clear()
        if not self.stop_event.is_set():
            log.warning("disconnected from broker: %s", reason)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:  # noqa: ANN001
        if msg.topic == hq_state_topic():
            self.events.put(("hqstate", msg.payload))
        elif msg.topic == hq_changes_topic():
            self.events.put(("live", msg.payload))
        elif msg.topic.startswith(f"hy/v1/{self.store}/down/"):
            name = msg.topic.rsplit("/", 1)[1]
            if name in ("ack", "chg", "snap", "cert"):
                self.events.put((name, msg.payload))
            elif name in ("digestreq", "ledgerfix"):
                self.digests.ask(name, msg.payload)  # balance digests: edge/sync/digest.py
            # down/auth answers belong to the till process's authorizer

    # ---- the worker ---------------------------------------------------------------

    def _work(self) -> None:
        wait = 0.0
        while not self.stop_event.is_set():
            self.pulse.tick()
            try:
                self._handle_events(wait)
                # nothing to publish (window full, or no new items): sleep until an event
                # arrives or POLL_S passes, when the till may have queued more
                wait = 0.0 if self.pump() else POLL_S
                self.check_timers()
                # the link as the till's screen shows it (edge/services/sync_link.py)
                self.link.note(
                    self.connected.is_set(), self.hq_online, self.till.now(), time.monotonic()
                )
            except HuiyuanError as exc:
                log.error("sync step failed: %s", exc.message)
                time.sleep(0.5)
            except Exception:
                # the database or broker hiccuped: everything durable is in SQLite, retry
                log.exception("sync step failed; retrying")
                time.sleep(0.5)

    def _handle_events(self, wait: float) -> None:
        try:
            kind, payload = self.events.get(timeout=wait) if wait else self.events.get_nowait()
        except queue.Empty:
            return
        while True:
            try:
                self.handlers[kind](payload)
            except ProtocolError as exc:
                log.warning("dropped a bad %s message: %s", kind, exc.message)
            try:
                kind, payload = self.events.get_nowait()
            except queue.Empty:
                return

    def _can_send(self) -> bool:
        return (
            self.connected.is_set()
            and self.hq_online is not False
            and len(self.drain.inflight) < self.cfg.window
        )

    def pump(self) -> int:
        """Publish batches after ``sent_through`` while the window has room."""
        published = 0
        d = self.drain
        while self._can_send():
            rows = [
                (r.seq, r.payload)
                for r in Outbox.select(Outbox.seq, Outbox.payload)
                .where((Outbox.seq > d.sent_through) & (Outbox.acked == False))  # noqa: E712
                .order_by(Outbox.seq)
                .limit(self.cfg.batch_size)
            ]
            if not rows:
                break
            now = time.monotonic()
            if not d.inflight:
                d.last_progress = now
            for first, last, payload in build_batch(self.store, self.epoch, rows):
                assert self.client is not None  # noqa: S101
                self.client.publish(up_topic(self.store, "tx"), payload, qos=1)
                d.inflight.append(InFlight(first, last, now))
                d.sent_through = last
                published += last - first + 1
        return published

    def check_timers(self) -> None:
        now = time.monotonic()
        d = self.drain
        self.renewer.check(self.connected.is_set())
        if d.inflight and now - d.last_progress > d.ack_timeout and self.connected.is_set():
            log.warning(
                "no ack for %.1fs: resending from seq %d", d.ack_timeout, d.acked_through + 1
            )
            d.ack_timeout = min(MAX_ACK_TIMEOUT, d.ack_timeout * 2)
            self.resend()
        if (
            self.page_pending
            and self.connected.is_set()
            and not self.snapshot_requested_at
            and now - self.page_requested_at > PAGE_RETRY_S
        ):
            # the request or its answer was lost (the broker is a pipe): ask again
            log.warning("no change page for %.0fs: asking again", PAGE_RETRY_S)
            self.request_page(down_cursor())
        if (
            self.gap_seen
            and self.connected.is_set()
            and not self.snapshot_requested_at
            and now - self.page_requested_at > GAP_REQUEST_S
        ):
            self.request_page(down_cursor())
        if (
            self.snapshot_requested_at
            and self.connected.is_set()
            and now - max(self.snapshot_requested_at, self.snapshot_last_chunk)
            > self.cfg.snapshot_timeout
        ):
            log.warning("snapshot incomplete after %.0fs: asking again", self.cfg.snapshot_timeout)
            self.request_snapshot()

    def use_identity(self, cert: str, key: str) -> None:
        """Reconnect with a renewed certificate (the broker checks it at connect only, so
        the old one would otherwise be shown again until the agent restarts)."""
        self.cfg = self.renewer.cfg = dataclasses.replace(self.cfg, cert=cert, key=key)
        old, self.client = self.client, None
        if old is not None:
            old.disconnect()
            old.loop_stop()
        self.connected.clear()
        self.init_mqtt()
        log.info("reconnecting with the renewed certificate %s", cert)

    def resend(self) -> None:
        d = self.drain
        d.inflight.clear()
        d.sent_through = d.acked_through
        d.last_progress = time.monotonic()

    # ---- handlers -----------------------------------------------------------------

    def on_connected(self, _: Any) -> None:
        log.info("connected to %s as %s", self.cfg.broker_url, self.client_id)
        self._publish_state(True)
        self.resend()
        self.send_hello()

    def send_hello(self) -> None:
        # with the newest seq, so HQ's /metrics shows this store's backlog before it drains
        top = Outbox.select(Outbox.seq).order_by(Outbox.seq.desc()).first()
        hello = Hello(
            self.store,
            self.epoch,
            self.drain.acked_through,
            down_cursor(),
            last_seq=top.seq if top else self.drain.acked_through,
        )
        self._publish(up_topic(self.store, "hello"), hello.to_dict())
        self.page_requested_at = time.monotonic()
        self.page_pending = True

    def on_hq_state(self, payload: bytes) -> None:
        if not payload:
            return
        state = validate_state(decode_json(payload, "hq state"))
        was = self.hq_online
        self.hq_online = state.online
        if state.online and was is False:
            log.info("HQ is back online: hello and resend from %d", self.drain.acked_through + 1)
            self.resend()
            self.send_hello()
        elif not state.online and was is not False:
            log.warning("HQ announced it is offline")

    def on_ack(self, payload: bytes) -> None:
        ack = validate_ack(decode_json(payload, "ack"))
        if ack.store != self.store or ack.epoch != self.epoch:
            log.warning("ignored an ack for %s epoch %d", ack.store, ack.epoch)
            return
        if ack.rewind and ack.acked_through < self.drain.acked_through:
            self.rewind_to(ack.acked_through)
            return
        self.record_ack(ack.acked_through, [(r.seq, r.code, r.reason) for r in ack.rejected])

    def rewind_to(self, acked_through: int) -> None:
        """HQ lost what it had acknowledged after ``acked_through`` (its database was
        restored): those outbox rows, kept after their ack, become unsent again."""
        d = self.drain
        log.warning(
            "HQ holds only through seq %d of the %d it acknowledged: resending from %d",
            acked_through,
            d.acked_through,
            acked_through + 1,
        )
        with self.till.db.atomic():
            Outbox.update(acked=False, acked_at=None, reject_code=None, reject_reason=None).where(
                Outbox.seq > acked_through
            ).execute()
            self._restore_scrubbed_phones(acked_through)
            put_setting(ACKED_THROUGH, acked_through)
        d.acked_through = acked_through
        d.ack_timeout = self.cfg.ack_timeout
        self.resend()

    def record_ack(self, acked_through: int, rejected: list[tuple[int, str, str]]) -> None:
        d = self.drain
        top = Outbox.select(Outbox.seq).order_by(Outbox.seq.desc()).first()
        if acked_through > (top.seq if top is not None else 0):
            # HQ holds seqs this box never made: restored from a backup (edge/backup.py)
            move_past_hq_cursor(self.till.db, d.acked_through, acked_through)
            self.resend()
            return
        at = self._iso()
        with self.till.db.atomic():
            for seq, code, reason in rejected:
                if seq <= acked_through:
                    Outbox.update(
                        acked=True, acked_at=at, reject_code=code, reject_reason=reason
                    ).where(Outbox.seq == seq).execute()
                    log.warning("HQ rejected seq %d (%s): %s", seq, code, reason)
            if acked_through > d.acked_through:
                Outbox.update(acked=True, acked_at=at).where(
                    (Outbox.seq > d.acked_through)
                    & (Outbox.seq <= acked_through)
                    & (Outbox.acked == False)  # noqa: E712
                ).execute()
                put_setting(ACKED_THROUGH, acked_through)
                # a registration HQ has had long enough keeps no phone here (invariant 8)
                prune_phones(self.till.db, self._keep_phones_since())
        if acked_through > d.acked_through:
            d.acked_through = acked_through
            d.inflight = [b for b in d.inflight if b.last > acked_through]
            d.sent_through = max(d.sent_through, acked_through)
            d.last_progress = time.monotonic()
            d.ack_timeout = self.cfg.ack_timeout

    def _restore_scrubbed_phones(self, after: int) -> None:
        """An acknowledged registration's phone was scrubbed from its outbox copy; a
        resent one needs it back, from the member's encrypted phone."""
        scrubbed = self.till.db.execute_sql(
            "SELECT o.seq, m.id, m.phone_enc FROM outbox o "
            "JOIN member m ON m.id = json_extract(o.payload, '$.body.member_id') "
            "WHERE o.seq > ? AND o.kind = 'registration' "
            "AND json_extract(o.payload, '$.body.phone') = '' AND m.phone_enc IS NOT NULL",
            (after,),
        ).fetchall()
        for seq, member_id, phone_enc in scrubbed:
            phone = self.till.keys.decrypt(phone_enc, member_id)
            self.till.db.execute_sql(
                "UPDATE outbox SET payload = json_set(payload, '$.body.phone', ?) WHERE seq = ?",
                (phone, seq),
            )

    def on_live_page(self, payload: bytes) -> None:
        self.on_page(payload, live=True)

    def on_page(self, payload: bytes, live: bool = False) -> None:
        page = validate_change_page(decode_json(payload, "change page"))
        if not live:
            self.page_pending = False
        if page.snapshot_required:
            if not self.snapshot_requested_at:
                self.request_snapshot()
            return
        if self.snapshot_requested_at:
            return  # the snapshot sets the cursor; pages follow it
        if records_need_key(page.changes):
            # members hashed with a lookup key this store does not hold: the key comes
            # only with a snapshot, on this store's own topic
            log.info("change page hashed with a lookup key not held here: asking for a snapshot")
            self.request_snapshot()
            return
        applied, cursor = apply_page(self.till.db, self.store, self.till.keys, page, self._iso())
        if applied:
            log.info("applied %d changes, down cursor %d", applied, cursor)
        if page.from_seq > cursor + 1:
            # missed a live push: ask for what follows our cursor (not more than twice a
            # second; check_timers asks when this one could not)
            if time.monotonic() - self.page_requested_at > GAP_REQUEST_S:
                self.request_page(cursor)
            else:
                self.gap_seen = True
        elif page.more:
            self.request_page(cursor)

    def request_page(self, after: int) -> None:
        self.gap_seen = False
        req = ChangeRequest(self.store, after, self.cfg.page_size)
        self._publish(up_topic(self.store, "chgreq"), req.to_dict())
        self.page_requested_at = time.monotonic()
        self.page_pending = True

    def request_snapshot(self) -> None:
        self.snapshot_chunks.clear()
        self.snapshot_id = None
        self.snapshot_requested_at = time.monotonic()
        self.snapshot_last_chunk = 0.0
        self._publish(up_topic(self.store, "snapreq"), SnapshotRequest(self.store).to_dict())
        log.info("asked HQ for a snapshot")

    def on_snapshot_chunk(self, payload: bytes) -> None:
        chunk = validate_snapshot_chunk(decode_json(payload, "snapshot chunk"))
        if not self.snapshot_requested_at:
            return  # not asked for (a late chunk of a finished snapshot)
        if self.snapshot_id is None:
            self.snapshot_id = chunk.snapshot_id
        elif chunk.snapshot_id != self.snapshot_id:
            return  # chunks of an older request
        self.snapshot_chunks[chunk.index] = chunk
        self.snapshot_last_chunk = time.monotonic()
        if len(self.snapshot_chunks) < chunk.count:
            return
        records = list(assemble_snapshot(self.snapshot_chunks.values()))
        count = load_snapshot(
            self.till.db,
            self.store,
            self.till.keys,
            records,
            chunk.cursor,
            self._iso(),
            lookup_key=self.snapshot_chunks[0].lookup_key,
            keep_since=self._keep_phones_since(),
        )
        log.info(
            "loaded snapshot %s: %d records at cursor %d", chunk.snapshot_id, count, chunk.cursor
        )
        self.snapshot_requested_at = 0.0
        self.snapshot_chunks.clear()
        self.snapshot_id = None
        self.request_page(chunk.cursor)

    # ---- helpers --------------------------------------------------------------------

    def _keep_phones_since(self) -> str:
        return keep_since(self.till.now(), self.cfg.keep_registered_phones_hours)

    def _iso(self) -> str:
        return self.till.now().isoformat(timespec="seconds")

    def _publish(self, topic: str, obj: dict[str, Any], retain: bool = False) -> None:
        if self.client is not None:
            self.client.publish(topic, encode_json(obj), qos=1, retain=retain)

    def _publish_state(self, online: bool) -> None:
        state = PeerState(online, self._iso(), self.epoch)
        self._publish(up_topic(self.store, "state"), state.to_dict(), retain=True)

    def status(self) -> dict[str, Any]:
        d = self.drain
        return {
            "connected": self.connected.is_set(),
            "hq_online": self.hq_online,
            "acked_through": d.acked_through,
            "sent_through": d.sent_through,
            "inflight": len(d.inflight),
            "down_cursor": down_cursor(),
        }
