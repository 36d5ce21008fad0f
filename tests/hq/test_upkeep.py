"""Member upkeep at HQ (docs/programme/upkeep.md), on SQLite and PostgreSQL: stored value
refunds authorized and settled, clearing, the statement, profile edits from tills and at
HQ (newest change wins), passwords, the richer profile at registration and referral
points. After every money movement HQ's balances equal its ledger (check_hq_ledger)."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner

from core import protocol as p
from core.errors import Conflict, ValidationError
from core.ids import uuid7
from core.protocol import AuthRequest
from core.rules import DEMO_RULES
from hq.auth import authorize_spend
from hq.cli import main
from hq.ledger import ledger_sums
from hq.models import (
    AuditEntry,
    Authorization,
    ChangeRecord,
    HqException,
    LedgerEntry,
    Member,
    PhoneKey,
    PointsLot,
)
from hq.programme import upkeep
from hq.reconcile import check_hq_ledger
from hq.rules import publish_rules
from tests.hq.edge_sim import Items
from tests.hq.test_money_checks import NOW, ingest, refused

HASH = p.SCRYPT_PREFIX + "c2FsdHNhbHQ=$ZGlnZXN0ZGlnZXN0"
HASH2 = p.SCRYPT_PREFIX + "b3RoZXJzYWx0$b3RoZXJkaWdlc3Q="
NAIVE_NOW = NOW.replace(tzinfo=None)


def _phone() -> str:
    return f"139{int(uuid7()[-8:], 16) % 10**8:08d}"


def balances(member_id: str) -> tuple[int, int, int]:
    m = Member.get_by_id(member_id)
    sums = ledger_sums(member_id)
    assert (m.sv_principal, m.sv_bonus, m.points) == (
        sums["principal"],
        sums["bonus"],
        sums["points"],
    )
    return m.sv_principal, m.sv_bonus, m.points


def ledger_clean(db) -> None:
    """hq/reconcile.py's own check (the hq-ledger-check job) finds nothing."""
    assert check_hq_ledger(db, NAIVE_NOW, force=True) == []


def member_with_money(store: str, items: Items, **registration) -> str:
    """¥600 of stored value: 50,000 principal + 10,000 bonus (the demo rules)."""
    mid = uuid7()
    ack = ingest(
        store, [items.registration(mid, _phone(), **registration), items.topup(mid, 50000)]
    )
    assert ack.rejected == ()
    return mid


def rules_with(db, **later) -> None:
    """The demo rules (version 1, which the items name) with the upkeep settings given."""
    publish_rules(db, DEMO_RULES.to_dict() | {"schema": 2} | later)


def refund_auth(store: str, mid: str, amount: int, refund_id: str | None = None) -> p.AuthResponse:
    req = AuthRequest(store, refund_id or uuid7(), mid, "refund", amount)
    response, _ = authorize_spend(Authorization._meta.database, req, NOW.replace(tzinfo=None))
    return response


def refund_item(items: Items, mid: str, auth: p.AuthResponse, **change) -> dict:
    body = {
        "refund_id": auth.sale_id,
        "member_id": mid,
        "principal": auth.stored_value_split["principal"],
        "bonus": auth.stored_value_split["bonus"],
        "tender": "cash",
        "authorization_id": auth.authorization_id,
        "cashier": "E01",
        "approved_by": "M01",
        "reason": "搬家",
    } | change
    return items._item("sv_refund", body)


# ---- stored value refund ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("terms", "amount", "forfeit"),
    [
        ("all", 20000, 10000),
        ("all", 50000, 10000),
        ("proportional", 25000, 5000),
        ("proportional", 50000, 10000),
        ("proportional", 1, 1),  # bonus kept: 10000 × 49999 ÷ 50000 rounded down = 9999
    ],
)
def test_refund_is_authorized_then_posted(hq_db, store_code, terms, amount, forfeit):
    rules_with(hq_db, sv_refund_bonus=terms)
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    auth = refund_auth(store_code, mid, amount)
    assert auth.approved, auth
    assert auth.stored_value_split == {"principal": amount, "bonus": forfeit}
    ack = ingest(store_code, [refund_item(items, mid, auth)])
    assert ack.rejected == ()
    assert balances(mid) == (50000 - amount, 10000 - forfeit, 0)
    rows = LedgerEntry.select().where(LedgerEntry.reason == "sv_refund")
    assert [(r.principal, r.bonus, r.ref) for r in rows] == [(-amount, -forfeit, auth.sale_id)]
    assert Authorization.get(Authorization.sale_id == auth.sale_id).status == "settled"
    audit = AuditEntry.get(AuditEntry.action == "stored_value.refund")
    assert (audit.target, audit.reason, audit.actor) == (
        mid,
        "搬家",
        f"store:{store_code}/staff:E01",
    )
    assert audit.details["approved_by"] == "M01"
    ledger_clean(hq_db)


def test_refund_beyond_unspent_principal_is_declined(hq_db, store_code):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    assert not refund_auth(store_code, mid, 50001).approved
    # a sale holding 30,000 of principal leaves 20,000 to refund
    sale = AuthRequest(store_code, uuid7(), mid, "hold", stored_value=36000)
    held, _ = authorize_spend(hq_db, sale, NAIVE_NOW)
    assert held.approved and held.stored_value_split == {"principal": 30000, "bonus": 6000}
    declined = refund_auth(store_code, mid, 20001)
    assert declined.status == "declined" and "本金" in declined.reason
    assert refund_auth(store_code, mid, 20000).approved
    # the same refund id again gets the same answer, never a second hold
    rid = uuid7()
    first = refund_auth(store_code, mid, 0 + 1, rid)
    assert refund_auth(store_code, mid, 1, rid) == first


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"bonus": 0}, "principal"),  # keeps the bonus the terms forfeit
        ({"principal": 30000}, "principal"),
        ({"authorization_id": "0192f0c4-0000-7000-8000-0000000000ee"}, "authorization_id"),
    ],
)
def test_refund_that_is_not_what_hq_authorized_is_refused(hq_db, store_code, change, named):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    auth = refund_auth(store_code, mid, 20000)
    item = refund_item(items, mid, auth, **change)
    rejection = refused(ingest(store_code, [item]), item["seq"])
    assert rejection.code == "apply_failed" and named in rejection.reason
    assert balances(mid) == (50000, 10000, 0)
    ledger_clean(hq_db)


def test_refund_without_authorization_or_twice_is_refused(hq_db, store_code):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    forged = p.AuthResponse(
        uuid7(), "approved", uuid7(), None, None, {"principal": 50000, "bonus": 0}
    )
    item = refund_item(items, mid, forged)
    assert "授权" in refused(ingest(store_code, [item]), item["seq"]).reason
    auth = refund_auth(store_code, mid, 10000)
    ok = refund_item(items, mid, auth)
    twice = refund_item(items, mid, auth)
    ack = ingest(store_code, [ok, twice])
    refused(ack, twice["seq"])
    assert balances(mid) == (40000, 0, 0)
    ledger_clean(hq_db)


# ---- clearing and the statement ------------------------------------------------------------


def test_clear_stored_value_with_reason_and_audit(hq_db, store_code):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    with pytest.raises(ValidationError) as err:
        upkeep.clear_stored_value(hq_db, mid, "hq-wang", "  ", NAIVE_NOW)
    assert err.value.field == "reason"
    done, changes = upkeep.clear_stored_value(hq_db, mid, "hq-wang", "会员注销", NAIVE_NOW)
    assert (done["principal"], done["bonus"]) == (50000, 10000)
    assert balances(mid) == (0, 0, 0)
    assert [c.key for c in changes] == [mid]
    assert changes[0].data["stored_value"] == {"principal": 0, "bonus": 0}
    audit = AuditEntry.get(AuditEntry.action == "stored_value.clear")
    assert (audit.actor, audit.reason, audit.details["principal"]) == ("hq-wang", "会员注销", 50000)
    with pytest.raises(ValidationError):  # nothing left to clear
        upkeep.clear_stored_value(hq_db, mid, "hq-wang", "again", NAIVE_NOW)
    ledger_clean(hq_db)


def test_clear_refused_while_a_spend_is_held(hq_db, store_code):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    held, _ = authorize_spend(hq_db, AuthRequest(store_code, uuid7(), mid, "hold", 100), NAIVE_NOW)
    assert held.approved
    with pytest.raises(Conflict):
        upkeep.clear_stored_value(hq_db, mid, "hq-wang", "x", NAIVE_NOW)
    assert balances(mid) == (50000, 10000, 0)


def test_statement_adds_up(hq_db, store_code):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    ingest(store_code, [items.sale(mid, 10000, stored_value=(8000, 2000))])
    auth = refund_auth(store_code, mid, 12000)
    ingest(store_code, [refund_item(items, mid, auth)])
    whole = upkeep.sv_statement(hq_db, mid)
    assert [m["reason"] for m in whole["movements"]] == ["topup", "sale", "sv_refund"]
    assert [(m["principal"], m["bonus"]) for m in whole["movements"]] == [
        (50000, 10000),
        (-8000, -2000),
        (-12000, -8000),
    ]
    assert whole["opening"]["total"] == 0
    assert whole["closing"] == whole["balance"] == {"principal": 30000, "bonus": 0, "total": 30000}
    assert {m["store"] for m in whole["movements"]} == {store_code}
    # a window after everything: all of it in the opening, nothing moves
    later = upkeep.sv_statement(hq_db, mid, dt.date(2030, 1, 1), dt.date(2030, 1, 31))
    assert later["movements"] == [] and later["opening"] == later["closing"] == whole["closing"]
    with pytest.raises(ValidationError):
        upkeep.sv_statement(hq_db, mid, dt.date(2026, 2, 1), dt.date(2026, 1, 1))


def test_statement_and_clear_from_the_cli(hq_db, hq_db_url, store_code):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    base = ["--database-url", hq_db_url]
    runner = CliRunner()
    out = runner.invoke(main, [*base, "sv-statement", mid, "--json"])
    assert out.exit_code == 0, out.output
    assert '"total": 60000' in out.output
    no_reason = runner.invoke(
        main, [*base, "clear-stored-value", mid, "--by", "x", "--reason", " ", "--no-push"]
    )
    assert no_reason.exit_code == ValidationError.code
    done = runner.invoke(
        main, [*base, "clear-stored-value", mid, "--by", "x", "--reason", "注销", "--no-push"]
    )
    assert done.exit_code == 0, done.output
    assert balances(mid) == (0, 0, 0)


# ---- profile edits: field by field, newest change wins -----------------------------------------


def update_item(items: Items, mid: str, changes: dict, at: str) -> dict:
    return items._item(
        "member_update", {"member_id": mid, "changes": changes, "changed_at": at, "cashier": "E01"}
    )


def test_till_edits_apply_field_by_field_newest_wins(hq_db, store_code):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    first = update_item(items, mid, {"name": "李四", "tags": ["投诉"]}, "2026-11-23T11:00:00+08:00")
    older = update_item(items, mid, {"name": "王五", "notes": "旧的"}, "2026-11-23T10:30:00+08:00")
    ack = ingest(store_code, [first, older])
    assert ack.rejected == ()
    m = Member.get_by_id(mid)
    assert (m.name, m.tags, m.notes) == ("李四", ["投诉"], "旧的")  # name kept, notes new
    # the store learns HQ has both items (its overlay of pending edits ends there)
    assert m.through[store_code] == older["seq"]
    assert m.profile_score == upkeep.score(m, DEMO_RULES)
    audits = AuditEntry.select().where(AuditEntry.action == "member.update").order_by(AuditEntry.id)
    assert [a.details["fields"] for a in audits] == [["name", "tags"], ["notes"]]
    change = (
        ChangeRecord.select().where(ChangeRecord.key == mid).order_by(ChangeRecord.seq.desc()).get()
    )
    assert change.data["tags"] == ["投诉"] and change.data["name"] == "李四"


def test_till_edit_of_extra_fields_checked_against_the_rules(hq_db, store_code):
    rules_with(hq_db, profile_fields=[{"name": "car", "type": "choice", "choices": ["SUV"]}])
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    good = update_item(items, mid, {"extra": {"car": "SUV"}}, "2026-11-23T11:00:00+08:00")
    bad = update_item(items, mid, {"extra": {"colour": "红"}}, "2026-11-23T11:01:00+08:00")
    ack = ingest(store_code, [good, bad])
    refused(ack, bad["seq"])
    assert Member.get_by_id(mid).extra == {"car": "SUV"}


def test_hq_edit_and_a_later_till_edit(hq_db, store_code):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    applied, changes = upkeep.edit_member(
        hq_db,
        mid,
        ["name=赵六", "tags=VIP,退款", 'anniversaries=[{"name": "结婚", "date": "10-01"}]'],
        "hq-wang",
        NAIVE_NOW,
    )
    assert applied == ["anniversaries", "name", "tags"] and [c.key for c in changes] == [mid]
    m = Member.get_by_id(mid)
    assert (m.name, m.tags) == ("赵六", ["VIP", "退款"])
    assert m.anniversaries == [{"name": "结婚", "date": "10-01", "calendar": "solar"}]
    # a till edit made before HQ's loses; one made after wins
    before = update_item(items, mid, {"name": "早"}, "2026-11-27T17:00:00+08:00")  # 09:00 UTC
    after = update_item(items, mid, {"name": "晚"}, "2026-11-27T19:00:00+08:00")  # 11:00 UTC
    ingest(store_code, [before])
    assert Member.get_by_id(mid).name == "赵六"
    ingest(store_code, [after])
    assert Member.get_by_id(mid).name == "晚"
    assert AuditEntry.get(AuditEntry.actor == "hq-wang").details["fields"] == applied
    # the same values again change nothing, and write no audit row
    assert upkeep.edit_member(hq_db, mid, ["tags=VIP,退款"], "hq-wang", NAIVE_NOW) == ([], [])
    assert AuditEntry.select().where(AuditEntry.actor == "hq-wang").count() == 1


@pytest.mark.parametrize(
    ("sets", "field"),
    [
        (["card_type=金卡"], "card_type"),
        (["gender=X"], "gender"),
        (["tags=" + ",".join(["x"] * 21)], "tags"),
        (["anniversaries=not json"], "anniversaries"),
        (["name"], "set"),
        (["extra.car=SUV"], "extra"),
    ],
)
def test_bad_hq_edits_refused(hq_db, store_code, sets, field):
    mid = member_with_money(store_code, Items(store_code))
    with pytest.raises(ValidationError) as err:
        upkeep.edit_member(hq_db, mid, sets, "hq-wang", NAIVE_NOW)
    assert err.value.field == field


def test_phone_change_at_hq(hq_db, store_code):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    other_phone = _phone()
    ingest(store_code, [items.registration(uuid7(), other_phone, name="别人")])
    with pytest.raises(Conflict) as err:
        upkeep.edit_member(hq_db, mid, [f"phone={other_phone}"], "hq-wang", NAIVE_NOW)
    assert err.value.field == "phone"
    new = _phone()
    upkeep.edit_member(hq_db, mid, [f"phone={new}"], "hq-wang", NAIVE_NOW)
    assert Member.get_by_id(mid).phone == new
    assert PhoneKey.get(PhoneKey.member_id == mid).phone == new


# ---- passwords -----------------------------------------------------------------------------------


def password_item(items: Items, mid: str, password_hash: str, at: str, action: str = "set") -> dict:
    body = {"member_id": mid, "password_hash": password_hash, "action": action, "changed_at": at}
    body |= {"cashier": "E01"} | ({"approved_by": "M01"} if action == "reset" else {})
    return items._item("member_password", body)


def test_password_from_a_till_newest_wins_and_reset_at_hq(hq_db, store_code):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    ack = ingest(
        store_code,
        [
            password_item(items, mid, HASH, "2026-11-23T11:00:00+08:00", "reset"),
            password_item(items, mid, HASH2, "2026-11-23T10:00:00+08:00"),  # older: ignored
        ],
    )
    assert ack.rejected == ()
    assert Member.get_by_id(mid).password_hash == HASH
    assert Member.get_by_id(mid).through[store_code] == items.seq  # the ignored one too
    audit = AuditEntry.get(AuditEntry.action == "member.password_reset")
    assert audit.details == {"approved_by": "M01"}
    with pytest.raises(ValidationError):
        upkeep.reset_member_password(hq_db, mid, "hq-wang", "", NAIVE_NOW)
    changes = upkeep.reset_member_password(hq_db, mid, "hq-wang", "会员来电忘记密码", NAIVE_NOW)
    assert Member.get_by_id(mid).password_hash is None
    assert changes[0].data["password_hash"] is None
    assert (
        AuditEntry.select().where(AuditEntry.actor == "hq-wang").get().reason == "会员来电忘记密码"
    )
    # a new password set at the till after the reset stands
    ingest(store_code, [password_item(items, mid, HASH2, "2026-11-28T10:00:00+08:00")])
    assert Member.get_by_id(mid).password_hash == HASH2
    assert "c2FsdHNhbHQ" not in str([a.details for a in AuditEntry.select()])


def test_registered_edited_and_password_set_in_one_batch(hq_db, store_code):
    """A member registered and then edited and given a password at the till before the
    store synced: one batch; the edits land on the row the registration made."""
    items = Items(store_code)
    mid = uuid7()
    ack = ingest(
        store_code,
        [
            items.registration(mid, _phone()),
            items.topup(mid, 10000),
            update_item(
                items, mid, {"notes": "新会员", "tags": ["VIP"]}, "2026-11-23T10:05:00+08:00"
            ),
            password_item(items, mid, HASH, "2026-11-23T10:06:00+08:00"),
            items.sale(mid, 1000),
        ],
    )
    assert ack.rejected == ()
    m = Member.get_by_id(mid)
    assert (m.notes, m.tags, m.password_hash) == ("新会员", ["VIP"], HASH)
    assert balances(mid) == (10000, 0, 10)
    ledger_clean(hq_db)


# ---- registration: the richer profile and referral points -------------------------------------


def test_registration_keeps_the_profile_and_hq_scores_it(hq_db, store_code):
    items = Items(store_code)
    mid = uuid7()
    ack = ingest(
        store_code,
        [
            items.registration(
                mid,
                _phone(),
                occupation="教师",
                tags=["VIP"],
                preferences=["绿茶"],
                profile_score=100,  # the till's figure is not taken
            )
        ],
    )
    assert ack.rejected == ()
    m = Member.get_by_id(mid)
    assert (m.occupation, m.tags, m.preferences) == ("教师", ["VIP"], ["绿茶"])
    assert m.profile_score == 65  # name, phone, gender, occupation, preferences, tags: 55 of 85


def test_referral_points_once_to_the_referrer(hq_db, store_code):
    rules_with(hq_db, referral_points=50)
    items = Items(store_code)
    referrer = member_with_money(store_code, items)
    new = uuid7()
    ack = ingest(store_code, [items.registration(new, _phone(), referred_by=referrer)])
    assert ack.rejected == ()
    assert balances(referrer) == (50000, 10000, 50)
    lot = PointsLot.get_by_id(f"referral:{new}")
    assert (lot.member_id, lot.remaining) == (referrer, 50)
    assert lot.expires_on == lot.earned_on + dt.timedelta(days=DEMO_RULES.points_expiry_days)
    (entry,) = LedgerEntry.select().where(LedgerEntry.reason == "referral")
    assert (entry.member_id, entry.points, entry.ref) == (referrer, 50, new)
    assert Member.get_by_id(new).referred_by == referrer
    ledger_clean(hq_db)


def test_no_referral_points_when_merged_by_phone_or_unknown_or_off(hq_db, store_code):
    items = Items(store_code)
    referrer = member_with_money(store_code, items)
    # rules without referral points: none
    ingest(store_code, [items.registration(uuid7(), _phone(), referred_by=referrer)])
    assert balances(referrer)[2] == 0
    rules_with(hq_db, referral_points=50)
    # the same phone registered again (another store, offline): merged, no points
    phone = _phone()
    ingest(store_code, [items.registration(uuid7(), phone)])
    ingest(store_code, [items.registration(uuid7(), phone, referred_by=referrer)])
    assert balances(referrer)[2] == 0
    # a referrer HQ does not know: no points, an exception for staff
    ghost = uuid7()
    ingest(store_code, [items.registration(uuid7(), _phone(), referred_by=ghost)])
    assert HqException.get(HqException.kind == "unknown_referrer").details["referred_by"] == ghost
    assert LedgerEntry.select().where(LedgerEntry.reason == "referral").count() == 0
    ledger_clean(hq_db)


def test_profile_completeness_per_store(hq_db, store_code):
    items = Items(store_code)
    ingest(store_code, [items.registration(uuid7(), _phone())])
    ingest(store_code, [items.registration(uuid7(), _phone(), occupation="教师", tags=["VIP"])])
    rows = upkeep.profile_completeness(hq_db, store_code)
    # 30 of 85 (name, phone, gender) = 35; with occupation and tags 45 of 85 = 53
    assert rows == [
        {"store": store_code, "members": 2, "average": 44, "complete": 0, "below_50": 1}
    ]
    assert upkeep.profile_completeness(hq_db, "nowhere") == []


def test_the_richer_profile_is_exported_and_erased(hq_db, store_code):
    from hq import privacy

    items = Items(store_code)
    mid = uuid7()
    ingest(store_code, [items.registration(mid, _phone(), occupation="教师", tags=["投诉"])])
    ingest(
        store_code, [update_item(items, mid, {"notes": "住在附近"}, "2026-11-23T11:00:00+08:00")]
    )
    exported = privacy.export_member(hq_db, Member.get_by_id(mid), "hq-wang", NAIVE_NOW)
    profile = exported["member"]
    assert (profile["occupation"], profile["tags"], profile["notes"]) == (
        "教师",
        ["投诉"],
        "住在附近",
    )
    privacy.erase_member(hq_db, Member.get_by_id(mid), "会员要求", "hq-wang", NAIVE_NOW)
    m = Member.get_by_id(mid)
    assert (m.occupation, m.tags, m.notes, m.preferences) == ("", None, "", None)
    stored = str([d.data for d in ChangeRecord.select().where(ChangeRecord.key == mid)])
    assert "住在附近" not in stored and "教师" not in stored


def test_edit_reset_and_completeness_from_the_cli(hq_db, hq_db_url, store_code):
    items = Items(store_code)
    mid = member_with_money(store_code, items)
    ingest(store_code, [password_item(items, mid, HASH, "2026-11-23T11:00:00+08:00")])
    base = ["--database-url", hq_db_url]
    runner = CliRunner()
    edit = runner.invoke(
        main,
        [
            *base,
            "edit-member",
            mid,
            "--set",
            "occupation=厨师",
            "--set",
            "tags=投诉",
            "--by",
            "hq-li",
            "--no-push",
        ],
    )
    assert edit.exit_code == 0, edit.output
    assert "occupation, tags" in edit.output
    assert Member.get_by_id(mid).occupation == "厨师"
    bad = runner.invoke(
        main, [*base, "edit-member", mid, "--set", "card_type=金卡", "--by", "x", "--no-push"]
    )
    assert bad.exit_code == ValidationError.code and "card_type" in bad.output
    no_reason = runner.invoke(
        main, [*base, "reset-member-password", mid, "--by", "x", "--reason", "", "--no-push"]
    )
    assert no_reason.exit_code == ValidationError.code
    reset = runner.invoke(
        main, [*base, "reset-member-password", mid, "--by", "x", "--reason", "忘记", "--no-push"]
    )
    assert reset.exit_code == 0, reset.output
    assert Member.get_by_id(mid).password_hash is None
    report = runner.invoke(main, [*base, "profile-completeness", "--store", store_code, "--json"])
    assert report.exit_code == 0, report.output
    assert f'"store": "{store_code}"' in report.output and '"members": 1' in report.output


def test_profile_rescore_job_after_the_chain_adds_a_field(hq_db, hq_db_url, store_code):
    from hq.scheduler import JOBS, JobContext, record_run
    from tests.hq.conftest import hq_config

    items = Items(store_code)
    ingest(store_code, [items.registration(uuid7(), _phone(), occupation="教师")])
    ingest(store_code, [items.registration(uuid7(), _phone())])
    (job,) = [j for j in JOBS if j.name == "profile-rescore"]
    ctx = JobContext(hq_db, hq_config(hq_db_url, None), clock=lambda: NAIVE_NOW)
    first = record_run(hq_db, job, "n1", ctx)
    assert first.status == "ok" and first.counts["rescored"] == 0  # scores already current
    assert record_run(hq_db, job, "n1", ctx).counts == {"members": 0, "rescored": 0}
    rules_with(hq_db, profile_fields=[{"name": "car", "type": "text"}])
    seq_before = ChangeRecord.select().count()
    run = record_run(hq_db, job, "n1", ctx)
    assert run.counts == {"members": 2, "rescored": 2}
    scores = sorted(m.profile_score for m in Member.select())
    assert scores == [30, 40]  # 30 and 40 of 100: no one has the chain's new field
    assert ChangeRecord.select().count() == seq_before + 2  # both members go down
    assert record_run(hq_db, job, "n1", ctx).counts == {"members": 0, "rescored": 0}
