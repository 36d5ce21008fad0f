"""Personal data at HQ (PIPL): marketing consent, a member's export, erasure.

- Consent is kept per channel as history (``MemberConsent``): given at registration
  (the registration item's ``consent``), changed at a till (a ``consent`` item) or at
  HQ (``set_consent``). ``consented(member_id, channel)`` is what marketing asks;
  no answer on record is no consent.
- ``export_member``: every personal datum HQ holds about a member, as one JSON object.
- ``erase_member``: the person is removed, the money is kept. Name, phone, birthday,
  gender, password hash and consent are cleared on the member and every id merged into
  it; copies of the phone in stored payloads are scrubbed; the ledger, sales, returns
  and top-ups stay (financial records), tied to an id that no longer names anyone.
  The member goes down to every store as a change record with op ``erase``.

Both requests are audited in ``PrivacyRequest``; log lines name the member id only.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import peewee as pw

from core.errors import Conflict, NotFound, ValidationError
from core.protocol import CONSENT_CHANNELS, Change
from hq.changes import ChangeSet, card_state, flush_changes, member_state
from hq.ledger import resolve_member
from hq.members import parse_instant
from hq.models import (
    Card,
    ChangeRecord,
    Coupon,
    DeadLetter,
    HeldItem,
    HqException,
    LedgerEntry,
    Member,
    MemberConsent,
    Merge,
    PhoneKey,
    PointsLot,
    PrivacyRequest,
    ProcessedItem,
    Return,
    Sale,
    TopUp,
)

log = logging.getLogger("hq.privacy")

ERASED = "erased"
# what erasure leaves in each personal field of a member row (the rest of the row is kept)
ERASED_FIELDS: dict[str, Any] = {
    "name": "",
    "phone": None,
    "gender": "",
    "birthday": None,
    "birthday_calendar": "solar",
    "birthday_leap_month": False,
    "password_hash": None,
    # upkeep: the richer profile (core/profile.py) is the person too
    "occupation": "",
    "preferences": None,
    "anniversaries": None,
    "notes": "",
    "tags": None,
    "extra": None,
    # members: the console's search keys of the name (phone_last4 goes with the phone*)
    "name_pinyin": "",
    "name_initials": "",
}
# the personal fields of a registration or member payload, blanked in stored copies
# (``changes``: a member_update item's edited fields)
PAYLOAD_FIELDS = (
    "name",
    "phone",
    "gender",
    "birthday",
    "password_hash",
    "consent",
    "occupation",
    "preferences",
    "anniversaries",
    "notes",
    "tags",
    "extra",
    "changes",
)


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    if value is None:
        return None
    return value.isoformat() + ("Z" if isinstance(value, dt.datetime) else "")


# ---- consent --------------------------------------------------------------------------


def consent_rows(
    member_id: str,
    consent: dict[str, bool],
    *,
    at: dt.datetime,
    store: str | None,
    source: str,
    by: str | None,
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """``MemberConsent`` rows (complete, for ``Book.insert`` or ``insert_many``)."""
    unknown = sorted(set(consent) - set(CONSENT_CHANNELS))
    if unknown:
        raise ValidationError(f"unknown consent channel {unknown[0]!r}", field="consent")
    return [
        {
            "member_id": member_id,
            "channel": channel,
            "granted": bool(consent[channel]),
            "at": at,
            "store": store,
            "source": source,
            "by": by,
            "recorded_at": now,
        }
        for channel in CONSENT_CHANNELS
        if channel in consent
    ]


def _ids_of(member: Member) -> list[str]:
    """The member's id and every id merged into it (at any depth)."""
    ids = [member.id]
    frontier = [member.id]
    while frontier:
        found = [
            m.id
            for m in Member.select(Member.id).where(Member.merged_into.in_(frontier))
            if m.id not in ids
        ]
        ids += found
        frontier = found
    return ids


def consent_state(member_id: str) -> dict[str, dict[str, Any]]:
    """The answer in force per channel for a member (following merges): the newest one
    given under the member's id or any id merged into it. Channels without an answer
    are ``granted: False`` with ``at: None``."""
    member = resolve_member(Member._meta.database, member_id, lock=False)
    state: dict[str, dict[str, Any]] = {
        c: {"granted": False, "at": None, "store": None, "source": None} for c in CONSENT_CHANNELS
    }
    if member.status == ERASED:
        return state
    rows = (
        MemberConsent.select()
        .where(MemberConsent.member_id.in_(_ids_of(member)))
        .order_by(MemberConsent.at, MemberConsent.id)
    )
    for row in rows:
        if row.channel in state:
            state[row.channel] = {
                "granted": row.granted,
                "at": _iso(row.at),
                "store": row.store,
                "source": row.source,
            }
    return state


def consented(member_id: str, channel: str) -> bool:
    """Whether the member's answer in force allows marketing on ``channel`` (sms, wechat,
    call). An unknown or erased member, or no answer on record, is no consent."""
    if channel not in CONSENT_CHANNELS:
        raise ValidationError(f"unknown consent channel {channel!r}", field="channel")
    try:
        return bool(consent_state(member_id)[channel]["granted"])
    except NotFound:
        return False


def members_consenting(channel: str) -> set[str]:
    """The live members whose answer in force allows marketing on ``channel``: what a
    campaign's list starts from (each answer counts for the member it was merged into;
    erased members are never in it). One pass over the channel's answers, oldest first."""
    if channel not in CONSENT_CHANNELS:
        raise ValidationError(f"unknown consent channel {channel!r}", field="channel")
    merged = dict(
        Member.select(Member.id, Member.merged_into).where(Member.status == "merged").tuples()
    )
    erased = {i for (i,) in Member.select(Member.id).where(Member.status == ERASED).tuples()}

    def live(member_id: str) -> str:
        for _ in range(len(merged) + 1):
            if member_id not in merged:
                break
            member_id = merged[member_id]
        return member_id

    answer: dict[str, bool] = {}
    rows = (
        MemberConsent.select(MemberConsent.member_id, MemberConsent.granted)
        .where(MemberConsent.channel == channel)
        .order_by(MemberConsent.at, MemberConsent.id)
        .tuples()
    )
    for member_id, granted in rows.iterator():
        answer[live(member_id)] = granted
    return {m for m, granted in answer.items() if granted and m not in erased}


def consent_answers(member_ids: list[str], channel: str) -> dict[str, tuple[bool, str]]:
    """The answer in force on ``channel`` per member of ``member_ids`` (granted, source),
    counting answers given under ids merged into them; a member without an answer is
    absent (no consent). One query for the merged ids, one for the answers."""
    if not member_ids:
        return {}
    live = {mid: mid for mid in member_ids}
    frontier = list(member_ids)
    for _ in range(4):  # merges chain rarely; four hops cover what HQ makes
        found = list(
            Member.select(Member.id, Member.merged_into)
            .where(Member.merged_into.in_(frontier))
            .tuples()
        )
        if not found:
            break
        for old, into in found:
            live[old] = live.get(into, into)
        frontier = [old for old, _ in found]
    C = MemberConsent
    answers: dict[str, tuple[bool, str]] = {}
    rows = (
        C.select(C.member_id, C.granted, C.source)
        .where((C.channel == channel) & C.member_id.in_(list(live)))
        .order_by(C.at, C.id)
        .tuples()
    )
    for mid, granted, source in rows:
        answers[live[mid]] = (bool(granted), source or "")
    return answers


# -- campaigns (channels): "member" = the member's own "no" (the unsubscribe page or an
# SMS reply 退订, hq/portal/unsubscribe.py); a campaign counts such a "no" as unsubscribed
MEMBER_SOURCE = "member"
HQ_CONSENT_SOURCES = ("hq", MEMBER_SOURCE)


def set_consent(
    db: pw.Database,
    member_id: str,
    consent: dict[str, bool],
    by: str,
    now: dt.datetime,
    source: str = "hq",
) -> dict[str, dict[str, Any]]:
    """A change of consent recorded at HQ: ``source`` "hq" (the console or ``huiyuan-hq
    consent``) or "member" (the member's own unsubscribe: the page's link or an SMS
    reply, hq/portal/unsubscribe.py)."""
    if source not in HQ_CONSENT_SOURCES:
        raise ValidationError(f"unknown consent source {source!r}", field="source")
    if not consent:
        raise ValidationError(
            "name at least one channel: --sms, --wechat or --call", field="consent"
        )
    with db.atomic():
        member = resolve_member(db, member_id)
        if member.status == ERASED:
            raise Conflict(f"会员 {member.id} 的个人信息已删除", field="member_id")
        MemberConsent.insert_many(
            consent_rows(member.id, consent, at=now, store=None, source=source, by=by, now=now)
        ).execute()
    log.info(
        "consent of member %s changed at HQ (%s) by %s: %s", member.id, source, by, sorted(consent)
    )
    return consent_state(member.id)


def _book_consent(ctx: Any, member_id: str, consent: dict[str, bool], at: str, source: str) -> None:
    """An answer from a till, written with the ingest batch's other rows."""
    body = ctx.item.body
    for row in consent_rows(
        member_id,
        consent,
        at=parse_instant(at, "registered_at" if source == "registration" else "changed_at"),
        store=ctx.item.store,
        source=source,
        by=body.get("cashier"),
        now=ctx.now,
    ):
        ctx.book.insert(MemberConsent, **row)


def apply_registration_consent(ctx: Any, body: dict[str, Any], member_id: str) -> None:
    """The registration item's ``consent``, as given at the till (absent: no rows, which
    ``consented`` reads as no consent)."""
    if body.get("consent"):
        _book_consent(ctx, member_id, body["consent"], body["registered_at"], "registration")


def apply_consent(ctx: Any, body: dict[str, Any]) -> None:
    """A ``consent`` item: the member changed their answer at a till."""
    member = ctx.book.member(body["member_id"])
    if member.status == ERASED:
        raise Conflict(f"会员 {member.id} 的个人信息已删除", field="member_id")
    _book_consent(ctx, member.id, body["consent"], body["changed_at"], "till")


# ---- export ---------------------------------------------------------------------------


def find_member_for_request(
    member_id: str | None = None, phone: str | None = None, card: str | None = None
) -> Member:
    """The member a request names by exactly one of id, phone or card (following merges)."""
    from hq.services import find_member

    given = [v for v in (member_id, phone, card) if v]
    if len(given) != 1:
        raise ValidationError(
            "name the member by exactly one of ID, --phone or --card", field="member"
        )
    if member_id:
        return resolve_member(Member._meta.database, member_id, lock=False)
    return find_member(given[0])


def _profile(m: Member) -> dict[str, Any]:
    return {
        "member_id": m.id,
        "name": m.name,
        "phone": m.phone,
        "gender": m.gender,
        "birthday": m.birthday,
        "birthday_calendar": m.birthday_calendar,
        "birthday_leap_month": m.birthday_leap_month,
        "card_type": m.card_type,
        "tier": m.tier,
        "staff_code": m.staff_code,
        # the password itself is never held; its scrypt hash is a credential, not
        # information about the member, so the export says only whether one is set
        "has_password": bool(m.password_hash),
        "registered_at": m.registered_at,
        "registered_store": m.registered_store,
        # upkeep: the richer profile and who brought the member
        "occupation": m.occupation,
        "preferences": m.preferences,
        "anniversaries": m.anniversaries,
        "notes": m.notes,
        "tags": m.tags,
        "extra": m.extra,
        "profile_score": m.profile_score,
        "referred_by": m.referred_by,
        "status": m.status,
        "merged_into": m.merged_into,
        "created_at": _iso(m.created_at),
        "updated_at": _iso(m.updated_at),
    }


def _rows(query: pw.ModelSelect, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for row in query:
        item = {}
        for f in fields:
            value = getattr(row, f)
            if isinstance(value, dt.date):
                value = _iso(value)
            item[f] = value
        out.append(item)
    return out


def member_export(member: Member) -> dict[str, Any]:
    """Every personal datum HQ holds about the member and every id merged into it."""
    ids = _ids_of(member)
    others = {m.id: m for m in Member.select().where(Member.id.in_(ids))}
    return {
        "member": _profile(member),
        "merged_records": [_profile(others[i]) for i in ids[1:] if i in others],
        "consent": consent_state(member.id),
        "consent_history": _rows(
            MemberConsent.select()
            .where(MemberConsent.member_id.in_(ids))
            .order_by(MemberConsent.at, MemberConsent.id),
            ("member_id", "channel", "granted", "at", "store", "source", "by"),
        ),
        "cards": _rows(
            Card.select().where(Card.member_id.in_(ids)).order_by(Card.card_no),
            ("card_no", "card_type", "status", "blocked_reason", "issued_store"),
        ),
        "balances": {
            "stored_value": {"principal": member.sv_principal, "bonus": member.sv_bonus},
            "points": member.points,
        },
        "points_lots": _rows(
            PointsLot.select().where(PointsLot.member_id.in_(ids)).order_by(PointsLot.earned_on),
            ("lot_id", "earned_on", "expires_on", "earned", "remaining", "store"),
        ),
        "ledger": _rows(
            LedgerEntry.select().where(LedgerEntry.member_id.in_(ids)).order_by(LedgerEntry.id),
            ("balance", "principal", "bonus", "points", "reason", "ref", "store", "at"),
        ),
        "sales": _rows(
            Sale.select().where(Sale.member_id.in_(ids)).order_by(Sale.occurred_at),
            ("sale_id", "store", "total", "occurred_at", "body"),
        ),
        "returns": _rows(
            Return.select().where(Return.member_id.in_(ids)).order_by(Return.occurred_at),
            ("return_id", "sale_id", "store", "refund_total", "occurred_at", "body"),
        ),
        "topups": _rows(
            TopUp.select().where(TopUp.member_id.in_(ids)).order_by(TopUp.occurred_at),
            ("topup_id", "store", "principal", "bonus", "occurred_at"),
        ),
        "coupons": _rows(
            Coupon.select().where(Coupon.member_id.in_(ids)).order_by(Coupon.code),
            ("code", "value", "status", "expires_on"),
        ),
        "merges": _rows(
            Merge.select()
            .where(Merge.from_member.in_(ids) | Merge.to_member.in_(ids))
            .order_by(Merge.at),
            ("from_member", "to_member", "store", "staff", "reason", "at"),
        ),
        "privacy_requests": _rows(
            PrivacyRequest.select()
            .where(PrivacyRequest.member_id.in_(ids))
            .order_by(PrivacyRequest.at),
            ("kind", "at", "by", "reason"),
        ),
    }


def export_member(db: pw.Database, member: Member, by: str, now: dt.datetime) -> dict[str, Any]:
    """The member's export, with the request recorded (audit) in the same transaction."""
    with db.atomic():
        PrivacyRequest.create(kind="export", member_id=member.id, at=now, by=by)
        data = member_export(member)
    log.info("personal data of member %s exported by %s", member.id, by)
    return data


# ---- erasure --------------------------------------------------------------------------


def _blank_payload(data: Any, ids: set[str]) -> Any:
    """A JSON value with the personal fields blanked in every object naming one of ``ids``
    as its ``member_id`` (an item, its body, a member record)."""
    if isinstance(data, list):
        return [_blank_payload(v, ids) for v in data]
    if not isinstance(data, dict):
        return data
    out = {k: _blank_payload(v, ids) for k, v in data.items()}
    if out.get("member_id") in ids:
        for key in PAYLOAD_FIELDS:
            if key in out:
                out[key] = ERASED_FIELDS.get(key, None) if key != "phone" else ""
    return out


def _scrub_bytes(payload: bytes, secrets: list[str]) -> bytes:
    """Raw bytes as received (a dead letter): every copy of the member's phone and
    name, as written and as JSON-escaped, removed."""
    for secret in secrets:
        for form in {secret, json.dumps(secret)[1:-1]}:
            payload = payload.replace(form.encode(), b"")
    return payload


def erase_member(
    db: pw.Database, member: Member, reason: str, by: str, now: dt.datetime
) -> list[Change]:
    """Erase the member's personal data (and that of every id merged into it); keep the
    money. Returns the change records written (pushed to the stores by the caller)."""
    if not reason.strip():
        raise ValidationError("say why (--reason)", field="reason")
    with db.atomic():
        member = resolve_member(db, member.id)
        if member.status == ERASED:
            raise Conflict(f"会员 {member.id} 的个人信息已删除", field="member_id")
        ids = _ids_of(member)
        rows = list(Member.select().where(Member.id.in_(ids)))
        phones = sorted({m.phone for m in rows if m.phone})
        names = sorted({m.name for m in rows if m.name}, key=len, reverse=True)
        PhoneKey.delete().where(PhoneKey.member_id.in_(ids) | PhoneKey.phone.in_(phones)).execute()
        MemberConsent.delete().where(MemberConsent.member_id.in_(ids)).execute()
        blank = dict(ERASED_FIELDS)
        # a later release's contact columns (e.g. a phone's lookup hash) go too
        for name, f in Member._meta.fields.items():
            if name.startswith("phone") and name not in blank:
                blank[name] = None if f.null else f.default
        Member.update(**blank, updated_at=now).where(Member.id.in_(ids)).execute()
        # merged ids stay "merged" so that their sales and ledger still lead to the survivor
        Member.update(status=ERASED).where(Member.id == member.id).execute()
        changes = ChangeSet()
        for card in Card.select().where(Card.member_id.in_(ids) & (Card.status == "active")):
            card.status = "blocked"
            card.blocked_reason = ERASED
            card.save()
            changes.add("card", card.card_no, card_state(card))
            changes.add(
                "card_block",
                card.card_no,
                {"card_no": card.card_no, "blocked": True, "reason": ERASED},
            )
        _scrub_stored_copies(set(ids), phones, names)
        # -- follow-ups (issue 14): what calls said, and their open tasks
        from hq.followups.tasks import erase_followups

        erase_followups(ids, now, changes)
        for m in Member.select().where(Member.id.in_(ids)).order_by(Member.id):
            changes.add("member", m.id, member_state(m), op="erase")
        PrivacyRequest.create(kind="erase", member_id=member.id, at=now, by=by, reason=reason)
        out = flush_changes(db, changes, now)
    log.info("personal data of member %s erased by %s (%d ids)", member.id, by, len(ids))
    return out


def _scrub_stored_copies(ids: set[str], phones: list[str], names: list[str]) -> None:
    """Copies of the member's contacts HQ keeps: earlier member change records, items
    held after a gap, dead letters as received, exception details, refusal reasons."""
    for rec in ChangeRecord.select().where(
        (ChangeRecord.entity == "member") & ChangeRecord.key.in_(list(ids))
    ):
        rec.data = _blank_payload(rec.data, ids)
        rec.save()
    for held in HeldItem.select():
        scrubbed = _blank_payload(held.item, ids)
        if scrubbed != held.item:
            held.item = scrubbed
            held.save()
    secrets = phones + names
    if secrets:
        for dead in DeadLetter.select():
            raw = bytes(dead.payload)
            if not any(p.encode() in raw for p in phones) and not any(
                i.encode() in raw for i in ids
            ):
                continue
            scrubbed = _scrub_bytes(raw, secrets)
            if scrubbed != raw:
                dead.payload = scrubbed
                dead.save()
    for exc in HqException.select().where(HqException.member_id.in_(list(ids))):
        exc.details = _blank_payload(exc.details, ids)
        exc.save()
    # refusal reasons of earlier releases repeated a mistyped phone
    for model in (ProcessedItem, DeadLetter):
        for phone in phones:
            for row in model.select(model.id, model.reason).where(model.reason.contains(phone)):
                model.update(reason=row.reason.replace(phone, "")).where(
                    model.id == row.id
                ).execute()
