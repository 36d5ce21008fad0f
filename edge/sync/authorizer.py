"""The till's online authorization client: an MQTT v5 request/response with a hard timeout.

It lives in the till API process with its own small MQTT connection (the sync agent
is another process and they share only the database; a round trip through SQLite
would add polling latency to a wait that must stay under ~1.5 s). No answer in
time, no connection, or HQ's retained state saying it is offline all give
``online=False``, and the till applies its offline policy (invariant 2 and 3).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt

from core.errors import ProtocolError
from core.protocol import (
    UNKNOWN_MEMBER,
    AuthRequest,
    decode_json,
    down_topic,
    encode_json,
    hq_state_topic,
    up_topic,
    validate_auth_response,
    validate_state,
)
from edge.services.context import SpendDecision, SpendRequest
from edge.sync.config import SyncConfig
from edge.sync.mqtt import make_client, request_properties

log = logging.getLogger("edge.sync.auth")


class MqttAuthorizer:
    """``SpendAuthorizer`` asking HQ over MQTT; call ``start()`` once, ``stop()`` at exit."""

    def __init__(self, store: str, cfg: SyncConfig, clock: Any = None) -> None:
        self.store = store
        self.cfg = cfg
        self.clock = clock
        self.client: mqtt.Client | None = None
        self.connected = threading.Event()
        self.hq_online: bool | None = None
        self._lock = threading.Lock()
        self._waiting: dict[bytes, tuple[threading.Event, list[Any]]] = {}
        self.response_topic = down_topic(store, "auth")

    def start(self, wait: float = 0.0) -> MqttAuthorizer:
        client = make_client(
            self.cfg, f"edge-{self.store}-auth-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self.client = client
        client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive)
        client.loop_start()
        if wait:
            self.connected.wait(wait)
        return self

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason, props) -> None:  # noqa: ANN001
        if reason.is_failure:
            log.error("broker refused the authorizer: %s", reason)
            return
        client.subscribe([(self.response_topic, 1), (hq_state_topic(), 1)])
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason, props) -> None:  # noqa: ANN001
        self.connected.clear()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:  # noqa: ANN001
        try:
            if msg.topic == hq_state_topic():
                if msg.payload:
                    self.hq_online = validate_state(decode_json(msg.payload)).online
                return
            correlation = getattr(msg.properties, "CorrelationData", None)
            with self._lock:
                waiter = self._waiting.get(bytes(correlation)) if correlation else None
            if waiter is None:
                return  # a late answer to a request that already timed out: ignored
            waiter[1].append(validate_auth_response(decode_json(msg.payload, "auth response")))
            waiter[0].set()
        except ProtocolError as exc:
            log.warning("bad message on %s: %s", msg.topic, exc.message)

    def authorize(self, request: SpendRequest) -> SpendDecision:
        started = time.monotonic()
        if not self.connected.is_set() or self.client is None:
            return SpendDecision(online=False, reason="not connected to the broker")
        if self.hq_online is False:
            return SpendDecision(online=False, reason="HQ announced it is offline")
        correlation = os.urandom(16)
        done = threading.Event()
        answer: list[Any] = []
        with self._lock:
            self._waiting[correlation] = (done, answer)
        now = self.clock() if self.clock else None
        req = AuthRequest(
            store=self.store,
            sale_id=request.sale_id,
            member_id=request.member_id,
            action=request.action,
            stored_value=request.stored_value,
            points=request.points,
            coupons=tuple(request.coupons),
            requested_at=now.isoformat(timespec="seconds") if now else "",
        )
        try:
            self.client.publish(
                up_topic(self.store, "auth"),
                encode_json(req.to_dict()),
                qos=1,
                properties=request_properties(self.response_topic, correlation),
            )
            left = self.cfg.auth_timeout - (time.monotonic() - started)
            if left <= 0 or not done.wait(left):
                log.warning(
                    "HQ did not answer authorization of sale %s within %.1fs",
                    request.sale_id,
                    self.cfg.auth_timeout,
                )
                return SpendDecision(
                    online=False, reason=f"HQ did not answer within {self.cfg.auth_timeout:.1f}s"
                )
        finally:
            with self._lock:
                self._waiting.pop(correlation, None)
        response = answer[0]
        if response.sale_id != request.sale_id:
            return SpendDecision(online=False, reason="HQ answered for another sale")
        if response.approved:
            return SpendDecision(
                online=True,
                approved=True,
                authorization_id=response.authorization_id,
                stored_value_split=response.stored_value_split,
            )
        if response.code == UNKNOWN_MEMBER:
            # registered here and not yet at HQ: HQ cannot judge a balance it has not seen,
            # so the spend is decided as an offline one (the chain's offline policy)
            return SpendDecision(online=False, reason="HQ has not received this member yet")
        return SpendDecision(
            online=True, approved=False, reason=response.reason or response.code or "declined"
        )
