"""Members for the campaign tests (tests/hq/test_campaign*.py): ``many(db, n)`` makes n
members with phones, consent to SMS and calls, and a stored list run of them to launch
a campaign at; the small fixed chain is tests/hq/marketing_data.py."""

from __future__ import annotations

import datetime as dt

import peewee as pw

from hq.marketing.campaigns import create
from hq.models import ListRun, ListRunMember, Member, MemberConsent, Store
from hq.privacy import consent_rows

AT = dt.datetime(2026, 11, 1)
SEND_AT = dt.datetime(2026, 12, 1, 2, 0)  # 10:00 in Shanghai, outside quiet hours


def member_id(i: int) -> str:
    return f"00000000-0000-0000-0001-{i:012d}"


def phone(i: int) -> str:
    return f"139{i:08d}"


def many(
    db: pw.Database, n: int, consent: dict[str, bool] | None = None, first: int = 0
) -> ListRun:
    """n members (ids ``member_id(first..)``), each consenting as ``consent`` (default:
    sms and call), and a stored run of them."""
    consent = {"sms": True, "call": True} if consent is None else consent
    with db.atomic():
        for code in ("S1", "S2"):
            Store.insert(code=code, name=code, created_at=AT).on_conflict_ignore().execute()
        rows = [
            {
                "id": member_id(i),
                "name": f"会员{i}",
                "phone": phone(i),
                "registered_store": "S1" if i % 2 else "S2",
                "staff_code": "E1" if i % 2 else "E2",
                "registered_at": "2026-01-01T10:00:00+08:00",
                "created_at": AT,
                "updated_at": AT,
            }
            for i in range(first, first + n)
        ]
        for chunk in range(0, len(rows), 500):
            Member.insert_many(rows[chunk : chunk + 500]).execute()
        answers = [
            row
            for r in rows
            for row in consent_rows(
                r["id"], consent, at=AT, store=None, source="hq", by="test", now=AT
            )
        ]
        for chunk in range(0, len(answers), 500):
            MemberConsent.insert_many(answers[chunk : chunk + 500]).execute()
        run = ListRun.create(
            kind="test", start=AT.date(), scope=f"test:{first}", members=n, made_at=AT, made_by="t"
        )
        ListRunMember.insert_many([{"run": run.id, "member_id": r["id"]} for r in rows]).execute()
    return run


def campaign(db: pw.Database, run: ListRun, **fields):
    """A draft campaign at ``run`` by SMS, sent at ``SEND_AT``."""
    data = {
        "name": "测试活动",
        "audience": {"run": run.id},
        "channels": ["sms"],
        "text": "{name}您好, 送您一份礼物",
        "send_at": SEND_AT,
        **fields,
    }
    return create(db, data, "marketer", AT)
