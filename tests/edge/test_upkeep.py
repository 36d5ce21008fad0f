"""Member upkeep at the till (docs/programme/upkeep.md): registration with the richer
profile and a referrer, unknown fields refused, profile edits, the payment password, the
stored value refund (online only, a manager's) and the statement."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import pytest

from core.protocol import Change, validate_item
from core.receipt import Receipt
from edge.devices.profiles import ProfileLibrary
from edge.devices.receipt_render import RenderOptions, layout_receipt, render
from edge.models import Ledger, Member, Outbox, Setting, SvRefund
from edge.services.context import SpendDecision, SpendRequest
from edge.sync.apply import Applier
from tests.edge.conftest import sign_in

MANAGER = {"code": "9001", "pin": "9999"}


@dataclass
class FakeHq:
    """HQ answering authorizations: approves a refund with the split it is given."""

    online: bool = True
    approved: bool = True
    split: dict[str, int] | None = None
    reason: str = ""
    asked: list[SpendRequest] = field(default_factory=list)

    def authorize(self, request: SpendRequest) -> SpendDecision:
        self.asked.append(request)
        if not self.online:
            return SpendDecision(online=False, reason="HQ did not answer within 1.5s")
        return SpendDecision(
            online=True,
            approved=self.approved,
            authorization_id="0192f0c4-0000-7000-8000-0000000000cc" if self.approved else None,
            reason=self.reason,
            stored_value_split=self.split,
        )


def items(kind: str) -> list[dict]:
    rows = Outbox.select().where(Outbox.kind == kind).order_by(Outbox.seq)
    out = []
    for row in rows:
        item = json.loads(row.payload)
        validate_item(item)  # what HQ will accept
        out.append(item)
    return out


def member_id(name: str) -> str:
    return Member.get(Member.name == name).id


def register(client, headers, **body):
    return client.post("/api/v1/members", headers=headers, json={"name": "王五", **body})


# ---- registration ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"nickname": "小王"}, "nickname"),
        ({"wechat": "wx1", "email": "a@b.c"}, "email"),
        ({"password_hash": "x"}, "password_hash"),
        ({"referred_by": "C0001"}, "referred_by"),
    ],
)
def test_registration_refuses_unknown_fields_naming_them(client, cashier, extra, named):
    res = register(client, cashier, phone="13900000101", **extra)
    assert res.status_code == 400, res.json
    assert res.json["field"] == sorted(extra)[0]
    assert named in res.json["message"]
    assert all(i["body"]["name"] != "王五" for i in items("registration"))


def test_registration_keeps_the_richer_profile(client, cashier):
    profile = {
        "occupation": "教师",
        "preferences": ["绿茶", "低糖"],
        "anniversaries": [
            {"name": "结婚纪念日", "date": "2015-10-01", "calendar": "solar"},
            {"name": "母亲生日", "date": "2023-02-10", "calendar": "lunar", "leap_month": True},
        ],
        "notes": "周末来",
        "tags": ["VIP", "投诉"],
    }
    res = register(client, cashier, phone="13900000102", gender="F", **profile)
    assert res.status_code == 201, res.json
    mid = res.json["member"]["member_id"]
    shown = client.get(f"/api/v1/members/{mid}/profile", headers=cashier).json["member"]
    assert {k: shown[k] for k in profile} == profile
    assert shown["at_risk"] == ["投诉"]
    assert shown["profile_score"] == 82  # 70 of 85: no birthday
    body = items("registration")[-1]["body"]
    assert {k: body[k] for k in profile} == profile
    assert "profile_score" not in body  # HQ computes its own


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"anniversaries": [{"name": "结婚", "date": "2015-02-30"}]}, "anniversaries[0].date"),
        ({"tags": "投诉"}, "tags"),
        ({"occupation": "x" * 65}, "occupation"),
        ({"preferences": ["x"] * 21}, "preferences"),
        ({"extra": {"car": "SUV"}}, "extra"),  # the rules declare no field
        ({"referrer": ""}, "referrer"),
    ],
)
def test_registration_profile_checked(client, cashier, extra, field):
    res = register(client, cashier, phone="13900000103", **extra)
    assert res.status_code == 400, res.json
    assert res.json["field"] == field


def _rules_with_fields(till) -> None:
    doc = till.rules().to_dict() | {
        "version": 7,
        "schema": 2,
        "profile_fields": [
            {"name": "car", "label": "车型", "type": "choice", "choices": ["SUV", "轿车"]},
            {"name": "plate", "label": "车牌", "type": "text", "required": True},
        ],
    }
    with till.db.atomic():
        Setting.insert(key="rules", value=doc).on_conflict_replace().execute()


@pytest.mark.parametrize(
    ("extra", "status", "field"),
    [
        ({"car": "SUV", "plate": "沪A1"}, 201, None),
        ({"car": "卡车", "plate": "沪A1"}, 400, "extra.car"),
        ({"car": "SUV"}, 400, "extra.plate"),
        ({"plate": "沪A1", "colour": "红"}, 400, "extra"),
    ],
)
def test_registration_extra_fields_from_the_rules(client, cashier, demo_till, extra, status, field):
    _rules_with_fields(demo_till)
    res = register(client, cashier, phone="13900000104", extra=extra)
    assert res.status_code == status, res.json
    if field:
        assert res.json["field"] == field
    else:
        assert items("registration")[-1]["body"]["extra"] == extra


@pytest.mark.parametrize("how", ["card", "phone", "member_id"])
def test_registration_names_who_brought_the_member(client, cashier, how):
    zhang = member_id("张三")
    referrer = {"card": "C0001", "phone": "13800000001", "member_id": zhang}[how]
    res = register(client, cashier, phone="13900000105", referrer=referrer)
    assert res.status_code == 201, res.json
    shown = client.get(
        f"/api/v1/members/{res.json['member']['member_id']}/profile", headers=cashier
    ).json["member"]
    assert shown["referred_by"] == zhang
    assert items("registration")[-1]["body"]["referred_by"] == zhang


@pytest.mark.parametrize(
    "referrer", ["C9999", "13999999999", "0192f0c4-0000-7000-8000-000000000009"]
)
def test_unknown_referrer_is_a_clear_error(client, cashier, referrer):
    before = Member.select().count()
    res = register(client, cashier, phone="13900000106", referrer=referrer)
    assert res.status_code == 400, res.json
    assert res.json["field"] == "referrer"
    assert "推荐人" in res.json["message"]
    assert Member.select().count() == before


# ---- editing the profile ---------------------------------------------------------------


def test_edit_sends_only_what_changed_and_updates_the_pinyin_keys(client, cashier):
    zhang = member_id("张三")
    res = client.patch(
        f"/api/v1/members/{zhang}",
        headers=cashier,
        json={"name": "章珊", "gender": "", "occupation": "医生", "tags": ["退款"]},
    )
    assert res.status_code == 200, res.json
    assert res.json["changed"] == ["name", "occupation", "tags"]  # gender was "" already
    assert res.json["member"]["at_risk"] == ["退款"]
    found = client.get("/api/v1/members?q=zhangshan", headers=cashier).json["members"]
    assert [m["name"] for m in found] == ["章珊"]
    (item,) = items("member_update")
    assert item["body"]["changes"] == {"name": "章珊", "occupation": "医生", "tags": ["退款"]}
    assert item["body"]["changed_at"] == res.json["changed_at"]
    # the same again changes nothing and sends nothing
    again = client.put(f"/api/v1/members/{zhang}", headers=cashier, json={"occupation": "医生"})
    assert again.status_code == 200
    assert again.json["changed"] == [] and again.json["seq"] is None
    assert len(items("member_update")) == 1


def test_edit_birthday_as_one_field(client, cashier):
    li = member_id("李四")
    res = client.patch(
        f"/api/v1/members/{li}",
        headers=cashier,
        json={"birthday": "2023-02-10", "birthday_calendar": "lunar", "birthday_leap_month": True},
    )
    assert res.status_code == 200, res.json
    assert items("member_update")[-1]["body"]["changes"] == {
        "birthday": {"date": "2023-02-10", "calendar": "lunar", "leap_month": True}
    }


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        ({"phone": "13900000999"}, 400, "phone", "总部"),
        ({"card_type": "金卡"}, 400, "card_type", "card_type"),
        ({"password_hash": "x"}, 400, "password_hash", "password_hash"),
        ({}, 400, "body", "至少"),
        ({"name": ""}, 400, "name", "姓名"),
        ({"gender": "X"}, 400, "gender", "性别"),
        ({"birthday": "02-30"}, 400, "birthday", "没有这一天"),
        ({"tags": ["x"] * 21}, 400, "tags", "20"),
    ],
)
def test_bad_edits_refused(client, cashier, body, status, field, words):
    res = client.patch(f"/api/v1/members/{member_id('张三')}", headers=cashier, json=body)
    assert res.status_code == status, res.json
    assert res.json["field"] == field
    assert words in res.json["message"]
    assert items("member_update") == []


def test_edit_unknown_member_404(client, cashier):
    res = client.patch("/api/v1/members/nobody", headers=cashier, json={"notes": "x"})
    assert res.status_code == 404


# ---- the payment password ---------------------------------------------------------------


def _pay_with_stored_value(client, headers, card, password=None):
    body = {
        "member": {"card_no": card},
        "lines": [{"sku": "P0002", "qty": 1}],
        "tenders": [{"kind": "stored_value", "amount": 1}],
    }
    quote = client.post("/api/v1/sales/quote", headers=headers, json=body).json
    body["tenders"] = [{"kind": "stored_value", "amount": quote["total"]}]
    if password:
        body["member_password"] = password
    return client.post("/api/v1/sales", headers=headers, json=body)


def test_a_member_topped_up_without_a_password_sets_one_and_spends(client, cashier):
    li = member_id("李四")
    top = client.post(
        "/api/v1/topups", headers=cashier, json={"member": {"card_no": "C0002"}, "amount": 10000}
    )
    assert top.status_code == 201, top.json
    assert _pay_with_stored_value(client, cashier, "C0002").json["field"] == "member_password"
    res = client.post(
        f"/api/v1/members/{li}/password", headers=cashier, json={"password": "246810"}
    )
    assert res.status_code == 201, res.json
    paid = _pay_with_stored_value(client, cashier, "C0002", "246810")
    assert paid.status_code == 201, paid.json
    # a second "set" is refused: the old password or a manager is needed
    again = client.post(
        f"/api/v1/members/{li}/password", headers=cashier, json={"password": "111111"}
    )
    assert again.status_code == 409
    (item,) = items("member_password")
    assert item["body"]["action"] == "set"
    assert item["body"]["password_hash"].startswith("scrypt$")
    assert "246810" not in Outbox.get(Outbox.kind == "member_password").payload


def test_change_needs_the_old_password(client, cashier):
    zhang = member_id("张三")
    url = f"/api/v1/members/{zhang}/password"
    _top_up(client, cashier)
    wrong = client.put(url, headers=cashier, json={"old_password": "000000", "password": "654321"})
    assert wrong.status_code == 403 and wrong.json["field"] == "old_password"
    missing = client.put(url, headers=cashier, json={"password": "654321"})
    assert missing.status_code == 400 and missing.json["field"] == "old_password"
    ok = client.put(url, headers=cashier, json={"old_password": "123456", "password": "654321"})
    assert ok.status_code == 200, ok.json
    assert _pay_with_stored_value(client, cashier, "C0001", "123456").status_code == 403
    assert _pay_with_stored_value(client, cashier, "C0001", "654321").status_code == 201
    assert [i["body"]["action"] for i in items("member_password")] == ["change"]


def test_reset_is_a_managers_action(client, cashier, manager):
    zhang = member_id("张三")
    url = f"/api/v1/members/{zhang}/password/reset"
    _top_up(client, cashier)
    refused = client.post(url, headers=cashier, json={"password": "777777"})
    assert refused.status_code == 403 and refused.json["field"] == "manager"
    ok = client.post(url, headers=cashier, json={"password": "777777", "manager": MANAGER})
    assert ok.status_code == 200, ok.json
    by_manager = client.post(url, headers=manager, json={"password": "888888"})
    assert by_manager.status_code == 200
    bodies = [i["body"] for i in items("member_password")]
    assert [(b["action"], b["approved_by"]) for b in bodies] == [("reset", "9001")] * 2
    assert _pay_with_stored_value(client, cashier, "C0001", "888888").status_code == 201


@pytest.mark.parametrize("password", ["12345", "123456789", "abcdef", 123456, None])
def test_bad_passwords_refused(client, cashier, password):
    res = client.post(
        f"/api/v1/members/{member_id('李四')}/password",
        headers=cashier,
        json={"password": password},
    )
    assert res.status_code == 400 and res.json["field"] == "password"


# ---- stored value refund ------------------------------------------------------------------


def _top_up(client, headers, card="C0001", amount=50000):
    res = client.post(
        "/api/v1/topups", headers=headers, json={"member": {"card_no": card}, "amount": amount}
    )
    assert res.status_code == 201, res.json
    return res.json


def _refund(client, headers, mid, **body):
    return client.post(f"/api/v1/members/{mid}/stored-value/refunds", headers=headers, json=body)


def test_refund_offline_is_refused_in_chinese(client, cashier, manager):
    zhang = member_id("张三")
    _top_up(client, cashier)
    res = _refund(client, manager, zhang, amount=10000, reason="搬家")
    assert res.status_code == 403, res.json
    assert "总部在线授权" in res.json["message"]
    assert items("sv_refund") == [] and SvRefund.select().count() == 0


def test_refund_needs_a_manager(client, cashier, demo_till):
    demo_till.authorizer = FakeHq(split={"principal": 10000, "bonus": 10000})
    zhang = member_id("张三")
    _top_up(client, cashier)
    res = _refund(client, cashier, zhang, amount=10000, reason="搬家")
    assert res.status_code == 403 and res.json["field"] == "manager"
    assert demo_till.authorizer.asked == []


def test_refund_writes_ledger_one_item_and_a_slip(client, cashier, demo_till):
    zhang = member_id("张三")
    top = _top_up(client, cashier)  # 50,000 + 10,000 bonus under the demo rules
    before = Member.get_by_id(zhang)
    hq = demo_till.authorizer = FakeHq(split={"principal": 20000, "bonus": 10000})
    res = _refund(
        client,
        cashier,
        zhang,
        amount=20000,
        reason="搬家",
        manager=MANAGER,
        refund_id="0192f0c4-0000-7000-8000-0000000000dd",
    )
    assert res.status_code == 201, res.json
    assert (res.json["cash"], res.json["bonus_forfeited"]) == (20000, 10000)
    assert hq.asked[0].action == "refund" and hq.asked[0].stored_value == 20000
    after = Member.get_by_id(zhang)
    assert after.sv_principal == before.sv_principal - 20000
    assert (
        after.sv_bonus
        == before.sv_bonus - 10000
        == top["bonus"] - 10000 + (before.sv_bonus - top["bonus"])
    )
    rows = Ledger.select().where((Ledger.reason == "sv_refund") & (Ledger.member_id == zhang))
    assert sorted((r.account, r.delta) for r in rows) == [
        ("sv_bonus", -10000),
        ("sv_principal", -20000),
    ]
    (item,) = items("sv_refund")
    assert item["body"] == {
        "refund_id": "0192f0c4-0000-7000-8000-0000000000dd",
        "member_id": zhang,
        "principal": 20000,
        "bonus": 10000,
        "tender": "cash",
        "authorization_id": "0192f0c4-0000-7000-8000-0000000000cc",
        "cashier": "1001",
        "approved_by": "9001",
        "reason": "搬家",
    }
    assert res.json["receipt"]["title"] == "储值退款凭证" and res.json["receipt"]["total"] == 20000
    slip = render(
        layout_receipt(Receipt.from_dict(res.json["receipt"]), 32),
        ProfileLibrary().load("xprinter_xp58iih"),
        RenderOptions(open_drawer=True),
    )
    assert "储值退款凭证".encode("gb18030") in slip and "赠送金额作废".encode("gb18030") in slip
    # a retry gets the same refund back, and pays nothing twice
    again = _refund(
        client,
        cashier,
        zhang,
        amount=20000,
        reason="搬家",
        manager=MANAGER,
        refund_id="0192f0c4-0000-7000-8000-0000000000dd",
    )
    assert again.status_code == 200 and again.json["replayed"] is True
    assert len(items("sv_refund")) == 1 and len(hq.asked) == 1
    reused = _refund(
        client,
        cashier,
        zhang,
        amount=100,
        reason="搬家",
        manager=MANAGER,
        refund_id="0192f0c4-0000-7000-8000-0000000000dd",
    )
    assert reused.status_code == 409


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"amount": 10**9, "reason": "x"}, 422, "amount"),  # more than the principal
        ({"amount": 0, "reason": "x"}, 400, "amount"),
        ({"amount": "100", "reason": "x"}, 400, "amount"),
        ({"amount": 100}, 400, "reason"),
        ({"amount": 100, "reason": "x", "refund_id": "r1"}, 400, "refund_id"),
        ({"amount": 100, "reason": "x", "cash": 100}, 400, "cash"),
    ],
)
def test_bad_refunds_refused(client, manager, demo_till, body, status, field):
    demo_till.authorizer = FakeHq(split={"principal": 100, "bonus": 0})
    _top_up(client, manager)
    res = _refund(client, manager, member_id("张三"), **body)
    assert res.status_code == status, res.json
    assert res.json["field"] == field
    assert items("sv_refund") == []


def test_refund_declined_by_hq(client, manager, demo_till):
    demo_till.authorizer = FakeHq(approved=False, reason="可退本金不足")
    _top_up(client, manager)
    res = _refund(client, manager, member_id("张三"), amount=100, reason="x")
    assert res.status_code == 422 and "可退本金不足" in res.json["message"]
    assert items("sv_refund") == []


# ---- the statement --------------------------------------------------------------------------


def test_statement_adds_up(client, cashier, manager, demo_till, clock):
    zhang = member_id("张三")
    start = client.get(f"/api/v1/members/{zhang}/stored-value/statement", headers=cashier).json
    _top_up(client, cashier)
    clock.advance(days=1)
    cashier = sign_in(client)  # a day later: a new shift
    assert _pay_with_stored_value(client, cashier, "C0001", "123456").status_code == 201
    clock.advance(days=1)
    manager = sign_in(client, "9001", "9999")
    demo_till.authorizer = FakeHq(split={"principal": 1000, "bonus": 10000})
    assert _refund(client, manager, zhang, amount=1000, reason="x").status_code == 201
    whole = client.get(f"/api/v1/members/{zhang}/stored-value/statement", headers=manager).json
    assert whole["closing"] == whole["balance"]
    assert [m["reason"] for m in whole["movements"][-3:]] == ["topup", "sale", "sv_refund"]
    assert whole["movements"][-1] | {} == whole["movements"][-1] | {
        "principal": -1000,
        "bonus": -10000,
    }
    for m in whole["movements"]:
        assert m["store"] == demo_till.store
    day2 = clock.now.date() - dt.timedelta(days=1)
    one_day = client.get(
        f"/api/v1/members/{zhang}/stored-value/statement?from={day2}&to={day2}", headers=manager
    ).json
    assert [m["reason"] for m in one_day["movements"]] == ["sale"]
    assert one_day["opening"]["total"] == start["closing"]["total"] + 60000
    moved = sum(m["principal"] + m["bonus"] for m in one_day["movements"])
    assert one_day["closing"]["total"] == one_day["opening"]["total"] + moved


@pytest.mark.parametrize(
    ("query", "field"),
    [("from=2026-13-01", "from"), ("to=x", "to"), ("from=2026-11-02&to=2026-11-01", "from")],
)
def test_statement_bad_dates(client, cashier, query, field):
    res = client.get(
        f"/api/v1/members/{member_id('张三')}/stored-value/statement?{query}", headers=cashier
    )
    assert res.status_code == 400 and res.json["field"] == field


# ---- HQ's record of the member does not undo what is pending here -------------------------


def _hq_record(till, mid: str, through: int, **fields) -> None:
    m = Member.get_by_id(mid)
    data = {
        "member_id": mid,
        "name": m.name,
        "phone_hash": m.phone_hash,
        "phone_last4": m.phone_tail,
        "gender": m.gender,
        "card_type": m.card_type,
        "password_hash": m.password_hash,
        "registered_at": m.registered_at,
        "registered_store": m.registered_store,
        "status": "active",
        "stored_value": {"principal": m.sv_principal, "bonus": m.sv_bonus},
        "points": 0,
        "points_lots": [],
        "through": {till.store: through},
    } | fields
    applier = Applier(till.store, till.keys, till.now().isoformat())
    with till.db.atomic():
        applier.apply_changes([Change(1, "member", mid, "upsert", data)])


def test_pending_edit_and_password_survive_hqs_older_record(client, cashier, demo_till):
    zhang = member_id("张三")
    client.patch(f"/api/v1/members/{zhang}", headers=cashier, json={"notes": "新备注"})
    client.put(
        f"/api/v1/members/{zhang}/password",
        headers=cashier,
        json={"old_password": "123456", "password": "654321"},
    )
    old_hash = "scrypt$16384$8$1$c2FsdHNhbHQ=$ZGlnZXN0ZGlnZXN0"
    _hq_record(demo_till, zhang, through=0, notes="", password_hash=old_hash)
    m = Member.get_by_id(zhang)
    assert m.notes == "新备注"
    assert m.password_hash != old_hash
    _top_up(client, cashier)
    assert _pay_with_stored_value(client, cashier, "C0001", "654321").status_code == 201
    # once HQ has applied them, its record is the truth
    last = Outbox.select().order_by(Outbox.seq.desc()).get().seq
    _hq_record(demo_till, zhang, through=last, notes="总部改的", password_hash=old_hash)
    m = Member.get_by_id(zhang)
    assert (m.notes, m.password_hash) == ("总部改的", old_hash)


def test_password_reset_at_hq_clears_it_here(demo_till):
    zhang = member_id("张三")
    assert Member.get_by_id(zhang).password_hash
    last = Outbox.select().order_by(Outbox.seq.desc()).get().seq
    _hq_record(demo_till, zhang, through=last, password_hash=None)
    assert Member.get_by_id(zhang).password_hash is None


def test_refund_pending_is_replayed_over_hqs_balance(client, manager, demo_till):
    zhang = member_id("张三")
    _top_up(client, manager)
    acked = Outbox.select().order_by(Outbox.seq.desc()).get().seq
    m = Member.get_by_id(zhang)
    hq_balance = {"principal": m.sv_principal, "bonus": m.sv_bonus}
    demo_till.authorizer = FakeHq(split={"principal": 5000, "bonus": 10000})
    assert _refund(client, manager, zhang, amount=5000, reason="x").status_code == 201
    _hq_record(demo_till, zhang, through=acked, stored_value=hq_balance)
    m = Member.get_by_id(zhang)
    assert (m.sv_principal, m.sv_bonus) == (
        hq_balance["principal"] - 5000,
        hq_balance["bonus"] - 10000,
    )


def test_an_erased_member_loses_the_richer_profile_here(client, cashier, demo_till):
    from edge.sync.erase import erase_local_copies

    zhang = member_id("张三")
    res = client.patch(
        f"/api/v1/members/{zhang}", headers=cashier, json={"notes": "住在附近", "tags": ["VIP"]}
    )
    assert res.status_code == 200
    Outbox.update(acked=True).execute()  # HQ has it
    with demo_till.db.atomic():
        erase_local_copies(zhang)
    m = Member.get_by_id(zhang)
    assert (m.notes, m.tags, m.occupation) == ("", None, "")
    assert "住在附近" not in Outbox.get(Outbox.kind == "member_update").payload


def test_the_cashier_screen_sets_changes_and_resets_the_password_through_the_api(client):
    res = client.get("/")
    page = res.get_data(as_text=True)
    res.close()
    assert 'id="member-password"' in page
    res = client.get("/static/till/member.js")
    module = res.get_data(as_text=True)
    res.close()
    for call in ("'/password'", "'/reset'", "old_password", "withManager("):
        assert call in module
