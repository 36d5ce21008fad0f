"""Personal data at HQ (PIPL): consent per channel, a member's export, erasure.

Items go through ``ingest_batch`` as a worker applies them; the commands run through
the CLI as an operator types them. SQLite and PostgreSQL alike (``hq_db``)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import stat
import traceback

import peewee as pw
import pytest
from click.testing import CliRunner

from core import protocol as p
from core.errors import ProtocolError
from core.ids import uuid7
from hq import privacy
from hq.cli import main
from hq.ingest import _transaction, first_line, ingest_batch
from hq.ledger import ledger_sums
from hq.models import (
    Card,
    ChangeRecord,
    DeadLetter,
    LedgerEntry,
    Member,
    MemberConsent,
    PhoneKey,
    PrivacyRequest,
    ProcessedItem,
    Sale,
    bind,
    is_postgres,
)
from tests.hq.edge_sim import Items

NOW = dt.datetime(2026, 12, 4, 2, 0)
PHONE = "13912345678"
OTHER_PHONE = "13987654321"
ALL_NO = {"sms": False, "wechat": False, "call": False}


def ingest(db, store: str, items: list[dict], epoch: int = 1):
    batch = p.make_batch(store, epoch, items)
    return ingest_batch(db, f"hy/v1/{store}/up/tx", store, batch, NOW).ack


def consent_item(items: Items, member_id: str, consent: dict, at: str) -> dict:
    body = {"member_id": member_id, "consent": consent, "changed_at": at, "cashier": "E01"}
    return items._item("consent", body)


@pytest.fixture
def cli(hq_db, hq_db_url):
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, ["--database-url", hq_db_url, *args])
        assert result.exit_code == code, result.output
        bind(hq_db, create=False)  # the CLI bound the models to its own connection
        return result.output

    return run


# ---- the wire -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("consent", "message"),
    [
        ({"sms": True, "wechat": False}, "missing field 'call'"),
        ({"sms": True, "wechat": False, "call": "yes"}, "'call' must be bool"),
        ({"sms": True, "wechat": False, "call": False, "email": True}, "unknown channel 'email'"),
        (["sms"], "must be an object"),
    ],
)
def test_a_registration_consent_names_every_channel_as_a_flag(consent, message):
    body = Items("S001").registration(uuid7(), PHONE, consent=consent)["body"]
    with pytest.raises(ProtocolError, match=message):
        p.validate_registration_body(body)


def test_a_registration_without_consent_is_still_valid():
    body = Items("S001").registration(uuid7(), PHONE)["body"]
    assert "consent" not in body
    assert p.validate_registration_body(body) is body


def test_a_consent_change_names_at_least_one_known_channel():
    ok = {
        "member_id": uuid7(),
        "consent": {"wechat": True},
        "changed_at": "2026-12-04T10:00:00+08:00",
    }
    assert p.validate_consent_body(ok)["consent"] == {"wechat": True}
    for bad, message in (({}, "names no channel"), ({"fax": True}, "unknown channel")):
        with pytest.raises(ProtocolError, match=message):
            p.validate_consent_body({**ok, "consent": bad})


def test_erase_is_a_change_op_and_others_are_not():
    raw = {"seq": 3, "entity": "member", "key": "m", "op": "erase", "data": {}}
    assert p.validate_change(raw).op == "erase"
    with pytest.raises(ProtocolError, match="op must be one of"):
        p.validate_change({**raw, "op": "forget"})


# ---- consent ------------------------------------------------------------------------


def test_consent_given_at_registration_is_recorded_with_when_and_where(hq_db):
    items = Items("S001")
    asked, silent = uuid7(), uuid7()
    consent = {"sms": True, "wechat": False, "call": False}
    ack = ingest(
        hq_db,
        "S001",
        [
            items.registration(
                asked, PHONE, at="2026-12-04T09:30:00+08:00", consent=consent, cashier="E02"
            ),
            items.registration(silent, OTHER_PHONE),  # an older till: no consent field
        ],
    )
    assert (ack.acked_through, ack.rejected) == (2, ())
    assert privacy.consented(asked, "sms") is True
    assert privacy.consented(asked, "wechat") is False
    assert privacy.consented(asked, "call") is False
    assert [privacy.consented(silent, c) for c in p.CONSENT_CHANNELS] == [False] * 3
    assert MemberConsent.select().where(MemberConsent.member_id == silent).count() == 0
    sms = privacy.consent_state(asked)["sms"]
    assert sms == {
        "granted": True,
        "at": "2026-12-04T01:30:00Z",
        "store": "S001",
        "source": "registration",
    }
    row = MemberConsent.get((MemberConsent.member_id == asked) & (MemberConsent.channel == "sms"))
    assert row.by == "E02"  # the cashier who registered the member
    # unknown members and unknown channels
    assert privacy.consented(uuid7(), "sms") is False
    with pytest.raises(Exception, match="unknown consent channel"):
        privacy.consented(asked, "email")


def test_consent_changed_at_a_till_and_at_hq_the_newest_answer_stands(hq_db, cli):
    items = Items("S001")
    mid = uuid7()
    ingest(hq_db, "S001", [items.registration(mid, PHONE, consent=ALL_NO, card_no="K77")])
    ack = ingest(
        hq_db,
        "S001",
        [
            consent_item(items, mid, {"wechat": True, "call": True}, "2026-12-04T10:00:00+08:00"),
            consent_item(items, uuid7(), {"sms": True}, "2026-12-04T10:01:00+08:00"),
        ],
    )
    assert ack.acked_through == 3
    assert [r.seq for r in ack.rejected] == [3]  # a member HQ does not know
    assert (privacy.consented(mid, "wechat"), privacy.consented(mid, "call")) == (True, True)
    assert privacy.consent_state(mid)["wechat"]["source"] == "till"
    # at HQ, by card number: call withdrawn, sms given
    out = cli("consent", "--card", "K77", "--call", "no", "--sms", "yes", "--by", "hq-li")
    assert "call" in out and "不同意" in out
    assert [privacy.consented(mid, c) for c in ("sms", "wechat", "call")] == [True, True, False]
    state = json.loads(cli("consent", mid, "--json"))["consent"]
    assert state["call"]["source"] == "hq" and state["call"]["store"] is None
    assert MemberConsent.get(MemberConsent.source == "hq").by == "hq-li"
    # the history is kept: 3 at registration, 2 at the till, 2 at HQ
    assert MemberConsent.select().where(MemberConsent.member_id == mid).count() == 7
    # naming a member twice, or no channel value the CLI knows, is refused
    cli("consent", mid, "--phone", PHONE, "--sms", "no", code=11)
    cli("consent", mid, "--sms", "maybe", code=2)


def test_consent_of_a_merged_registration_counts_for_the_survivor(hq_db):
    first, second = uuid7(), uuid7()
    ingest(
        hq_db,
        "S001",
        [Items("S001").registration(first, PHONE, at="2026-12-04T09:00:00+08:00", consent=ALL_NO)],
    )
    later = {"sms": False, "wechat": True, "call": False}
    ingest(
        hq_db,
        "S002",
        [Items("S002").registration(second, PHONE, at="2026-12-04T11:00:00+08:00", consent=later)],
    )
    assert Member.get_by_id(second).merged_into == first
    assert privacy.consented(first, "wechat") is True  # the newer answer, given at S002
    assert privacy.consented(second, "wechat") is True
    assert privacy.members_consenting("wechat") == {first}  # the survivor, once
    assert privacy.members_consenting("sms") == set()


def test_a_campaign_list_holds_the_members_whose_newest_answer_is_yes(hq_db, cli):
    items = Items("S001")
    yes, no, changed, silent = uuid7(), uuid7(), uuid7(), uuid7()
    phones = ("13900000011", "13900000012", "13900000013", "13900000014")
    ingest(
        hq_db,
        "S001",
        [
            items.registration(yes, phones[0], consent={**ALL_NO, "sms": True}),
            items.registration(no, phones[1], consent=ALL_NO),
            items.registration(changed, phones[2], consent={**ALL_NO, "sms": True}),
            items.registration(silent, phones[3]),
            consent_item(items, changed, {"sms": False}, "2099-01-01T00:00:00+08:00"),
        ],
    )
    assert privacy.members_consenting("sms") == {yes}
    cli("consent", no, "--sms", "yes")
    assert privacy.members_consenting("sms") == {yes, no}
    cli("erase-member", yes, "--reason", "asked", "--yes", "--no-push")
    assert privacy.members_consenting("sms") == {no}
    assert privacy.members_consenting("call") == set()


# ---- export ---------------------------------------------------------------------------


def test_export_member_holds_everything_hq_knows_and_is_audited(hq_db, cli, tmp_path, caplog):
    items = Items("S001")
    mid = uuid7()
    consent = {"sms": True, "wechat": False, "call": False}
    ingest(
        hq_db,
        "S001",
        [
            items.registration(mid, PHONE, card_no="K1", name="李四", consent=consent),
            items.topup(mid, 10000),
            items.sale(mid, 5000, stored_value=(4000, 0)),
        ],
    )
    out = tmp_path / "export.json"
    cli("export-member", "--phone", PHONE, "--out", str(out), "--by", "hq-zhao")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    data = json.loads(out.read_text(encoding="utf-8"))
    m = Member.get_by_id(mid)
    assert data["member"]["member_id"] == mid
    assert (data["member"]["name"], data["member"]["phone"]) == ("李四", PHONE)
    assert "password_hash" not in data["member"]
    assert data["consent"]["sms"]["granted"] is True
    assert len(data["consent_history"]) == 3
    assert [c["card_no"] for c in data["cards"]] == ["K1"]
    assert data["balances"]["stored_value"] == {"principal": m.sv_principal, "bonus": m.sv_bonus}
    assert len(data["ledger"]) == LedgerEntry.select().where(LedgerEntry.member_id == mid).count()
    assert [s["sale_id"] for s in data["sales"]] == [s.sale_id for s in Sale.select()]
    assert len(data["topups"]) == 1
    request = PrivacyRequest.get(PrivacyRequest.member_id == mid)
    assert (request.kind, request.by) == ("export", "hq-zhao")
    # by card to stdout, the same data (and now two audited requests)
    again = json.loads(cli("export-member", "--card", "K1"))
    assert again["member"] == data["member"]
    assert len(again["privacy_requests"]) == 2
    assert PHONE not in caplog.text
    cli("export-member", code=11)  # nobody named
    cli("export-member", "--phone", "13000000000", code=12)


# ---- erasure --------------------------------------------------------------------------


def test_erase_member_removes_the_person_and_keeps_the_money(hq_db, cli):
    s1, s2 = Items("S001"), Items("S002")
    first, second = uuid7(), uuid7()
    consent = {"sms": True, "wechat": True, "call": False}
    ingest(
        hq_db,
        "S001",
        [
            s1.registration(
                first,
                PHONE,
                at="2026-12-04T09:00:00+08:00",
                card_no="K1",
                name="王小明",
                consent=consent,
                password_hash=p.SCRYPT_PREFIX + "c2FsdHNhbHQ=$ZGlnZXN0ZGlnZXN0",
                birthday="1990-05-01",
            ),
            s1.topup(first, 20000),
            s1.sale(first, 5000, stored_value=(4000, 0)),
        ],
    )
    ingest(
        hq_db,
        "S002",
        [
            s2.registration(
                second, PHONE, at="2026-12-04T10:00:00+08:00", card_no="K2", name="王小明"
            ),
            s2.sale(second, 3000),
        ],
    )
    # a copy of the phone in a payload HQ could not read, kept as received
    ingest_batch(hq_db, "hy/v1/S002/up/tx", "S002", f'{{"phone": "{PHONE}"'.encode(), NOW)
    # and in a refusal's reason, as an earlier release wrote them
    ProcessedItem.create(
        store="S002",
        epoch=1,
        seq=99,
        status="rejected",
        code="apply_failed",
        reason=f"手机号应为以1开头的11位数字: '{PHONE}0'",
        processed_at=NOW,
    )
    unrelated = uuid7()
    ingest(hq_db, "S001", [s1.registration(unrelated, OTHER_PHONE, name="赵六")])
    assert Member.get_by_id(second).merged_into == first
    before = ledger_sums(first)
    ledger_rows = LedgerEntry.select().count()
    sales = Sale.select().count()

    cli("erase-member", second, code=2)  # --reason is required
    out = cli(
        "erase-member",
        second,
        "--reason",
        "member asked (ticket 42)",
        "--yes",
        "--no-push",
        "--by",
        "hq-qian",
    )
    assert first in out  # a merged id leads to the survivor

    survivor, merged = Member.get_by_id(first), Member.get_by_id(second)
    for m in (survivor, merged):
        assert (m.name, m.phone, m.gender, m.birthday, m.password_hash) == (
            "",
            None,
            "",
            None,
            None,
        )
    assert (survivor.status, merged.status, merged.merged_into) == ("erased", "merged", first)
    assert PhoneKey.select().where(PhoneKey.phone == PHONE).count() == 0
    assert MemberConsent.select().where(MemberConsent.member_id.in_([first, second])).count() == 0
    assert [privacy.consented(first, c) for c in p.CONSENT_CHANNELS] == [False] * 3
    # the money stays: ledger, balances, sales
    assert ledger_sums(first) == before
    assert (survivor.sv_principal, survivor.sv_bonus, survivor.points) == (
        before["principal"],
        before["bonus"],
        before["points"],
    )
    assert (LedgerEntry.select().count(), Sale.select().count()) == (ledger_rows, sales)
    # cards are blocked, not removed
    assert {
        (c.card_no, c.status, c.blocked_reason)
        for c in Card.select().where(Card.member_id == first)
    } == {
        ("K1", "blocked", "erased"),
        ("K2", "blocked", "erased"),
    }
    # no copy of the phone or the name is left in what HQ stores as JSON or bytes
    for rec in ChangeRecord.select():
        text = json.dumps(rec.data, ensure_ascii=False)
        assert PHONE not in text and "王小明" not in text, (rec.entity, rec.op, text)
    for dead in DeadLetter.select():
        assert PHONE.encode() not in bytes(dead.payload)
    assert PHONE not in ProcessedItem.get(ProcessedItem.seq == 99).reason
    # the stores are told: one erase record per id, the person's fields empty
    erased = {r.key: r.data for r in ChangeRecord.select().where(ChangeRecord.op == "erase")}
    assert set(erased) == {first, second}
    assert erased[first]["status"] == "erased" and erased[first]["name"] == ""
    assert erased[first]["stored_value"] == {
        "principal": survivor.sv_principal,
        "bonus": survivor.sv_bonus,
    }
    # audited; the other member untouched
    req = PrivacyRequest.get(PrivacyRequest.kind == "erase")
    assert (req.member_id, req.by, req.reason) == (first, "hq-qian", "member asked (ticket 42)")
    assert Member.get_by_id(unrelated).phone == OTHER_PHONE
    # the export now shows an id with money and no person
    export = json.loads(cli("export-member", first))
    assert export["member"]["name"] == "" and export["member"]["phone"] is None
    assert [r["name"] for r in export["merged_records"]] == [""]
    cli("erase-member", first, "--reason", "again", "--yes", "--no-push", code=13)
    cli("consent", first, "--sms", "yes", code=13)
    # the same phone can sign up again, as a new member
    fresh = uuid7()
    assert ingest(hq_db, "S001", [s1.registration(fresh, PHONE)]).rejected == ()
    assert Member.get_by_id(fresh).status == "active"
    assert PhoneKey.get_by_id(PHONE).member_id == fresh


def test_a_till_sale_for_an_erased_member_still_posts(hq_db, cli):
    items = Items("S001")
    mid = uuid7()
    ingest(hq_db, "S001", [items.registration(mid, PHONE), items.topup(mid, 10000)])
    cli("erase-member", mid, "--reason", "asked", "--yes", "--no-push")
    # a sale made offline before the store heard of the erasure
    ack = ingest(hq_db, "S001", [items.sale(mid, 2000, stored_value=(2000, 0))])
    assert ack.rejected == ()
    m = Member.get_by_id(mid)
    assert m.sv_principal == ledger_sums(mid)["principal"] == 8000
    assert m.status == "erased"
    # a consent change from a till for the erased member is refused, by name
    ack = ingest(
        hq_db, "S001", [consent_item(items, mid, {"sms": True}, "2026-12-04T12:00:00+08:00")]
    )
    assert [r.code for r in ack.rejected] == ["apply_failed"]


# ---- logs -------------------------------------------------------------------------------


def test_a_mistyped_phone_is_refused_without_repeating_it(hq_db, caplog):
    caplog.set_level(logging.INFO)
    mistyped = "139573102845"  # twelve digits: still someone's number
    ack = ingest(hq_db, "S001", [Items("S001").registration(uuid7(), mistyped)])
    assert [r.code for r in ack.rejected] == ["apply_failed"]
    assert "11" in ack.rejected[0].reason and "12" in ack.rejected[0].reason
    assert mistyped not in ack.rejected[0].reason
    assert mistyped[:11] not in caplog.text and mistyped[1:] not in caplog.text


def test_a_unique_key_race_is_logged_without_the_key(hq_db):
    PhoneKey.create(phone=PHONE, member_id=uuid7())
    with pytest.raises(pw.IntegrityError) as err, hq_db.atomic():
        PhoneKey.create(phone=PHONE, member_id=uuid7())
    assert first_line(err.value)  # the error's kind and constraint
    if is_postgres(hq_db):  # PostgreSQL's DETAIL line names the key's value
        assert PHONE in str(err.value)
    assert PHONE not in first_line(err.value)
    # a race that outlasts every retry goes up (logged with its traceback, and its text
    # is the refusal's reason) without the value either
    with pytest.raises(pw.IntegrityError) as err:
        _transaction(hq_db, lambda: PhoneKey.create(phone=PHONE, member_id=uuid7()))
    assert "phone_key" in str(err.value) or "UNIQUE" in str(err.value)
    assert PHONE not in "".join(traceback.format_exception(err.value))
