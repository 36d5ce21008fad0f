"""Six months of a demo chain's history, written through HQ's real ingest path.

``python -m hq.demo_history --database-url sqlite:///var/chain-demo/hq/hq.sqlite3``
(``make demo`` runs it after ``init-db`` and ``publish-rules``, before the stores start).

Six stores without a box, S003..S008 (``HISTORY_STORES``, areas 华东 and 华南), trade for
``DAYS`` business days ending yesterday (China time): members register over the months
(Chinese names, genders, birthdays, some of them lunar), come back at their own rhythm
(some once only, some lapse and some of those come back months later), buy baskets of
several lines and quantities, top up stored value and pay with it, pay part with points
(at home only, points HQ already holds), get a welcome coupon at the till (up kind
``coupon_issue``, template ``DEMO-WELCOME`` added at HQ) and use it within its 30 days
when a basket qualifies, sometimes shop at a sibling store of their area, and return a
few sales in full or in part; walk-in customers buy too. Every item is built as a till
builds it (the basket priced with ``core.pricing`` under the rules HQ holds, points by
``core.points``, stored value split by ``core.stored_value``) and goes through
``core.protocol.make_batch`` and ``hq.ingest.ingest_batch``, so every table and summary
the ingest maintains is filled as in production; a refused item stops the generator (it
is a bug here, not data to keep).

Why it cannot disturb the live stores: the live stores S001 and S002 (and any store that
has a box) own their sequence numbers and epochs, allocated on their boxes. History is
written only as stores that have no box: ``HISTORY_STORES`` are refused if any of them is
in ``live`` (the codes the demo runs boxes for), and the history stores' seqs start at 1 in
epoch 1 on a cursor no box ever advances. Members are new UUIDs with phones in ranges the
live stores' demo members do not use (153xxxxxxxx..158xxxxxxxx against 138/139), so no
same-phone merge touches a live store's member. Do not enrol a box as S003..S008 in a
demo directory that holds this history.

Deterministic and idempotent: the plan is a pure function of the seed and its first day;
every id is drawn from the seeded generator. The first day is ``DAYS`` before today on the
first run, and on any later run the day of the first history registration HQ holds, so
the same plan comes back; each store then sends only the seqs past HQ's cursor for it. A
finished history adds nothing; one interrupted half-way is completed. Before sending more
for a store, the plan's item at HQ's cursor must have the id HQ holds for that seq: a
history written with another seed or by another version of this module is left alone
(and said so), never extended with items of a different plan.

Measured (``make demo`` prints it): about 6,000 items (5,000+ sales) in 4-6 s on an idle
x86 core, 12 s on the same machine with its two cores shared by other jobs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import random
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import peewee as pw

from core import protocol as p
from core.coupons import CouponInput, CouponTemplate
from core.errors import ValidationError
from core.points import expiry_for, fen_for_points, points_for_fen, sale_points_earned
from core.pricing import LineInput, MemberContext, PricedBasket, price_basket, share_of
from core.rules import Rules
from core.stored_value import Split, refund_split, spend_split
from hq.ingest import ingest_batch, note_store_state
from hq.models import CouponTemplate as TemplateRow
from hq.models import (
    DeadLetter,
    Member,
    ProcessedItem,
    RulesVersion,
    Store,
    bind,
    open_database,
)
from hq.programme.coupons import add_template

TZ = dt.timezone(dt.timedelta(hours=8))  # the chain's business days
DAYS = 183
SEED = 20261
BATCH_ITEMS = 60  # a sale of five lines is ~3 KiB: 60 of them stay far below 256 KiB

# code, name, area
HISTORY_STORES: tuple[tuple[str, str, str], ...] = (
    ("S003", "会员示范店·上海徐汇", "华东"),
    ("S004", "会员示范店·杭州西湖", "华东"),
    ("S005", "会员示范店·南京新街口", "华东"),
    ("S006", "会员示范店·广州天河", "华南"),
    ("S007", "会员示范店·深圳南山", "华南"),
    ("S008", "会员示范店·厦门思明", "华南"),
)

# sku, name, price fen, promo fen, no member discount, no points, how often it sells,
# most one basket takes: the chain's catalogue (the live stores' demo products)
CATALOGUE: tuple[tuple[str, str, int, int | None, bool, bool, int, int], ...] = (
    ("P0001", "农夫山泉 550ml", 200, None, False, False, 30, 12),
    ("P0002", "蒙牛纯牛奶 250ml×12", 5990, 4990, False, False, 14, 2),
    ("P0003", "金龙鱼调和油 5L", 6990, None, False, False, 6, 1),
    ("P0004", "维达抽纸 3层×10包", 3290, 2790, False, False, 12, 3),
    ("P0005", "云南白药牙膏 180g", 3380, None, False, False, 9, 2),
    ("P0006", "999感冒灵颗粒 10袋", 1850, None, True, False, 8, 2),
    ("P0007", "板蓝根颗粒 20袋", 1500, None, True, False, 6, 2),
    ("P0008", "医用外科口罩 50只", 2500, 1990, False, True, 7, 2),
    ("P0009", "苹果 红富士 500g", 799, None, False, False, 16, 4),
    ("P0010", "五常大米 5kg", 8900, None, False, False, 5, 1),
    ("P0011", "雅诗兰黛小棕瓶 50ml", 89000, None, True, False, 1, 1),
    ("P0012", "百雀羚水乳套装", 29900, 25900, False, False, 2, 1),
    ("P0013", "汽车精洗服务", 8800, None, False, False, 3, 1),
    ("P0014", "玻璃水 2L", 1500, None, False, False, 4, 2),
    ("P0015", "购物袋 大号", 50, None, True, True, 20, 2),
)
_WEIGHTS = [c[6] for c in CATALOGUE]

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚邵"
)
GIVEN_F = "芳娜秀英敏静丽艳娟霞桂兰萍红玲芬燕雪琳婷慧颖欣怡雨桐思佳梦晨悦"
GIVEN_M = "伟强磊军洋勇杰涛明超刚华平辉鹏飞鑫宇浩然子轩俊博文斌建国志伟"
CARD_TYPES = (("普通卡", 60), ("银卡", 25), ("金卡", 15))
TOPUPS = (20000, 30000, 50000, 100000)  # fen; the demo rules give a bonus from ¥500
# the welcome coupon a new member gets at the till (up kind coupon_issue): ¥10 off ¥50
WELCOME = CouponTemplate(
    id="DEMO-WELCOME",
    name="新会员礼券 满50减10",
    kind="amount",
    amount=1000,
    min_spend=5000,
    valid_days=30,
    per_member_limit=1,
)


@dataclass
class Shopper:
    """A member as the generator follows them (what the till would hold)."""

    member_id: str
    store: str  # where they registered
    area: str
    card_type: str
    registered: dt.date
    interval: float  # mean days between visits
    until: dt.date  # the last day they still come
    sv: Split = field(default_factory=lambda: Split(0, 0))
    next_visit: dt.date | None = None
    coupon: tuple[str, dt.date] | None = None  # the welcome coupon's code and last day
    wake: dt.date | None = None  # the day a lapsed member comes back
    points: int = 0  # the balance, as HQ will hold it
    points_this_week: int = 0  # earned this week: HQ may not hold them yet when spent
    points_held_back: int = 0  # what returns already planned will take back


@dataclass
class Event:
    at: dt.datetime
    kind: str
    body: dict[str, Any]


@dataclass
class Summary:
    stores: int = 0
    days: int = 0
    first_day: dt.date | None = None
    items: int = 0  # sent this run
    sales: int = 0
    members: int = 0
    returns: int = 0
    topups: int = 0
    coupons: int = 0
    coupons_used: int = 0
    seconds: float = 0.0
    foreign: list[str] = field(default_factory=list)  # stores holding another plan's history
    counts: dict[str, int] = field(default_factory=dict)  # kind -> items in the whole plan

    def line(self) -> str:
        if self.foreign:
            return (
                f"history: stores {', '.join(self.foreign)} hold a history this version "
                f"of hq/demo_history.py did not write; left as it is, {self.items:,} items "
                f"added ({self.seconds:.1f} s; a new --dir starts afresh)"
            )
        if not self.items:
            return (
                f"history: already there ({self.counts.get('sale', 0):,} sales at "
                f"{self.stores} stores from {self.first_day}); nothing added "
                f"({self.seconds:.1f} s)"
            )
        return (
            f"history: {self.stores} stores, {self.days} days from {self.first_day}: "
            f"{self.sales:,} sales, {self.members:,} members, {self.topups:,} top-ups, "
            f"{self.coupons:,} welcome coupons ({self.coupons_used:,} used), "
            f"{self.returns:,} returns ({self.items:,} items) through HQ's ingest "
            f"in {self.seconds:.1f} s"
        )


class Plan:
    """Every store's items, day by day, from one seeded generator."""

    def __init__(self, rules: Rules, first_day: dt.date, days: int, seed: int) -> None:
        self.rules = rules
        self.first_day = first_day
        self.days = days
        self.rng = random.Random(seed)  # noqa: S311 - repeatable demo data, not secrets
        self.seq = {code: 0 for code, _, _ in HISTORY_STORES}
        self.members: dict[str, list[Shopper]] = {code: [] for code, _, _ in HISTORY_STORES}
        self.phones = {code: 0 for code, _, _ in HISTORY_STORES}
        # sales to return: (the day, the sale's body, its member)
        self.to_return: dict[str, list[tuple[dt.date, dict[str, Any], Shopper | None]]] = {
            code: [] for code, _, _ in HISTORY_STORES
        }
        self.counts: dict[str, int] = {}

    # ---- ids and envelopes ------------------------------------------------------------

    def uuid7(self, at: dt.datetime) -> str:
        """A UUIDv7 whose time is ``at`` and whose random bits come from the seed."""
        ms = int(at.timestamp() * 1000)
        rand = self.rng.getrandbits(74)
        value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | (rand >> 62) << 64 | 0b10 << 62
        value |= rand & (2**62 - 1)
        h = f"{value:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def item(self, store: str, event: Event) -> dict[str, Any]:
        self.seq[store] += 1
        self.counts[event.kind] = self.counts.get(event.kind, 0) + 1
        return p.UpItem(
            1,
            store,
            self.seq[store],
            self.uuid7(event.at),
            event.kind,
            event.at.isoformat(),
            self.rules.version,
            event.body,
        ).to_dict()

    # ---- the weeks --------------------------------------------------------------------

    def weeks(self) -> Iterable[dict[str, list[dict[str, Any]]]]:
        """Each week's items per store, in seq order; a member shops at a sibling store
        only once the week of their registration has been sent (HQ knows them by then)."""
        week: dict[str, list[dict[str, Any]]] = {code: [] for code, _, _ in HISTORY_STORES}
        week_start = self.first_day
        for n in range(self.days):
            day = self.first_day + dt.timedelta(days=n)
            if (day - week_start).days >= 7:
                yield week
                week = {code: [] for code, _, _ in HISTORY_STORES}
                week_start = day
                for shoppers in self.members.values():
                    for shopper in shoppers:
                        shopper.points_this_week = 0
            events: dict[str, list[Event]] = {code: [] for code, _, _ in HISTORY_STORES}
            for code, _, area in HISTORY_STORES:
                self.day_at(code, area, day, n, week_start, events)
            for code, _, _ in HISTORY_STORES:
                events[code].sort(key=lambda e: e.at)
                week[code] += [self.item(code, e) for e in events[code]]
        yield week

    def day_at(
        self,
        code: str,
        area: str,
        day: dt.date,
        n: int,
        week_start: dt.date,
        out: dict[str, list[Event]],
    ) -> None:
        """The day of ``code``'s customers: its events go to ``out`` under the store where
        they happen (a member of ``code`` may shop at a sibling store)."""
        rng = self.rng
        growth = 0.75 + 0.5 * n / max(1, self.days - 1)  # the chain grows over the months
        weekend = 1.45 if day.weekday() >= 5 else 1.0
        size = 0.8 + 0.1 * (int(code[1:]) % 4)  # some stores are busier
        events: list[Event] = []
        if n == 0 and code == HISTORY_STORES[0][0]:
            # the plan's first event: its day is how a later run finds the plan again
            opening = dt.datetime.combine(day, dt.time(9, 5), TZ)
            events += self.newcomer(code, area, day, opening)
        for _ in range(_poisson(rng, 0.5 * growth * weekend * size)):
            events += self.newcomer(code, area, day, self.when(day))
        for _ in range(_poisson(rng, 2.3 * growth * weekend * size)):
            events.append(self.sale(code, day, self.when(day), None))
        member_day = self.rules.is_member_day(day)
        for shopper in self.members[code]:
            if shopper.wake == day:  # a lapsed member comes back (唤醒): a while more
                shopper.until = day + dt.timedelta(days=round(rng.expovariate(1 / 60)))
                shopper.next_visit, shopper.wake = day, None
            if shopper.next_visit is None or shopper.until < day:
                continue
            soon = shopper.registered < day and shopper.next_visit <= day + dt.timedelta(days=7)
            if member_day and soon and rng.random() < 0.15:
                shopper.next_visit = day  # member day (会员日) brings some in sooner
            if shopper.next_visit > day:
                continue
            shopper.next_visit = day + dt.timedelta(
                days=max(1, round(rng.expovariate(1 / shopper.interval)))
            )
            where = code
            siblings = [c for c, _, a in HISTORY_STORES if a == area and c != code]
            if rng.random() < 0.06 and shopper.registered < week_start:
                where = rng.choice(siblings)
            out[where] += self.visit(where, shopper, day, home=where == code)
        events += self.returns_due(code, day)
        out[code] += events

    def when(self, day: dt.date) -> dt.datetime:
        """A moment the store is open (09:00-21:30), busier at noon and in the evening."""
        rng = self.rng
        hour = rng.choice(
            (9, 10, 10, 11, 11, 12, 12, 12, 13, 14, 15, 16, 17, 17, 18, 18, 19, 19, 20, 21)
        )
        minute = rng.randrange(30) if hour == 21 else rng.randrange(60)
        return dt.datetime.combine(day, dt.time(hour, minute, rng.randrange(60)), TZ)

    # ---- what happens -----------------------------------------------------------------

    def newcomer(self, code: str, area: str, day: dt.date, at: dt.datetime) -> list[Event]:
        """A customer registers at the till and buys (most do), as a new member."""
        rng = self.rng
        self.phones[code] += 1
        gender = rng.choice("FFFM")  # membership skews female
        given = GIVEN_F if gender == "F" else GIVEN_M
        name = rng.choice(SURNAMES) + "".join(rng.choice(given) for _ in range(rng.choice((1, 2))))
        age = min(75, max(18, round(rng.gauss(38, 12))))
        lunar = rng.random() < 0.2
        # a lunar date is written as the till writes it, YYYY-MM-DD of the lunar calendar
        birthday = (
            f"{day.year - age}-{rng.randint(1, 12):02d}-{rng.randint(1, 29 if lunar else 28):02d}"
        )
        card_type = _weighted(rng, CARD_TYPES)
        member_id = self.uuid7(at)
        staff = f"{code[1:]}{rng.randint(1, 4):02d}"  # 00301..00304: the store's staff
        number = self.phones[code]
        body = {
            "member_id": member_id,
            "name": name,
            "phone": f"15{int(code[1:])}{number:08d}",
            "gender": gender if rng.random() < 0.97 else "",
            "birthday": birthday if rng.random() < 0.85 else None,
            "birthday_calendar": "lunar" if lunar else "solar",
            "birthday_leap_month": False,
            "card_no": f"H{code[1:]}{number:05d}",
            "card_type": card_type,
            "staff_code": staff,
            "registered_at": at.isoformat(),
        }
        one_time = rng.random() < 0.25
        shopper = Shopper(
            member_id=member_id,
            store=code,
            area=area,
            card_type=card_type,
            registered=day,
            interval=rng.lognormvariate(math.log(15), 0.55),
            until=day + dt.timedelta(days=0 if one_time else round(rng.expovariate(1 / 150))),
        )
        shopper.next_visit = day + dt.timedelta(days=max(2, round(rng.expovariate(1 / 12))))
        if not one_time and rng.random() < 0.3:  # lapses, then comes back 2-4 months later
            shopper.wake = shopper.until + dt.timedelta(days=rng.randint(60, 120))
        self.members[code].append(shopper)
        events = [Event(at, "registration", body)]
        if rng.random() < 0.7:  # the till offers the welcome coupon
            valid_from, expires_on = WELCOME.issue_window(day)
            assert valid_from is not None and expires_on is not None  # noqa: S101 - valid_days
            coupon = f"W{code[1:]}{number:05d}"
            shopper.coupon = (coupon, expires_on)
            issue = {
                "code": coupon,
                "member_id": member_id,
                "template_id": WELCOME.id,
                "issued_at": at.isoformat(),
                "valid_from": valid_from.isoformat(),
                "expires_on": expires_on.isoformat(),
                "source": "till",
                "cashier": staff,
            }
            events.append(Event(at + dt.timedelta(seconds=30), "coupon_issue", issue))
        if rng.random() < 0.85:
            events.append(self.sale(code, day, at + dt.timedelta(minutes=2), shopper))
        return events

    def visit(self, code: str, shopper: Shopper, day: dt.date, home: bool) -> list[Event]:
        """A member's visit: sometimes a top-up first. Stored value moves only at the
        member's own store: the stores' weeks go to HQ one store after another, so a spend
        at a sibling store could reach HQ before that week's top-up at home."""
        rng = self.rng
        at = self.when(day)
        events = []
        if home and rng.random() < (0.08 if shopper.card_type != "普通卡" else 0.03):
            principal = rng.choice(TOPUPS)
            bonus = self.rules.topup_bonus(principal)
            shopper.sv = Split(shopper.sv.principal + principal, shopper.sv.bonus + bonus)
            body = {
                "topup_id": self.uuid7(at),
                "member_id": shopper.member_id,
                "principal": principal,
                "bonus": bonus,
                "tender": "cash",
                "cashier": f"{code[1:]}01",
            }
            events.append(Event(at, "topup", body))
            at += dt.timedelta(minutes=1)
        events.append(self.sale(code, day, at, shopper, pay_sv=home))
        return events

    def basket(self) -> list[dict[str, Any]]:
        rng = self.rng
        count = _weighted(rng, ((1, 30), (2, 28), (3, 20), (4, 13), (5, 9)))
        chosen: list[int] = []
        while len(chosen) < count:  # bounded: 15 products, at most 5 distinct
            k = rng.choices(range(len(CATALOGUE)), _WEIGHTS)[0]
            if k not in chosen:
                chosen.append(k)
        lines = []
        for k in chosen:
            sku, name, price, promo, no_md, no_pts, _, most = CATALOGUE[k]
            qty = 1 if most == 1 or rng.random() < 0.6 else rng.randint(2, most)
            lines.append(
                {
                    "sku": sku,
                    "name": name,
                    "qty": qty,
                    "unit_price": price,
                    "promo_price": promo,
                    "line_discount": 0,
                    "no_member_discount": no_md,
                    "no_points": no_pts,
                }
            )
        return lines

    def sale(
        self,
        code: str,
        day: dt.date,
        at: dt.datetime,
        shopper: Shopper | None,
        pay_sv: bool = True,
    ) -> Event:
        """A checkout as the till writes it (edge/services/sales.py): priced with the rules
        HQ holds, paid with stored value when the member has enough and chooses to, else
        cash; points earned by the rules of the day (member day doubles them)."""
        rng, rules = self.rng, self.rules
        lines = self.basket()
        member = (
            {"member_id": shopper.member_id, "card_type": shopper.card_type, "tier": None}
            if shopper
            else None
        )
        rounding = str(rules.rounding)
        priced = self.price(lines, member, shopper, day, at)
        sale_id = self.uuid7(at)
        sv = Split(0, 0)
        points_used = 0
        if shopper and pay_sv and shopper.sv.total >= priced.total > 0 and rng.random() < 0.75:
            sv = spend_split(shopper.sv, priced.total, rules.stored_value_spend)
            shopper.sv = Split(shopper.sv.principal - sv.principal, shopper.sv.bonus - sv.bonus)
        elif shopper and pay_sv and not priced.coupons and rng.random() < 0.12:
            # points pay part of it (积分抵现), in whole yuan, at most half the total, only
            # points HQ already holds and no return planned will take back
            spendable = shopper.points - shopper.points_this_week - shopper.points_held_back
            yuan = min(spendable * 100 // rules.points_per_yuan_redeemed, priced.total // 2) // 100
            if yuan >= 5:
                points_used = points_for_fen(rules, yuan * 100)
        points_fen = fen_for_points(rules, points_used)
        cash = priced.total - sv.total - points_fen
        tenders = [
            {"kind": kind, "amount": amount}
            for kind, amount in (
                ("cash", cash),
                ("stored_value", sv.total),
                ("points", points_fen),
            )
            if amount
        ]
        earned = (
            sale_points_earned(
                rules, shopper.card_type, priced.points_base, priced.total, points_fen, day
            )
            if shopper
            else 0
        )
        if shopper is not None:
            shopper.points += earned - points_used
            shopper.points_this_week += earned
        body: dict[str, Any] = {
            "sale_id": sale_id,
            "member_id": shopper.member_id if shopper else None,
            "card_no": None,
            "cashier": f"{code[1:]}0{rng.randint(1, 2)}",
            "approved_by": None,
            "pricing_input": {
                "lines": lines,
                "member": member,
                "order_discount_rate": 1000,
                "manual_adjustment": 0,
                "rounding": rounding,
            },
            "lines": [
                {
                    k: getattr(pl, k)
                    for k in pl.__dataclass_fields__
                    if k != "coupon_discount" or priced.coupons
                }
                for pl in priced.lines
            ],
            "subtotal": priced.subtotal,
            "line_discount": priced.line_discount,
            "member_discount": priced.member_discount,
            "order_discount": priced.order_discount,
            "manual_adjustment": priced.manual_adjustment,
            "rounding": priced.rounding,
            "total": priced.total,
            "tenders": tenders,
            "change": 0,
            "stored_value": {"principal": sv.principal, "bonus": sv.bonus},
            "points_used": points_used,
            "points_lots_used": [],
            "points_earned": earned,
            "points_lot": {
                "lot_id": f"{sale_id}:earn",
                "earned_on": day.isoformat(),
                "expires_on": expiry_for(rules, day).isoformat(),
            }
            if earned
            else None,
            "offline": False,
            "authorization_id": None,
        }
        if priced.coupons:  # as edge/services/coupons.py ``redeem_in_sale`` writes them
            body["coupon_discount"] = priced.coupon_discount
            body["coupons"] = [c.to_dict() for c in priced.coupons]
            body["pricing_input"]["coupons"] = [
                {"code": c.code, "template": WELCOME.to_dict()} for c in priced.coupons
            ]
        elif not points_used and rng.random() < 0.03 and priced.total > 0:  # on a later day
            if shopper is not None:
                shopper.points_held_back += earned
            self.to_return[code].append((day + dt.timedelta(days=rng.randint(1, 6)), body, shopper))
        return Event(at, "sale", body)

    def price(
        self,
        lines: list[dict[str, Any]],
        member: dict[str, Any] | None,
        shopper: Shopper | None,
        day: dt.date,
        at: dt.datetime,
    ) -> PricedBasket:
        """The basket priced as the till prices it; a member holding a welcome coupon still
        valid uses it when the basket qualifies (a coupon is used once: it is dropped)."""
        inputs = [LineInput(**line) for line in lines]
        context = MemberContext(**member) if member else None
        rounding = str(self.rules.rounding)
        if shopper is not None and shopper.coupon is not None:
            code, last_day = shopper.coupon
            if day > last_day:
                shopper.coupon = None
            elif day > shopper.registered:  # not on the day it was given
                try:
                    priced = price_basket(
                        self.rules,
                        inputs,
                        context,
                        1000,
                        0,
                        rounding,
                        (CouponInput(code, WELCOME),),
                        day=day,
                    )
                except ValidationError:  # the basket does not qualify: kept for later
                    pass
                else:
                    shopper.coupon = None
                    return priced
        return price_basket(self.rules, inputs, context, 1000, 0, rounding, day=day)

    def returns_due(self, code: str, day: dt.date) -> list[Event]:
        """Returns of sales picked at checkout, on their day: the whole sale, or one line
        of a sale of several (edge/services/sales.py ``return_sale`` writes the same)."""
        due = [entry for entry in self.to_return[code] if entry[0] == day]
        self.to_return[code] = [entry for entry in self.to_return[code] if entry[0] != day]
        events = []
        for _, sale, shopper in due:
            lines = sale["lines"]
            if len(lines) > 1 and self.rng.random() < 0.5:
                lines = [self.rng.choice(lines)]
            back = [
                {k: line[k] for k in ("line_no", "sku", "name", "qty", "amount")} for line in lines
            ]
            refund = sum(line["amount"] for line in lines)
            paid = {t["kind"]: t["amount"] for t in sale["tenders"]}
            sv_back = min(refund, paid.get("stored_value", 0))
            tenders = [
                {"kind": kind, "amount": amount}
                for kind, amount in (("cash", refund - sv_back), ("stored_value", sv_back))
                if amount
            ]
            spent = sale["stored_value"]
            split = (
                refund_split(
                    Split(spent["principal"], spent["bonus"]), sv_back, paid["stored_value"]
                )
                if sv_back
                else Split(0, 0)
            )
            if shopper is not None:
                shopper.sv = Split(
                    shopper.sv.principal + split.principal, shopper.sv.bonus + split.bonus
                )
            eligible = sum(line["amount"] for line in sale["lines"] if line["earns_points"])
            eligible_now = sum(line["amount"] for line in lines if line["earns_points"])
            earned = sale["points_earned"]
            reversed_points = share_of(earned, eligible_now, eligible) if earned and eligible else 0
            if shopper is not None:
                shopper.points -= reversed_points
                shopper.points_held_back -= earned
            at = self.when(day)
            body = {
                "return_id": self.uuid7(at),
                "sale_id": sale["sale_id"],
                "member_id": sale["member_id"],
                "cashier": sale["cashier"],
                "approved_by": f"{code[1:]}09",
                "lines": back,
                "refund_total": refund,
                "tenders": tenders,
                "stored_value": {"principal": split.principal, "bonus": split.bonus},
                "points_restored": 0,
                "points_lots_restored": [],
                "points_reversed": reversed_points,
                "points_debt": 0,
            }
            events.append(Event(at, "return", body))
        return events


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method; small means only (bounded by 50 draws)."""
    limit, k, prod = math.exp(-mean), 0, rng.random()
    while prod > limit and k < 50:
        k += 1
        prod *= rng.random()
    return k


def _weighted(rng: random.Random, choices: Iterable[tuple[Any, int]]) -> Any:
    values, weights = zip(*choices, strict=True)
    return rng.choices(values, weights)[0]


class HistoryRefused(RuntimeError):
    """HQ refused an item the generator built: a bug in the generator, never kept."""


def _utc(at: str) -> dt.datetime:
    return dt.datetime.fromisoformat(at).astimezone(dt.UTC).replace(tzinfo=None)


def rules_held() -> Rules:
    """The newest rules HQ holds: the history is priced with them, as a till prices with
    the rules in force."""
    row = RulesVersion.select().order_by(RulesVersion.version.desc()).first()
    if row is None:
        raise HistoryRefused(
            "HQ holds no rules: publish them first (huiyuan-hq publish-rules), or HQ cannot "
            "re-price the history's sales"
        )
    return Rules.from_dict(row.data)


def first_day_held() -> dt.date | None:
    """The plan's first day, from the first history registration HQ holds (None: none)."""
    codes = [code for code, _, _ in HISTORY_STORES]
    first = (
        Member.select(pw.fn.MIN(Member.registered_utc))
        .where(Member.registered_store.in_(codes))
        .scalar()
    )
    if first is None:
        return None
    if isinstance(first, str):  # SQLite hands an aggregate back as text
        first = dt.datetime.fromisoformat(first)
    return first.replace(tzinfo=dt.UTC).astimezone(TZ).date()


def welcome_template(db: pw.Database) -> None:
    """The welcome coupon's template, added at HQ as the chain would (once)."""
    if TemplateRow.get_or_none(TemplateRow.id == WELCOME.id) is None:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        add_template(db, WELCOME.to_dict(), by="demo-history", now=now)


def name_stores(db: pw.Database, stores: Iterable[tuple[str, str, str]]) -> None:
    """Each store's name and area (``huiyuan-hq store-area`` sets an area alone); a store
    not yet heard of gets its row, as the ingest makes it."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with db.atomic():
        for code, name, area in stores:
            Store.insert(code=code, created_at=now).on_conflict_ignore().execute()
            Store.update(name=name, area=area).where(Store.code == code).execute()


def generate(
    db: pw.Database,
    *,
    live: Iterable[tuple[str, str, str]] = (),
    seed: int = SEED,
    days: int = DAYS,
    today: dt.date | None = None,
) -> Summary:
    """Write the history through ``ingest_batch`` (what is already there is not sent
    again); name the history stores and the ``live`` ones (code, name, area)."""
    started = time.monotonic()
    live = list(live)
    codes = [code for code, _, _ in HISTORY_STORES]
    clash = sorted({code for code, _, _ in live} & set(codes))
    if clash:
        raise HistoryRefused(f"stores {clash} have a box: history is written only for others")
    rules = rules_held()
    welcome_template(db)
    today = today or dt.datetime.now(TZ).date()
    first_day = first_day_held() or today - dt.timedelta(days=days)
    plan = Plan(rules, first_day, days, seed)
    cursors = {}
    for code in codes:
        row = Store.get_or_none(Store.code == code)
        if row is not None and row.epoch != 1:
            raise HistoryRefused(f"store {code} is in epoch {row.epoch}: a box has used it")
        cursors[code] = row.acked_through if row else 0
    letters = DeadLetter.select().where(DeadLetter.store.in_(codes)).count()
    summary = Summary(stores=len(codes), days=days, first_day=first_day)
    kinds = {
        "sale": "sales",
        "registration": "members",
        "return": "returns",
        "topup": "topups",
        "coupon_issue": "coupons",
    }
    last_at: dict[str, str] = {}
    # HQ's last item of each store must be this plan's item at that seq; if not, the
    # history there was written by another seed or version of this module: leave it be
    held_ids = {
        code: ProcessedItem.select(ProcessedItem.item_id)
        .where(
            (ProcessedItem.store == code)
            & (ProcessedItem.epoch == 1)
            & (ProcessedItem.seq == cursors[code])
        )
        .scalar()
        for code in codes
        if cursors[code]
    }
    checked = {code for code in codes if not cursors[code]}
    for week in plan.weeks():
        for code in codes:
            if code not in checked:
                mine = [i for i in week[code] if i["seq"] == cursors[code]]
                if mine:
                    checked.add(code)
                    if mine[0]["id"] != held_ids[code]:
                        summary.foreign.append(code)
            if code in summary.foreign or code not in checked:
                continue
            items = [item for item in week[code] if item["seq"] > cursors[code]]
            for start in range(0, len(items), BATCH_ITEMS):
                chunk = items[start : start + BATCH_ITEMS]
                _send(db, code, chunk)
                cursors[code] = chunk[-1]["seq"]
                last_at[code] = chunk[-1]["occurred_at"]
                summary.items += len(chunk)
                for item in chunk:
                    name = kinds[item["kind"]]
                    setattr(summary, name, getattr(summary, name) + 1)
                    summary.coupons_used += bool(item["body"].get("coupons"))
    summary.counts = dict(plan.counts)
    summary.foreign = sorted({*summary.foreign, *(set(codes) - checked)})  # or more than it has
    if DeadLetter.select().where(DeadLetter.store.in_(codes)).count() != letters:
        raise HistoryRefused("HQ dead-lettered part of the history (huiyuan-hq dead-letters)")
    for code, at in last_at.items():  # the stores have no box: offline since their last day
        state = p.PeerState(False, at, 1).to_dict()
        note_store_state(db, code, p.encode_json(state), _utc(at) + dt.timedelta(minutes=5))
    name_stores(db, [*HISTORY_STORES, *live])
    summary.seconds = time.monotonic() - started
    return summary


def _send(db: pw.Database, code: str, items: list[dict[str, Any]]) -> None:
    """One batch through the ingest, received a few minutes after its last item."""
    payload = p.make_batch(code, 1, items)
    now = _utc(items[-1]["occurred_at"]) + dt.timedelta(minutes=3)
    outcome = ingest_batch(db, p.up_topic(code, "tx"), code, payload, now)
    ack = outcome.ack
    if ack is None or ack.rejected or ack.acked_through != items[-1]["seq"]:
        reasons = [f"seq {r.seq}: {r.code} {r.reason}" for r in (ack.rejected if ack else ())]
        raise HistoryRefused(
            f"HQ refused {code}'s history through seq {items[-1]['seq']} "
            f"(acked through {ack.acked_through if ack else None}): {reasons or outcome.dead_letter}"
        )


def _live_store(text: str) -> tuple[str, str, str]:
    parts = text.split(":")
    if len(parts) != 3 or not all(parts):
        raise argparse.ArgumentTypeError(f"--live wants CODE:NAME:AREA, got {text!r}")
    return parts[0], parts[1], parts[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write a demo chain's history (stores S003-S008) through HQ's ingest"
    )
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument(
        "--live",
        type=_live_store,
        action="append",
        default=[],
        help="CODE:NAME:AREA of a store with a box (named, never written to); repeatable",
    )
    args = parser.parse_args(argv)
    if not 7 <= args.days <= 800:
        parser.error("--days must be 7-800")
    db = bind(open_database(args.database_url), create=False)
    try:
        summary = generate(db, live=args.live, seed=args.seed, days=args.days)
    except HistoryRefused as exc:
        print(f"demo history: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()
    print(summary.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
