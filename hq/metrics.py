"""HQ's Prometheus metrics (docs/operations.md, "Monitoring").

* ``HqCollector``: chain-wide gauges read from the database at each scrape of the HQ
  API's ``/metrics`` (a handful of grouped counts over small tables): each store's
  backlog as HQ sees it, items held after a gap and the age of the oldest, stores
  online and last seen, dead letters by code, exceptions open by kind.
* ``WorkerMetrics``: what one ingest worker counts as it goes (messages, items applied
  and refused, batches, the time a batch takes to apply and commit, its broker
  connection), served by ``core.metrics_http.MetricsListener`` on its own port.

Labels are bounded: store codes, HQ's own reason codes and exception kinds, topic names
HQ handles; never a member, a phone or a payload.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import peewee as pw
from flask import Blueprint, Response, current_app, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from core.errors import ConfigError
from core.metrics_http import bearer_matches, read_token, token_path
from hq.models import DeadLetter, HeldItem, HqException, Store, utcnow

log = logging.getLogger("hq.metrics")

# present from the first scrape at 0, so that increase() sees the first one
USUAL_DEAD_LETTER_CODES = ("invalid", "malformed", "forged", "stale_epoch", "unprocessable")
EXCEPTION_KINDS = (
    "overdraft",
    "unknown_rules",
    "unknown_member",
    "balance_mismatch",
    "store_ledger_mismatch",
    "ledger_mismatch",
)
# handler names of hq.worker.IngestWorker; anything else is counted as "other"
INGEST_TOPICS = ("tx", "hello", "auth", "chgreq", "snapreq", "state", "digest", "digestrows")
# an ingest batch commits in milliseconds; a slow disk or a lock wait shows up to the right
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _epoch_seconds(value: dt.datetime) -> float:
    """HQ stores naive UTC."""
    return value.replace(tzinfo=dt.UTC).timestamp()


class HqCollector:
    """Chain-wide gauges from the database, computed at scrape time."""

    def __init__(self, db: pw.Database, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "huiyuan_hq_database_up", "1 if the metrics queries reached HQ's database"
        )
        try:
            with self.db.connection_context() if self.db.is_closed() else _same_connection():
                families = list(self._read(self.clock()))
        except pw.PeeweeException as exc:
            # the scrape still answers, so the alert names the database, not "target down"
            log.warning("metrics: database unreachable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self, now: dt.datetime) -> Iterator[Metric]:
        labels = ["store"]
        backlog = GaugeMetricFamily(
            "huiyuan_store_backlog_items",
            "newest seq the store reported minus HQ's ingest cursor (acked_through)",
            labels=labels,
        )
        acked = GaugeMetricFamily(
            "huiyuan_store_acked_through", "HQ's ingest cursor for the store", labels=labels
        )
        online = GaugeMetricFamily(
            "huiyuan_store_online", "1 if the store's retained state says online", labels=labels
        )
        seen = GaugeMetricFamily(
            "huiyuan_store_last_seen_timestamp_seconds",
            "when HQ last heard from the store (batch, hello or state), Unix time",
            labels=labels,
        )
        held = GaugeMetricFamily(
            "huiyuan_store_held_items",
            "items HQ keeps but cannot apply yet because an earlier seq is missing",
            labels=labels,
        )
        held_age = GaugeMetricFamily(
            "huiyuan_store_oldest_held_item_age_seconds",
            "age of the oldest item HQ holds after a gap (0: none held)",
            labels=labels,
        )
        held_rows = {
            store: (count, oldest)
            for store, count, oldest in HeldItem.select(
                HeldItem.store, pw.fn.COUNT(HeldItem.id), pw.fn.MIN(HeldItem.received_at)
            )
            .group_by(HeldItem.store)
            .tuples()
        }
        for code, reported, cursor, is_online, last_seen in (
            Store.select(
                Store.code, Store.reported_seq, Store.acked_through, Store.online, Store.last_seen
            )
            .order_by(Store.code)
            .tuples()
        ):
            backlog.add_metric([code], max(0, reported - cursor))
            acked.add_metric([code], cursor)
            online.add_metric([code], 1 if is_online else 0)
            if last_seen is not None:
                seen.add_metric([code], _epoch_seconds(last_seen))
            count, oldest = held_rows.get(code, (0, None))
            held.add_metric([code], count)
            oldest = _as_datetime(oldest)
            held_age.add_metric([code], max(0.0, (now - oldest).total_seconds()) if oldest else 0)
        yield from (backlog, acked, online, seen, held, held_age)

        dead = CounterMetricFamily(
            "huiyuan_dead_letters",
            "messages and items HQ refused and kept in the dead-letter table, by code",
            labels=["code"],
        )
        by_code = dict.fromkeys(USUAL_DEAD_LETTER_CODES, 0) | dict(
            DeadLetter.select(DeadLetter.code, pw.fn.COUNT(DeadLetter.id))
            .group_by(DeadLetter.code)
            .tuples()
        )
        for code, count in sorted(by_code.items()):
            dead.add_metric([code], count)
        yield dead

        open_ = GaugeMetricFamily(
            "huiyuan_exceptions_open",
            "exceptions HQ staff have not closed, by kind",
            labels=["kind"],
        )
        raised = CounterMetricFamily(
            "huiyuan_exceptions", "exceptions ever opened, by kind", labels=["kind"]
        )
        counts: dict[str, list[int]] = {kind: [0, 0] for kind in EXCEPTION_KINDS}
        for kind, status, count in (
            HqException.select(HqException.kind, HqException.status, pw.fn.COUNT(HqException.id))
            .group_by(HqException.kind, HqException.status)
            .tuples()
        ):
            pair = counts.setdefault(kind, [0, 0])
            pair[1] += count
            if status == "open":
                pair[0] += count
        for kind, (opened, ever) in sorted(counts.items()):
            open_.add_metric([kind], opened)
            raised.add_metric([kind], ever)
        yield open_
        yield raised


def _as_datetime(value: Any) -> dt.datetime | None:
    """MIN() over a DateTimeField comes back as text on SQLite."""
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))


class _same_connection:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# ---- the HQ API's /metrics -----------------------------------------------------------

metrics_bp = Blueprint("metrics", __name__)


@metrics_bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format, behind the bearer token in ``metrics_token_file`` (or
    systemd's ``metrics-token`` credential). No token configured: 404, as if absent."""
    path = current_app.extensions["hq_metrics_token"]
    try:
        token = read_token(path)
    except ConfigError as exc:
        log.error("metrics: %s", exc.message)
        return Response("metrics token unreadable\n", 503, mimetype="text/plain")
    if token is None:
        return Response("not found\n", 404, mimetype="text/plain")
    if not bearer_matches(request.headers.get("Authorization"), token):
        return Response(
            "bearer token required\n", 401, {"WWW-Authenticate": "Bearer"}, mimetype="text/plain"
        )
    registry = current_app.extensions["hq_metrics"]
    return Response(generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST})


def init_app(app: Any, db: pw.Database, token_file: str) -> None:
    """Register ``/metrics`` on the HQ API (hq.api.create_app)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HqCollector(db))
    app.extensions["hq_metrics"] = registry
    app.extensions["hq_metrics_token"] = token_path(token_file)
    app.register_blueprint(metrics_bp)


# ---- ingest workers --------------------------------------------------------------------


class WorkerMetrics:
    """One ingest worker's counters, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=False)

        def counter(name: str, doc: str, label: str) -> Counter:
            return Counter(name, doc, [label], registry=r)

        self.messages = counter(
            "huiyuan_ingest_messages",
            "messages handled, by topic name (tx, hello, auth, ...; other)",
            "topic",
        )
        self.items = counter(
            "huiyuan_ingest_items",
            "items of batches, by outcome: applied, duplicate, held (after a gap), refused",
            "outcome",
        )
        self.refused = counter(
            "huiyuan_ingest_items_refused",
            "items refused in acks, by HQ's reason code (a resent batch repeats its refusals)",
            "code",
        )
        self.batches = counter(
            "huiyuan_ingest_batches",
            "batches handled, by outcome: acked, dead_letter, unanswered (the store resends)",
            "outcome",
        )
        self.dead_letters = counter(
            "huiyuan_ingest_dead_letters",
            "dead letters this worker wrote for whole messages, by code",
            "code",
        )
        self.batch_seconds = Histogram(
            "huiyuan_ingest_batch_seconds",
            "time to check, apply and commit one batch",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.connected = Gauge(
            "huiyuan_ingest_mqtt_connected", "1 while connected to the broker", registry=r
        )
        for topic in (*INGEST_TOPICS, "other"):
            self.messages.labels(topic)
        for outcome in ("applied", "duplicate", "held", "refused"):
            self.items.labels(outcome)
        for outcome in ("acked", "dead_letter", "unanswered"):
            self.batches.labels(outcome)
        for code in USUAL_DEAD_LETTER_CODES:
            self.dead_letters.labels(code)

    def message(self, name: str) -> None:
        self.messages.labels(name if name in INGEST_TOPICS else "other").inc()

    def batch(self, outcome: Any, seconds: float) -> None:
        """``outcome`` is hq.ingest.IngestOutcome."""
        self.batch_seconds.observe(seconds)
        if outcome.ack is None:
            self.batches.labels("dead_letter" if outcome.dead_letter else "unanswered").inc()
            if outcome.dead_letter:
                self.dead_letters.labels(outcome.dead_letter).inc()
            return
        self.batches.labels("acked").inc()
        self.items.labels("applied").inc(outcome.applied)
        self.items.labels("duplicate").inc(outcome.duplicates)
        self.items.labels("held").inc(outcome.held)
        self.items.labels("refused").inc(len(outcome.ack.rejected))
        for rejection in outcome.ack.rejected:
            self.refused.labels(rejection.code).inc()


def worker_listener(
    metrics: WorkerMetrics, host: str, port: int, token_file: str
) -> Any:  # core.metrics_http.MetricsListener
    """The worker's metrics on ``host:port`` (loopback, or any address with a token)."""
    from prometheus_client import make_wsgi_app

    from core.metrics_http import MetricsListener

    path: Path | None = token_path(token_file)
    return MetricsListener(make_wsgi_app(metrics.registry), host, port, path).start()
