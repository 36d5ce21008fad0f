"""A small stand-in for a store's sync agent: real MQTT through the test broker."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core import protocol as p
from core.ids import uuid7
from core.points import fen_for_points
from core.points import points_earned as earned_points
from core.pricing import LineInput, MemberContext, price_basket
from core.rules import DEMO_RULES
from tests.broker import Mosquitto

TZ = dt.timezone(dt.timedelta(hours=8))


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class EdgeSim:
    def __init__(self, broker: Mosquitto, store: str, identity: str | None = None) -> None:
        """A store ``store`` on ``broker``, connected with the certificate of
        ``identity`` (default: the store's own)."""
        self.store = store
        self.lock = threading.Lock()
        self.acks: list[dict] = []
        self.pages: list[dict] = []
        self.live: list[dict] = []
        self.chunks: list[dict] = []
        self.auth_answers: dict[bytes, dict] = {}
        self.hq_state: list[dict] = []
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"edge-{store}-{uuid7()[-8:]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_connect = self._on_connect
        broker.paho_tls(self.client, identity or store)
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        wait_until(self.subscribed.is_set, 10, "edge subscription")

    def _on_connect(self, client, userdata, flags, reason, props) -> None:
        client.subscribe([(f"hy/v1/{self.store}/down/#", 1), ("hy/v1/hq/#", 1)])

    def _on_message(self, client, userdata, msg) -> None:
        obj = p.decode_json(msg.payload) if msg.payload else {}
        with self.lock:
            if msg.topic.endswith("/down/ack"):
                self.acks.append(obj)
            elif msg.topic.endswith("/down/chg"):
                self.pages.append(obj)
            elif msg.topic == "hy/v1/hq/chg":
                self.live.append(obj)
            elif msg.topic.endswith("/down/snap"):
                self.chunks.append(obj)
            elif msg.topic.endswith("/down/auth"):
                self.auth_answers[msg.properties.CorrelationData] = obj
            elif msg.topic == "hy/v1/hq/state":
                self.hq_state.append(obj)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # ---- sending -------------------------------------------------------------------

    def publish(self, name: str, payload: bytes, props: Properties | None = None) -> None:
        info = self.client.publish(p.up_topic(self.store, name), payload, qos=1, properties=props)
        info.wait_for_publish(5)

    def send(self, items: list[dict], epoch: int = 1) -> None:
        self.publish("tx", p.make_batch(self.store, epoch, items))

    def hello(self, acked_through: int = 0, down_cursor: int | None = None) -> None:
        self.publish(
            "hello", p.encode_json(p.Hello(self.store, 1, acked_through, down_cursor).to_dict())
        )

    def authorize(self, req: p.AuthRequest, timeout: float = 5.0) -> dict:
        correlation = os.urandom(16)
        self.publish("auth", p.encode_json(req.to_dict()), auth_properties(self.store, correlation))
        return wait_until(lambda: self.auth_answers.get(correlation), timeout, "auth answer")

    # ---- waiting -------------------------------------------------------------------

    def acked_through(self) -> int:
        with self.lock:
            return max((a["acked_through"] for a in self.acks), default=0)

    def wait_acked(self, seq: int, timeout: float = 15.0) -> dict:
        def found() -> dict | None:
            with self.lock:
                for ack in reversed(self.acks):
                    if ack["acked_through"] >= seq:
                        return ack
            return None

        return wait_until(found, timeout, f"{self.store} ack through {seq}")

    def wait_ack_count(self, n: int, timeout: float = 15.0) -> list[dict]:
        wait_until(lambda: len(self.acks) >= n, timeout, f"{n} acks for {self.store}")
        with self.lock:
            return list(self.acks)


class Items:
    """Builds a store's up items with gapless seqs, the way the till writes them."""

    def __init__(self, store: str) -> None:
        self.store = store
        self.seq = 0
        self.clock = dt.datetime(2026, 11, 23, 10, 0, tzinfo=TZ)

    def _item(self, kind: str, body: dict, seq: int | None = None, rules_version: int = 1) -> dict:
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.clock += dt.timedelta(minutes=1)
        return p.UpItem(
            1, self.store, seq, uuid7(), kind, self.clock.isoformat(), rules_version, body
        ).to_dict()

    def registration(self, member_id: str, phone: str, at: str | None = None, **extra) -> dict:
        body = {
            "member_id": member_id,
            "name": extra.pop("name", "张三"),
            "phone": phone,
            "gender": "M",
            "birthday": None,
            "birthday_calendar": "solar",
            "birthday_leap_month": False,
            "card_no": extra.pop("card_no", None),
            "card_type": "普通卡",
            "staff_code": extra.pop("staff_code", "E01"),
            "registered_at": at or (self.clock + dt.timedelta(minutes=1)).isoformat(),
            **extra,
        }
        return self._item("registration", body)

    def topup(self, member_id: str, principal: int, bonus: int | None = None) -> dict:
        """A cash top-up; the bonus is the rules' bonus unless given."""
        if bonus is None:
            bonus = DEMO_RULES.topup_bonus(principal)
        body = {
            "topup_id": uuid7(),
            "member_id": member_id,
            "principal": principal,
            "bonus": bonus,
            "tender": "cash",
            "cashier": "E01",
        }
        return self._item("topup", body)

    def sale(
        self,
        member_id: str | None,
        unit_price: int = 10000,
        *,
        stored_value: tuple[int, int] = (0, 0),
        points_used: int = 0,
        points_earned: int | None = None,
        offline: bool = False,
        authorization_id: str | None = None,
        sale_id: str | None = None,
        tamper_total: int = 0,
        rules_version: int = 1,
    ) -> dict:
        """A sale of one line, paid as the till pays it: stored value, then points (worth
        ``points_used`` under the rules), the rest cash; ``points_earned`` is the rules'
        figure unless given."""
        sale_id = sale_id or uuid7()
        line = {
            "sku": "6901234567890",
            "name": "洗发水",
            "qty": 1,
            "unit_price": unit_price,
            "promo_price": None,
            "line_discount": 0,
            "no_member_discount": True,
            "no_points": False,
        }
        member = (
            {"member_id": member_id, "card_type": "普通卡", "tier": None} if member_id else None
        )
        priced = price_basket(
            DEMO_RULES,
            [LineInput(**line)],
            MemberContext(**member) if member else None,
            1000,
            0,
            "none",
        )
        lines = [{k: getattr(pl, k) for k in pl.__dataclass_fields__} for pl in priced.lines]
        sv = stored_value[0] + stored_value[1]
        points_fen = fen_for_points(DEMO_RULES, points_used)
        cash = priced.total - sv - points_fen
        tenders = [
            {"kind": kind, "amount": amount}
            for kind, amount in (("cash", cash), ("stored_value", sv), ("points", points_fen))
            if amount
        ]
        if points_earned is None:
            base = priced.points_base
            if points_fen and priced.total:
                base -= points_fen * base // priced.total
            day = (self.clock + dt.timedelta(minutes=1)).date()
            points_earned = earned_points(DEMO_RULES, "普通卡", base, day) if member_id else 0
        body = {
            "sale_id": sale_id,
            "member_id": member_id,
            "card_no": None,
            "cashier": "E01",
            "pricing_input": {
                "lines": [line],
                "member": member,
                "order_discount_rate": 1000,
                "manual_adjustment": 0,
                "rounding": "none",
            },
            "lines": lines,
            "subtotal": priced.subtotal,
            "member_discount": priced.member_discount,
            "order_discount": priced.order_discount,
            "manual_adjustment": priced.manual_adjustment,
            "rounding": priced.rounding,
            "total": priced.total + tamper_total,
            "tenders": tenders,
            "change": 0,
            "stored_value": {"principal": stored_value[0], "bonus": stored_value[1]},
            "points_used": points_used,
            "points_lots_used": [],
            "points_earned": points_earned,
            "points_lot": {
                "lot_id": f"{sale_id}:earn",
                "earned_on": self.clock.date().isoformat(),
                "expires_on": (self.clock.date() + dt.timedelta(days=365)).isoformat(),
            }
            if points_earned
            else None,
            "offline": offline,
            "authorization_id": authorization_id,
        }
        return self._item("sale", body, rules_version=rules_version)

    def return_of(
        self,
        sale: dict,
        *,
        lines: list[dict] | None = None,
        refund_total: int | None = None,
        tenders: list[dict] | None = None,
        stored_value: tuple[int, int] | None = None,
        points_restored: int | None = None,
        points_reversed: int = 0,
        points_debt: int = 0,
    ) -> dict:
        """A return of ``sale`` (a sale body); by default all of it, as the till writes it."""
        if lines is None:
            lines = [
                {k: line[k] for k in ("line_no", "sku", "name", "qty", "amount")}
                for line in sale["lines"]
            ]
        sv = sale.get("stored_value") or {"principal": 0, "bonus": 0}
        body = {
            "return_id": uuid7(),
            "sale_id": sale["sale_id"],
            "member_id": sale.get("member_id"),
            "cashier": "E01",
            "approved_by": "M01",
            "lines": lines,
            "refund_total": sum(line["amount"] for line in lines)
            if refund_total is None
            else refund_total,
            "tenders": list(sale.get("tenders") or []) if tenders is None else tenders,
            "stored_value": {"principal": sv["principal"], "bonus": sv["bonus"]}
            if stored_value is None
            else {"principal": stored_value[0], "bonus": stored_value[1]},
            "points_restored": sale.get("points_used", 0)
            if points_restored is None
            else points_restored,
            "points_lots_restored": [],
            "points_reversed": points_reversed,
            "points_debt": points_debt,
        }
        return self._item("return", body)


# ---- the worker without a broker: the real dispatch, a message object, a recording client ----


class RecordingClient:
    """Stands in for the worker's paho client: keeps what HQ publishes, in order."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, Properties | None]] = []

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> None:
        self.published.append((topic, payload, properties))

    def on(self, topic: str) -> list[tuple[bytes, Properties | None]]:
        return [(payload, props) for t, payload, props in self.published if t == topic]


def message(topic: str, payload: bytes, props: Properties | None = None) -> mqtt.MQTTMessage:
    """A message as paho hands it to the worker's on_message."""
    msg = mqtt.MQTTMessage(mid=1, topic=topic.encode())
    msg.payload = payload
    msg.qos = 1
    msg.properties = props
    return msg


def auth_properties(store: str, correlation: bytes = b"c" * 16) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = p.down_topic(store, "auth")
    props.CorrelationData = correlation
    return props
