"""Member upkeep at HQ (docs/programme/upkeep.md): stored value refunds from tills and
clearing (清零), the stored value statement, profile edits from tills and at HQ (field
by field, newest change wins), member passwords, the richer profile's completeness score
and referral points.

Service functions take the database and a time (naive UTC) so tests control both; the
item appliers take the ingest's ItemContext (hq/apply.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import peewee as pw

from core.errors import Conflict, NotFound, ValidationError
from core.ids import uuid7
from core.phone import normalise_phone
from core.points import expiry_for
from core.profile import PROFILE_FIELDS, check_extra, check_profile, completeness
from core.protocol import MEMBER_UPDATE_FIELDS, Change
from core.rules import Rules
from core.stored_value import Split
from hq import audit
from hq.changes import ChangeSet, flush_changes
from hq.ledger import Book, Posting, credit_points, post_stored_value, resolve_member
from hq.member_search import search_keys
from hq.members import parse_instant, touch_through
from hq.models import (
    Authorization,
    HqException,
    LedgerEntry,
    Member,
    MemberFieldStamp,
    Merge,
    PhoneKey,
    RulesVersion,
    UpkeepState,
)

ERASED = "erased"


def latest_rules() -> Rules:
    """The latest published rules (the chain's profile fields, refund terms), else the
    defaults."""
    row = RulesVersion.select().order_by(RulesVersion.version.desc()).first()
    return Rules.from_dict(row.data) if row is not None else Rules()


def _profile_of(member: Member) -> dict[str, Any]:
    return {
        "name": member.name,
        "phone": member.phone,
        "gender": member.gender,
        "birthday": member.birthday,
        **{name: getattr(member, name) for name in PROFILE_FIELDS},
    }


def score(member: Member, rules: Rules) -> int:
    return completeness(_profile_of(member), rules)


# ---- registration: the richer profile and referral --------------------------------------


def registration_profile(body: dict[str, Any]) -> dict[str, Any]:
    """The member columns a registration item sets beyond the first release's (absent in
    older tills' items: the columns' defaults)."""
    out: dict[str, Any] = {name: body[name] for name in PROFILE_FIELDS if body.get(name)}
    if body.get("referred_by"):
        out["referred_by"] = body["referred_by"]
    if "profile_score" in body:
        out["profile_score"] = body["profile_score"]
    return out


def registration_with_score(body: dict[str, Any], rules: Rules) -> dict[str, Any]:
    """The body with HQ's own completeness score (the till's is not taken)."""
    profile = {
        "name": body.get("name"),
        "phone": body.get("phone"),
        "gender": body.get("gender"),
        "birthday": body.get("birthday"),
        **{name: body.get(name) for name in PROFILE_FIELDS},
    }
    return body | {"profile_score": completeness(profile, rules)}


def credit_referral(ctx: Any, body: dict[str, Any], rules: Rules) -> None:
    """The referrer's points for a new member they brought: ``rules.referral_points`` in
    a lot of their own (``referral:<new member id>``, so once per new member) expiring as
    earned points do, ledger reason ``referral``. None when the registration was merged
    into an existing member by phone, nor to the new member itself."""
    referrer_id = body.get("referred_by")
    points = rules.referral_points
    if not referrer_id or not points:
        return
    new_id = body["member_id"]
    merged = Merge.select().where((Merge.from_member == new_id) | (Merge.to_member == new_id))
    if merged.exists():
        return
    try:
        referrer = ctx.book.member(referrer_id)
    except NotFound:
        ctx.book.insert(
            HqException,
            kind="unknown_referrer",
            member_id=new_id,
            store=ctx.item.store,
            seq=ctx.item.seq,
            ref=ctx.item.id,
            details={"referred_by": referrer_id, "reason": "推荐人总部不存在, 未给推荐积分"},
            created_at=ctx.now,
            status="open",
            balance=None,
            amount=0,
            recovered=0,
            closed_at=None,
        )
        return
    if referrer.id == new_id or referrer.status != "active":
        return
    lot_id = f"referral:{new_id}"
    if ctx.book.lot(lot_id) is not None:
        return
    try:
        day = dt.datetime.fromisoformat(ctx.item.occurred_at).date()
    except ValueError:
        day = ctx.now.date()
    credit_points(
        referrer,
        points,
        ctx.posting("referral", new_id),
        lot_id,
        day,
        expiry_for(rules, day),
        ctx.book,
    )
    ctx.changes.member(referrer.id)


# ---- newest change wins, field by field --------------------------------------------------


def _stamps(member_id: str) -> dict[str, dt.datetime]:
    return {
        s.field: s.changed_at
        for s in MemberFieldStamp.select().where(MemberFieldStamp.member_id == member_id)
    }


def _stamp(member_id: str, field: str, at: dt.datetime, store: str | None) -> None:
    MemberFieldStamp.insert(
        member_id=member_id, field=field, changed_at=at, store=store
    ).on_conflict(
        conflict_target=[MemberFieldStamp.member_id, MemberFieldStamp.field],
        update={MemberFieldStamp.changed_at: at, MemberFieldStamp.store: store},
    ).execute()


def _columns(name: str, value: Any) -> dict[str, Any]:
    """The member columns a member_update field sets."""
    if name == "birthday":
        if not value:
            return {"birthday": None, "birthday_calendar": "solar", "birthday_leap_month": False}
        return {
            "birthday": value["date"],
            "birthday_calendar": value.get("calendar", "solar"),
            "birthday_leap_month": bool(value.get("leap_month")),
        }
    if name in ("name", "gender", "occupation", "notes"):
        return {name: value or ""}
    return {name: value if value not in ([], {}) else None}


def apply_profile_changes(
    member: Member,
    changes: dict[str, Any],
    at: dt.datetime,
    store: str | None,
    rules: Rules,
    now: dt.datetime,
) -> list[str]:
    """Set the fields whose change is newer than the last one applied (stamps), on the
    row and on ``member`` (which a batch's book may hold); returns the fields set."""
    stamps = _stamps(member.id)
    applied: list[str] = []
    columns: dict[str, Any] = {}
    for name, value in changes.items():
        last = stamps.get(name)
        if last is not None and last > at:
            continue  # a newer change of this field is already applied
        columns.update(_columns(name, value))
        _stamp(member.id, name, at, store)
        applied.append(name)
    if not applied:
        return []
    if "name" in columns:  # members: the console's search keys follow the name
        keys = search_keys(columns["name"], member.phone)
        columns |= {"name_pinyin": keys["name_pinyin"], "name_initials": keys["name_initials"]}
    for key, value in columns.items():
        setattr(member, key, value)
    member.profile_score = score(member, rules)
    member.updated_at = now
    columns |= {"profile_score": member.profile_score, "updated_at": now}
    Member.update(**columns).where(Member.id == member.id).execute()
    return applied


def _item_rules(ctx: Any) -> Rules | None:
    return ctx.cache.rules_for(ctx.item.rules_version)


def apply_member_update(ctx: Any, body: dict[str, Any]) -> None:
    """A ``member_update`` item: the till's edit, field by field where newer."""
    # the columns are written at once: a member registered earlier in this batch must be
    # in the table first (the book writes its rows at the end of the batch)
    ctx.book.flush()
    member = ctx.book.member(body["member_id"])
    if member.status == ERASED:
        raise Conflict(f"会员 {member.id} 的个人信息已删除", field="member_id")
    rules = _item_rules(ctx)
    changes = dict(body["changes"])
    if "extra" in changes and changes["extra"] and rules is not None:
        changes["extra"] = check_extra(changes["extra"], rules.profile_fields)
    at = parse_instant(body["changed_at"], "changed_at")
    applied = apply_profile_changes(
        member, changes, at, ctx.item.store, rules or latest_rules(), ctx.now
    )
    if applied:
        audit.record(
            ctx.db,
            audit.till_actor(ctx.item.store, body.get("cashier")),
            "member.update",
            member.id,
            store=ctx.item.store,
            at=ctx.now,
            fields=applied,
        )
    # applied or not (a newer change won), the till learns HQ has the item: it stops
    # laying its edit over HQ's record (edge/sync/upkeep.py) and shows HQ's
    touch_through(member, ctx.item.store, ctx.item.seq, ctx.book)
    ctx.changes.member(member.id)


def apply_member_password(ctx: Any, body: dict[str, Any]) -> None:
    """A ``member_password`` item: the hash the till made, where newer than the last."""
    ctx.book.flush()  # as apply_member_update: the member's row must be in the table
    member = ctx.book.member(body["member_id"])
    if member.status == ERASED:
        raise Conflict(f"会员 {member.id} 的个人信息已删除", field="member_id")
    at = parse_instant(body["changed_at"], "changed_at")
    touch_through(member, ctx.item.store, ctx.item.seq, ctx.book)  # as apply_member_update
    ctx.changes.member(member.id)
    last = _stamps(member.id).get("password_hash")
    if last is not None and last > at:
        return
    _stamp(member.id, "password_hash", at, ctx.item.store)
    member.password_hash = body["password_hash"]
    Member.update(password_hash=body["password_hash"], updated_at=ctx.now).where(
        Member.id == member.id
    ).execute()
    details = {"approved_by": body["approved_by"]} if body.get("approved_by") else {}
    audit.record(
        ctx.db,
        audit.till_actor(ctx.item.store, body.get("cashier")),
        f"member.password_{body['action']}",
        member.id,
        store=ctx.item.store,
        at=ctx.now,
        **details,
    )


# ---- stored value refund from a till (储值退款) --------------------------------------------


def apply_sv_refund(ctx: Any, body: dict[str, Any]) -> None:
    """A refund paid in cash at a till: posted only as HQ's own authorization of it held
    it (the member, the principal and the bonus forfeited), never on the store's word
    (invariant 9)."""
    from hq.apply import MoneyRefused  # hq.apply imports this module for APPLIERS

    refund_id = body["refund_id"]
    auth = Authorization.get_or_none(
        (Authorization.store == ctx.item.store) & (Authorization.sale_id == refund_id)
    )
    if auth is None or auth.status not in ("held", "settled"):
        raise MoneyRefused(
            f"储值退款没有总部授权 (refund {refund_id}: HQ holds no authorization for it)",
            field="authorization_id",
        )
    if auth.status == "settled":
        raise Conflict(f"refund {refund_id} was already ingested", field="refund_id")
    if auth.id != body["authorization_id"]:
        raise MoneyRefused(
            f"授权号不符 (authorization_id {body['authorization_id']} is not HQ's {auth.id})",
            field="authorization_id",
        )
    member = ctx.book.member(body["member_id"])
    if ctx.book.member(auth.member_id).id != member.id:
        raise MoneyRefused(
            "退款会员与授权不符 (member_id is not the authorized member's)", field="member_id"
        )
    figures = (body["principal"], body["bonus"])
    if figures != (auth.sv_principal, auth.sv_bonus) or auth.stored_value != body["principal"]:
        raise MoneyRefused(
            f"退款金额与总部授权不符 (principal/bonus {figures[0]}/{figures[1]}, HQ authorized "
            f"{auth.sv_principal}/{auth.sv_bonus})",
            field="principal",
        )
    auth.status = "settled"
    auth.save(only=[Authorization.status])
    post_stored_value(
        member, -body["principal"], -body["bonus"], ctx.posting("sv_refund", refund_id), ctx.book
    )
    audit.record(
        ctx.db,
        audit.till_actor(ctx.item.store, body.get("cashier")),
        "stored_value.refund",
        member.id,
        body.get("reason") or "",
        store=ctx.item.store,
        at=ctx.now,
        refund_id=refund_id,
        principal=body["principal"],
        bonus_forfeited=body["bonus"],
        approved_by=body["approved_by"],
    )
    touch_through(member, ctx.item.store, ctx.item.seq, ctx.book)
    ctx.changes.member(member.id)


# ---- HQ's own actions ----------------------------------------------------------------------


def _live_holds(db: pw.Database, member_id: str, now: dt.datetime) -> Split:
    from hq.auth import _held

    held = _held(db, member_id, now, now.date())  # stored value: the day only matters to points
    return Split(held["principal"], held["bonus"])


def clear_stored_value(
    db: pw.Database, member_id: str, by: str, reason: str | None, now: dt.datetime
) -> tuple[dict[str, Any], list[Change]]:
    """储值清零: the member's stored value (principal and bonus, what is above zero) taken
    to zero, ledger reason ``sv_clear``, with an audit row; refused while a hold is live
    (a sale being paid) or when there is nothing to clear."""
    reason = audit.require_reason(reason, "储值清零")
    by = audit.require_actor(by)
    with db.atomic():
        book = Book(db)
        member = book.member(member_id)
        if member.status == ERASED:
            raise Conflict(f"会员 {member.id} 的个人信息已删除", field="member_id")
        held = _live_holds(db, member.id, now)
        if held.total:
            raise Conflict(
                f"会员有未完成的储值授权 {held.total} 分, 请稍后再清零 (a stored value hold is live)",
                field="member_id",
            )
        principal, bonus = max(0, member.sv_principal), max(0, member.sv_bonus)
        if not principal and not bonus:
            raise ValidationError("储值余额为零, 无需清零 (nothing to clear)", field="member_id")
        ref = uuid7()
        post_stored_value(
            member, -principal, -bonus, Posting("sv_clear", ref, None, None, now), book
        )
        book.flush()
        audit.record(
            db,
            by,
            "stored_value.clear",
            member.id,
            reason,
            at=now,
            ref=ref,
            principal=principal,
            bonus=bonus,
        )
        changes = ChangeSet()
        changes.member(member.id)
        out = flush_changes(db, changes, now)
    return {"member_id": member.id, "ref": ref, "principal": principal, "bonus": bonus}, out


REASON_LABELS = {
    "topup": "充值",
    "sale": "消费",
    "return": "退货退回",
    "sv_refund": "储值退款",
    "sv_clear": "储值清零",
    "adjust": "调整",
}


def sv_statement(
    db: pw.Database,
    member_id: str,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
    zone: ZoneInfo | dt.tzinfo = dt.UTC,
) -> dict[str, Any]:
    """A member's stored value statement from HQ's ledger: the opening balance before
    ``date_from``, every movement to ``date_to`` (days in the chain's ``zone``) with its
    time, store, reason, document, principal and bonus, and the closing balance.
    Opening plus the movements is the closing; with no ``date_to`` it is the balance."""
    if date_from and date_to and date_from > date_to:
        raise ValidationError("--from 不能晚于 --to (from is after to)", field="from")
    member = resolve_member(db, member_id, lock=False)
    rows = (
        LedgerEntry.select()
        .where((LedgerEntry.member_id == member.id) & (LedgerEntry.balance == "stored_value"))
        .order_by(LedgerEntry.at, LedgerEntry.id)
    )
    opening = {"principal": 0, "bonus": 0}
    movements = []
    for row in rows:
        local = row.at.replace(tzinfo=dt.UTC).astimezone(zone)
        day = local.date()
        if date_from and day < date_from:
            opening["principal"] += row.principal
            opening["bonus"] += row.bonus
            continue
        if date_to and day > date_to:
            continue
        movements.append(
            {
                "at": local.isoformat(timespec="seconds"),
                "store": row.store,
                "reason": row.reason,
                "label": REASON_LABELS.get(row.reason, row.reason),
                "ref": row.ref,
                "principal": int(row.principal),
                "bonus": int(row.bonus),
            }
        )
    closing = {
        "principal": opening["principal"] + sum(m["principal"] for m in movements),
        "bonus": opening["bonus"] + sum(m["bonus"] for m in movements),
    }
    return {
        "member_id": member.id,
        "from": date_from.isoformat() if date_from else None,
        "to": date_to.isoformat() if date_to else None,
        "opening": opening | {"total": opening["principal"] + opening["bonus"]},
        "movements": movements,
        "closing": closing | {"total": closing["principal"] + closing["bonus"]},
        "balance": {
            "principal": member.sv_principal,
            "bonus": member.sv_bonus,
            "total": member.sv_principal + member.sv_bonus,
        },
    }


# what ``edit-member --set`` takes: the member_update fields and the phone; list fields
# as comma-separated texts, anniversaries as JSON, extra fields as extra.NAME=value
EDITABLE_AT_HQ = (*MEMBER_UPDATE_FIELDS, "birthday_calendar", "birthday_leap_month", "phone")


def parse_sets(sets: list[str], rules: Rules, member: Member) -> dict[str, Any]:
    """``field=value`` pairs as typed at HQ, checked as a till checks them."""
    import json

    from core.birthday import Birthday

    raw: dict[str, Any] = {}
    extra: dict[str, Any] = dict(member.extra or {})
    extra_given = False
    for item in sets:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValidationError(f"--set takes field=value, got {item!r}", field="set")
        if name.startswith("extra."):
            key = name.removeprefix("extra.")
            declared = {f.name: f for f in rules.profile_fields}
            if key in declared and declared[key].type == "number" and value.strip():
                try:
                    extra[key] = int(value)
                except ValueError:
                    raise ValidationError(f"extra.{key} must be an integer", field=name) from None
            else:
                extra[key] = value.strip()
            extra_given = True
            continue
        if name not in EDITABLE_AT_HQ:
            raise ValidationError(
                f"不能修改的字段 {name!r} (editable: {sorted(EDITABLE_AT_HQ)}, extra.NAME)",
                field=name,
            )
        if name in ("preferences", "tags"):
            raw[name] = [v.strip() for v in value.replace("，", ",").split(",") if v.strip()]
        elif name == "anniversaries":
            try:
                raw[name] = json.loads(value) if value.strip() else []
            except ValueError:
                raise ValidationError(
                    'anniversaries as JSON: [{"name": "结婚纪念日", "date": "2015-10-01", '
                    '"calendar": "solar"}]',
                    field=name,
                ) from None
        elif name == "birthday_leap_month":
            raw[name] = value.strip().lower() in ("1", "true", "yes")
        else:
            raw[name] = value
    changes: dict[str, Any] = {}
    if "name" in raw:
        name_text = raw["name"].strip()
        if not name_text or len(name_text) > 32:
            raise ValidationError("姓名须为1到32个字 (name is 1..32 characters)", field="name")
        changes["name"] = name_text
    if "gender" in raw:
        if raw["gender"] not in ("M", "F", ""):
            raise ValidationError("gender must be M, F or empty", field="gender")
        changes["gender"] = raw["gender"]
    if any(k in raw for k in ("birthday", "birthday_calendar", "birthday_leap_month")):
        text = raw.get("birthday", member.birthday)
        if text:
            day = Birthday.parse(
                text,
                raw.get("birthday_calendar", member.birthday_calendar or "solar"),
                raw.get("birthday_leap_month", bool(member.birthday_leap_month)),
            )
            changes["birthday"] = {
                "date": day.isoformat(),
                "calendar": day.calendar,
                "leap_month": day.leap_month,
            }
        else:
            changes["birthday"] = None
    changes.update(check_profile(raw, rules))
    if extra_given:
        changes["extra"] = check_extra(extra, rules.profile_fields)
    if "phone" in raw:
        changes["phone"] = normalise_phone(raw["phone"])
    return changes


def edit_member(
    db: pw.Database,
    member_id: str,
    sets: list[str],
    by: str,
    now: dt.datetime,
    rules: Rules | None = None,
) -> tuple[list[str], list[Change]]:
    """A member's profile edited at HQ (``huiyuan-hq edit-member``): checked as at a
    till, set field by field (stamped now, so a later till edit still wins), audited,
    and the member sent down. The phone is the chain's key: another member's phone is
    refused, and the phone key moves with it."""
    by = audit.require_actor(by)
    if not sets:
        raise ValidationError("name at least one --set field=value", field="set")
    rules = rules or latest_rules()
    with db.atomic():
        member = resolve_member(db, member_id)
        if member.status == ERASED:
            raise Conflict(f"会员 {member.id} 的个人信息已删除", field="member_id")
        changes = parse_sets(sets, rules, member)
        applied: list[str] = []
        phone = changes.pop("phone", None)
        if phone is not None and phone != member.phone:
            owner = PhoneKey.get_or_none(PhoneKey.phone == phone)
            if owner is not None and owner.member_id != member.id:
                raise Conflict(
                    f"手机号已属于另一位会员 {owner.member_id} (phone belongs to another member)",
                    field="phone",
                )
            PhoneKey.delete().where(PhoneKey.member_id == member.id).execute()
            PhoneKey.insert(phone=phone, member_id=member.id).execute()
            member.phone = phone
            last4 = search_keys(member.name, phone)["phone_last4"]  # members: console search
            member.phone_last4 = last4
            Member.update(phone=phone, phone_last4=last4, updated_at=now).where(
                Member.id == member.id
            ).execute()
            applied.append("phone")
        changes = {
            name: value
            for name, value in changes.items()
            if any(getattr(member, k) != v for k, v in _columns(name, value).items())
        }
        if changes:
            applied += apply_profile_changes(member, changes, now, None, rules, now)
        if not applied:
            return [], []
        audit.record(db, by, "member.update", member.id, at=now, fields=sorted(applied))
        cs = ChangeSet()
        cs.member(member.id)
        out = flush_changes(db, cs, now)
    return sorted(applied), out


def reset_member_password(
    db: pw.Database, member_id: str, by: str, reason: str | None, now: dt.datetime
) -> list[Change]:
    """The member's password cleared at HQ: the next till visit sets a new one
    (POST /api/v1/members/{id}/password); audited with the reason."""
    reason = audit.require_reason(reason, "重置会员密码")
    by = audit.require_actor(by)
    with db.atomic():
        member = resolve_member(db, member_id)
        if member.status == ERASED:
            raise Conflict(f"会员 {member.id} 的个人信息已删除", field="member_id")
        if not member.password_hash:
            raise ValidationError(
                "会员没有设置密码 (the member has no password)", field="member_id"
            )
        _stamp(member.id, "password_hash", now, None)
        Member.update(password_hash=None, updated_at=now).where(Member.id == member.id).execute()
        audit.record(db, by, "member.password_reset", member.id, reason, at=now)
        cs = ChangeSet()
        cs.member(member.id)
        out = flush_changes(db, cs, now)
    return out


def profile_completeness(db: pw.Database, store: str | None = None) -> list[dict[str, Any]]:
    """Per registering store: members, the average completeness score, how many are
    complete (100) and how many below 50 (live members only)."""
    fn = pw.fn
    query = (
        Member.select(
            Member.registered_store,
            fn.COUNT(Member.id).alias("members"),
            fn.SUM(Member.profile_score).alias("total"),
            fn.SUM(pw.Case(None, [(Member.profile_score >= 100, 1)], 0)).alias("complete"),
            fn.SUM(pw.Case(None, [(Member.profile_score < 50, 1)], 0)).alias("low"),
        )
        .where(Member.status == "active")
        .group_by(Member.registered_store)
        .order_by(Member.registered_store)
    )
    if store:
        query = query.where(Member.registered_store == store)
    out = []
    for row in query.dicts():
        n = int(row["members"])
        out.append(
            {
                "store": row["registered_store"],
                "members": n,
                "average": (int(row["total"] or 0) + n // 2) // n if n else 0,
                "complete": int(row["complete"] or 0),
                "below_50": int(row["low"] or 0),
            }
        )
    return out


# ---- the nightly job ----------------------------------------------------------------------

RESCORE_BATCH = 1000


def rescore_profiles(
    db: pw.Database, now: dt.datetime, rules: Rules | None = None
) -> dict[str, int]:
    """Every live member's completeness score under the latest rules' profile fields, when
    those changed since the scores were last computed (a chain adding a field changes
    what "complete" means); registrations and edits keep scores current otherwise. Only
    members whose score changes are written and sent down, a batch per transaction, and
    the fields scored are recorded last: a run after a crash redoes what is left, a run
    with nothing new changes nothing (``profile-rescore`` in hq/scheduler.py)."""
    rules = rules or latest_rules()
    fields = {"profile_fields": [f.to_dict() for f in rules.profile_fields]}
    state = UpkeepState.get_or_none(UpkeepState.name == "profile_fields")
    if state is not None and state.data == fields:
        return {"members": 0, "rescored": 0}
    seen = rescored = 0
    after = ""
    while True:
        with db.atomic():
            batch = list(
                Member.select()
                .where((Member.status == "active") & (Member.id > after))
                .order_by(Member.id)
                .limit(RESCORE_BATCH)
            )
            if not batch:
                break
            cs = ChangeSet()
            for member in batch:
                new = score(member, rules)
                if new != member.profile_score:
                    Member.update(profile_score=new).where(Member.id == member.id).execute()
                    cs.member(member.id)
                    rescored += 1
            flush_changes(db, cs, now)
        seen += len(batch)
        after = batch[-1].id
    with db.atomic():
        UpkeepState.insert(name="profile_fields", data=fields, at=now).on_conflict(
            conflict_target=[UpkeepState.name],
            update={UpkeepState.data: fields, UpkeepState.at: now},
        ).execute()
    return {"members": seen, "rescored": rescored}


def rescore_profiles_job(ctx: Any) -> dict[str, int]:
    return rescore_profiles(ctx.db, ctx.clock())
