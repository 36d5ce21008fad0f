"""The store box's Prometheus metrics (docs/operations.md, "Monitoring").

Two processes, two endpoints, each exporting what it owns:

* the till API's ``/metrics`` (``init_app``): the checkout latency histogram and request
  counts it measures itself; the outbox backlog, the age of the oldest item HQ has not
  acknowledged and the time of the last acknowledgement, read at each scrape from the
  SQLite file the sync agent shares (so they are right even while the agent is down);
  the devices' states.
* the sync agent's own listener (``start_sync_listener``, ``[metrics] sync_port``):
  whether it is connected to the broker, whether HQ says it is online, batches in
  flight, its resend timeout. These live only in the agent's memory; a dead agent shows
  as Prometheus's ``up == 0`` for that target, which a value in the database could not.

Who may read: with a token file (``[metrics] token_file`` or systemd's ``metrics-token``
credential) whoever sends it as a bearer token; without one only this box (loopback), as
the till API may listen on the store's LAN for its screens.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from core.errors import ConfigError
from core.metrics_http import bearer_matches, is_loopback, read_token, token_path
from edge.models import Outbox
from edge.services.context import Till

CHECKOUT_ENDPOINT = "sales.create_sale"
# a checkout is tens of milliseconds; an online authorization waits up to about 1.5 s
CHECKOUT_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
DEVICE_ROLES = ("printer", "reader", "display")
_PENDING_SQL = 'SELECT COUNT(*), MIN("seq") FROM "outbox" WHERE "acked" = 0'
_LAST_SEQ_SQL = 'SELECT MAX("seq") FROM "outbox"'


@dataclass(frozen=True)
class MetricsConfig:
    """The edge's ``[metrics]`` section."""

    token_file: str = field(
        default="",
        metadata={
            "doc": "bearer token Prometheus sends; default: systemd's metrics-token "
            "credential; neither: /metrics answers this box (loopback) only"
        },
    )
    sync_host: str = field(
        default="127.0.0.1",
        metadata={"doc": "address of the sync agent's /metrics; other than loopback needs a token"},
    )
    sync_port: int = field(
        default=0, metadata={"doc": "port of the sync agent's /metrics (0: not served)"}
    )

    @classmethod
    def from_dict(cls, data: Any) -> MetricsConfig:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"metrics: expected a table, got {type(data).__name__}")
        problems = []
        kwargs: dict[str, Any] = {}
        defaults = cls()
        names = {f.name for f in dataclasses.fields(cls)}
        for key, value in data.items():
            if key not in names:
                problems.append(f"metrics.{key}: unknown key")
            elif isinstance(value, bool) or not isinstance(value, type(getattr(defaults, key))):
                problems.append(
                    f"metrics.{key}: {value!r} should be {type(getattr(defaults, key)).__name__}"
                )
            else:
                kwargs[key] = value
        cfg = dataclasses.replace(defaults, **kwargs)
        if not 0 <= cfg.sync_port < 65536:
            problems.append(f"metrics.sync_port: {cfg.sync_port} out of range")
        if cfg.token_file and not os.path.isfile(cfg.token_file):
            problems.append(f"metrics.token_file: no such file {cfg.token_file!r}")
        if cfg.sync_port and not cfg.token_file and not is_loopback(cfg.sync_host):
            if token_path("") is None:
                problems.append(
                    f"metrics.sync_host: {cfg.sync_host!r} is not loopback: set metrics.token_file"
                )
        if problems:
            raise ConfigError("; ".join(problems), problems=problems, field="metrics")
        return cfg


def _parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


class TillCollector:
    """What the till reads at each scrape: the outbox (shared with the sync agent) and
    the devices' states."""

    def __init__(self, till: Till, devices: Any = None) -> None:
        self.till = till
        self.devices = devices

    def collect(self) -> Iterator[Metric]:
        from edge.sync.agent import ACKED_THROUGH
        from edge.sync.apply import get_setting

        now = self.till.now()
        # both through indexes (outbox.acked, the seq key): cheap however long the outbox
        # grows, unlike the refused count GET /api/v1/status shows (a scan; HQ counts its
        # refusals by code in huiyuan_ingest_items_refused_total)
        pending, oldest_seq = self.till.db.execute_sql(_PENDING_SQL).fetchone()
        (last_seq,) = self.till.db.execute_sql(_LAST_SEQ_SQL).fetchone()
        yield GaugeMetricFamily(
            "huiyuan_outbox_pending_items",
            "outbox items HQ has not acknowledged yet",
            value=pending,
        )
        yield GaugeMetricFamily(
            "huiyuan_outbox_last_seq", "newest outbox seq written by the till", value=last_seq or 0
        )
        oldest = Outbox.get_or_none(Outbox.seq == oldest_seq) if oldest_seq is not None else None
        at = _parse_time(oldest.occurred_at) if oldest else None
        yield GaugeMetricFamily(
            "huiyuan_outbox_oldest_pending_age_seconds",
            "age of the oldest outbox item HQ has not acknowledged (0: none pending)",
            value=max(0.0, (now - at).total_seconds()) if at else 0.0,
        )
        acked = int(get_setting(ACKED_THROUGH, 0) or 0)
        yield GaugeMetricFamily(
            "huiyuan_outbox_acked_through",
            "HQ's cumulative ack, as the store holds it",
            value=acked,
        )
        last_ack = Outbox.get_or_none(Outbox.seq == acked) if acked else None
        when = _parse_time(last_ack.acked_at) if last_ack else None
        if when is not None:
            yield GaugeMetricFamily(
                "huiyuan_outbox_last_ack_timestamp_seconds",
                "when HQ last acknowledged new outbox items, Unix time",
                value=when.timestamp(),
            )
        yield from self._devices()

    def _devices(self) -> Iterator[Metric]:
        if self.devices is None:
            return
        from edge.devices.state import NEEDS_ATTENTION, DeviceState

        state = GaugeMetricFamily(
            "huiyuan_device_state",
            "1 for the state each device is in, 0 for the others",
            labels=["role", "state"],
        )
        attention = GaugeMetricFamily(
            "huiyuan_device_needs_attention",
            "1 if the device is disconnected, out of paper or in error",
            labels=["role"],
        )
        queue = GaugeMetricFamily("huiyuan_printer_queue_depth", "receipts waiting for the printer")
        states = self.devices.states()
        for role in DEVICE_ROLES:
            current = states.get(role, {}).get("state")
            for s in DeviceState:
                state.add_metric([role, s.value], 1 if current == s.value else 0)
            attention.add_metric([role], 1 if current in NEEDS_ATTENTION else 0)
        depth = states.get("printer", {}).get("queue_depth")
        if depth is not None:
            queue.add_metric([], depth)
        yield from (state, attention, queue)


class TillMetrics:
    """The till process's registry: request timings it measures and what it reads."""

    def __init__(self, till: Till, devices: Any = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.checkout_seconds = Histogram(
            "huiyuan_checkout_seconds",
            "time to answer POST /api/v1/sales, by outcome: completed, replayed, refused, error",
            ["outcome"],
            buckets=CHECKOUT_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "huiyuan_till_requests",
            "till API requests, by endpoint and status class (2xx, 4xx, 5xx)",
            ["endpoint", "status"],
            registry=self.registry,
        )
        for outcome in ("completed", "replayed", "refused", "error"):
            self.checkout_seconds.labels(outcome)
        self.registry.register(TillCollector(till, devices))

    def observe(self, endpoint: str | None, status: int, seconds: float) -> None:
        self.requests.labels(endpoint or "unmatched", f"{status // 100}xx").inc()
        if endpoint == CHECKOUT_ENDPOINT:
            if status == 201:
                outcome = "completed"
            elif status == 200:
                outcome = "replayed"
            elif status < 500:
                outcome = "refused"
            else:
                outcome = "error"
            self.checkout_seconds.labels(outcome).observe(seconds)


metrics_bp = Blueprint("metrics", __name__)


@metrics_bp.get("/metrics")
def metrics() -> Response:
    path = current_app.extensions["huiyuan.metrics_token"]
    try:
        token = read_token(path)
    except ConfigError as exc:
        current_app.logger.error("metrics: %s", exc.message)
        return Response("metrics token unreadable\n", 503, mimetype="text/plain")
    if token is None:
        if not is_loopback(request.remote_addr):
            return Response(
                "metrics: this box only (set a metrics token to scrape from elsewhere)\n",
                403,
                mimetype="text/plain",
            )
    elif not bearer_matches(request.headers.get("Authorization"), token):
        return Response(
            "bearer token required\n", 401, {"WWW-Authenticate": "Bearer"}, mimetype="text/plain"
        )
    registry = current_app.extensions["huiyuan.metrics"].registry
    return Response(generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST})


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.get("metrics_started")
    if started is not None and request.endpoint != "metrics.metrics":
        current_app.extensions["huiyuan.metrics"].observe(
            request.endpoint, response.status_code, time.perf_counter() - started
        )
    return response


def init_app(app: Flask, till: Till, devices: Any = None) -> None:
    """``/metrics`` on the till API, and the timing of every request (edge.api.create_app)."""
    cfg = MetricsConfig.from_dict(till.config.extra.get("metrics"))
    app.extensions["huiyuan.metrics"] = TillMetrics(till, devices)
    app.extensions["huiyuan.metrics_token"] = token_path(cfg.token_file)
    # first of the before_request functions, so a request refused at the door is timed too
    app.before_request_funcs.setdefault(None, []).insert(0, _start_timer)
    app.after_request(_observe)
    app.register_blueprint(metrics_bp)


# ---- the sync agent ----------------------------------------------------------------------


class SyncCollector:
    """The sync agent's connection and drain state (edge.sync.agent.SyncAgent), read
    from its memory at each scrape."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        agent = self.agent
        drain = agent.drain
        yield GaugeMetricFamily(
            "huiyuan_sync_connected",
            "1 while the sync agent is connected to the broker",
            value=1 if agent.connected.is_set() else 0,
        )
        yield GaugeMetricFamily(
            "huiyuan_sync_hq_online",
            "1 if HQ's retained state says online, 0 if offline or not yet heard",
            value=1 if agent.hq_online else 0,
        )
        yield GaugeMetricFamily(
            "huiyuan_sync_inflight_batches",
            "batches published and not yet acknowledged",
            value=len(drain.inflight),
        )
        yield GaugeMetricFamily(
            "huiyuan_sync_acked_through",
            "HQ's cumulative ack as the agent holds it",
            value=drain.acked_through,
        )
        yield GaugeMetricFamily(
            "huiyuan_sync_ack_timeout_seconds",
            "seconds without an ack before the agent resends (doubles while acks stall)",
            value=drain.ack_timeout,
        )


def start_sync_listener(agent: Any, cfg: MetricsConfig) -> Any:
    """The sync agent's /metrics, when ``[metrics] sync_port`` is set (else None)."""
    if not cfg.sync_port:
        return None
    from prometheus_client import make_wsgi_app

    from core.metrics_http import MetricsListener

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SyncCollector(agent))
    return MetricsListener(
        make_wsgi_app(registry), cfg.sync_host, cfg.sync_port, token_path(cfg.token_file)
    ).start()
