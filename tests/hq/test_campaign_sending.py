"""Sending campaigns (hq/marketing/sending.py, docs/campaigns.md "Sending") through a real
FakeSmsGateway (a local HTTP server): the text and its unsubscribe line, consent and
unsubscription read at send time, the per-member cap across campaigns, quiet hours,
backoff, refusals, a ``sending`` row left by a crash sent again with its key, delivery
reports, the scheduler's job; and a send run killed (SIGKILL) mid-batch and run again,
which messages every treated consenting member exactly once."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from hq import scheduler
from hq.channels.fake_gateway import FakeSmsGateway
from hq.channels.sms import HttpSmsGateway
from hq.config import HqConfig
from hq.marketing import campaigns, sending
from hq.marketing import settings as marketing_settings
from hq.models import (
    Campaign,
    CampaignRecipient,
    CampaignSend,
    Coupon,
    Member,
    MemberConsent,
    MemberWechat,
)
from hq.privacy import set_consent
from hq.programme.coupons import add_template
from tests.hq import campaign_data as cd

NOW = cd.SEND_AT  # 10:00 in Shanghai
TEN = {"id": "TEN", "name": "满100减10", "kind": "amount", "amount": 1000, "min_spend": 10000,
       "valid_days": 30, "per_member_limit": 1}  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gw():
    with FakeSmsGateway(token="t0ken") as gateway:
        yield gateway


@pytest.fixture
def sms(gw):
    return HttpSmsGateway(gw.url, "t0ken", timeout=10)


@pytest.fixture
def config(hq_db_url):
    return HqConfig(database_url=hq_db_url, lookup_key_file=os.environ["HY_HQ_LOOKUP_KEY_FILE"])


def launched(db, n=20, **fields):
    run = cd.many(db, n)
    c = cd.campaign(db, run, **fields)
    return campaigns.launch(db, c.id, "marketer", cd.AT, cd.AT.date())


def treated():
    R = CampaignRecipient
    return {r.member_id for r in R.select().where(~R.control)}


def by_status():
    return Counter(s.status for s in CampaignSend.select())


# ---- a send ------------------------------------------------------------------------------


def test_every_treated_member_gets_one_message_and_the_benefit(hq_db, gw, sms, config):
    add_template(hq_db, TEN, by="hq-li", now=cd.AT)
    c = launched(
        hq_db, 30, benefit={"coupon": "TEN"}, text="{name}您好, 送您{coupon}券: {link}",
        control_pct=20,
    )  # fmt: skip
    before = sending.send_due(hq_db, {"sms": sms}, NOW - dt.timedelta(minutes=1), config=config)
    assert gw.sent == [] and before == {"done": 0}  # not yet its time
    counts = sending.send_due(hq_db, {"sms": sms}, NOW, config=config)
    members = treated()
    assert counts == {"sent": len(members), "benefits": len(members), "done": 1}
    assert sorted(m["to"] for m in gw.sent) == sorted(
        Member.get_by_id(mid).phone for mid in members
    )
    member_of = {cd.phone(i): cd.member_id(i) for i in range(30)}
    for m in gw.sent:
        assert m["idempotency_key"] == m["header_key"] == f"c{c.id}:{member_of[m['to']]}:sms"
    for m in gw.sent:
        assert m["text"].startswith("会员") and "满100元减10.00元券" in m["text"]
        assert "https://m.example.cn/m/" in m["text"] and " 退订: https://" in m["text"]
    rows = list(CampaignSend.select())
    assert {(r.status, r.attempts, r.sent_at) for r in rows} == {("sent", 1, NOW)}
    assert len({r.gateway_id for r in rows}) == len(rows) and all(r.gateway_id for r in rows)
    assert {co.member_id for co in Coupon.select()} == members  # the control group: nothing
    assert campaigns.get(c.id).status == "done" and campaigns.get(c.id).finished_at == NOW
    assert sending.send_due(hq_db, {"sms": sms}, NOW + dt.timedelta(hours=1), config=config) == {
        "done": 0
    }
    assert len(gw.sent) == len(members) and Coupon.select().count() == len(members)


def test_consent_unsubscribe_and_contact_are_read_at_send_time(hq_db, gw, sms, config):
    c = launched(hq_db, 6, channels=["sms", "wechat"])
    set_consent(hq_db, cd.member_id(0), {"sms": False}, "hq-li", cd.AT)  # after launch
    MemberConsent.create(
        member_id=cd.member_id(1), channel="sms", granted=False, at=cd.AT, source="member", by="member:page",
        recorded_at=cd.AT,
    )  # fmt: skip
    Member.update(phone=None).where(Member.id == cd.member_id(2)).execute()
    set_consent(hq_db, cd.member_id(3), {"wechat": True}, "hq-li", cd.AT)
    set_consent(hq_db, cd.member_id(4), {"wechat": True}, "hq-li", cd.AT)
    MemberWechat.create(
        member_id=cd.member_id(4), openid="oPENID4", bound_at=cd.AT, source="import"
    )
    with FakeSmsGateway(token="wx") as wx:  # a stand-in for the WeChat adapter's server
        channels = {"sms": sms, "wechat": HttpSmsGateway(wx.url, "wx", timeout=10)}
        counts = sending.send_due(hq_db, channels, NOW, config=config)
        assert [m["to"] for m in wx.sent] == ["oPENID4"]
        assert "退订" not in wx.sent[0]["text"]  # the unsubscribe line is the SMS's
    assert sorted(m["to"] for m in gw.sent) == [cd.phone(3), cd.phone(4), cd.phone(5)]
    assert counts["sent"] == 4 and counts["skipped_consent"] == 5  # 0 sms, 0/1/2/5 wechat
    assert counts["skipped_unsubscribed"] == 1 and counts["skipped_no_contact"] == 2
    assert campaigns.progress(c.id)["skipped"] == {"consent": 5, "unsubscribed": 1, "no_contact": 2}


def test_a_member_merged_after_launch_gets_one_message_at_the_survivor(hq_db, gw, sms, config):
    launched(hq_db, 4)
    cd.many(hq_db, 1, first=99)  # a member outside the audience
    merge = {cd.member_id(1): cd.member_id(0), cd.member_id(2): cd.member_id(99)}
    for old, into in merge.items():
        Member.update(status="merged", merged_into=into).where(Member.id == old).execute()
    counts = sending.send_due(hq_db, {"sms": sms}, NOW, config=config)
    assert sorted(m["to"] for m in gw.sent) == [cd.phone(0), cd.phone(3), cd.phone(99)]
    assert counts["sent"] == 3 and counts["skipped_merged"] == 1
    skipped = CampaignSend.get(CampaignSend.status == "skipped")
    assert (skipped.member_id, skipped.reason) == (cd.member_id(1), "merged")


def test_a_member_hears_from_at_most_cap_campaigns_in_cap_days(hq_db, gw, sms, config):
    run = cd.many(hq_db, 4)
    ids = [cd.campaign(hq_db, run, name=f"活动{i}").id for i in range(3)]
    old = cd.campaign(hq_db, run, name="上月活动", send_at=NOW - dt.timedelta(days=8))
    for cid in [*ids, old.id]:
        campaigns.launch(hq_db, cid, "m", cd.AT, cd.AT.date())
    S = CampaignSend
    # last month's campaign reached everyone 8 days ago: outside the 7 days, not counted
    S.update(status="sent", sent_at=NOW - dt.timedelta(days=8)).where(
        S.campaign == old.id
    ).execute()
    counts = sending.send_due(hq_db, {"sms": sms}, NOW, config=config)
    assert counts["sent"] == 8 and counts["skipped_cap"] == 4
    per_member = Counter(m["to"] for m in gw.sent)
    assert per_member == {cd.phone(i): 2 for i in range(4)}
    # the next day the same members are still at their cap for a new campaign
    new = cd.campaign(hq_db, run, name="次日活动", send_at=NOW + dt.timedelta(days=1))
    campaigns.launch(hq_db, new.id, "m", cd.AT, cd.AT.date())
    again = sending.send_due(hq_db, {"sms": sms}, NOW + dt.timedelta(days=1), config=config)
    assert again["skipped_cap"] == 4 and len(gw.sent) == 8
    # a chain that allows three sends it
    values = {**marketing_settings.current(hq_db), "cap_campaigns": 3}
    S.update(status="pending", reason="").where(S.campaign == new.id).execute()
    Campaign.update(status="scheduled").where(Campaign.id == new.id).execute()
    more = sending.send_due(hq_db, {"sms": sms}, NOW + dt.timedelta(days=1), values, config=config)
    assert more["sent"] == 4 and len(gw.sent) == 12


@pytest.mark.parametrize(
    "local, start, end, until",
    [
        ("2026-12-01 22:00", 21, 9, "2026-12-02 09:00"),
        ("2026-12-02 03:30", 21, 9, "2026-12-02 09:00"),
        ("2026-12-01 21:00", 21, 9, "2026-12-02 09:00"),
        ("2026-12-01 09:00", 21, 9, None),
        ("2026-12-01 20:59", 21, 9, None),
        ("2026-12-01 13:00", 12, 14, "2026-12-01 14:00"),
        ("2026-12-01 14:00", 12, 14, None),
        ("2026-12-01 23:00", 0, 0, None),
    ],
)
def test_quiet_hours_in_chain_time(local, start, end, until):
    zone = HqConfig().zone()
    now = dt.datetime.fromisoformat(local).replace(tzinfo=zone).astimezone(dt.UTC)
    got = sending.quiet_until(now.replace(tzinfo=None), zone, start, end)
    if until is None:
        assert got is None
    else:
        want = dt.datetime.fromisoformat(until).replace(tzinfo=zone).astimezone(dt.UTC)
        assert got == want.replace(tzinfo=None)


def test_quiet_hours_defer_what_is_due_to_their_end(hq_db, gw, sms, config):
    launched(hq_db, 3)
    night = dt.datetime(2026, 12, 1, 14, 0)  # 22:00 in Shanghai
    assert sending.send_due(hq_db, {"sms": sms}, night, config=config) == {"deferred_quiet": 3}
    assert gw.sent == []
    morning = dt.datetime(2026, 12, 2, 1, 0)  # 09:00
    assert {s.next_at for s in CampaignSend.select()} == {morning}
    early = sending.send_due(hq_db, {"sms": sms}, dt.datetime(2026, 12, 2, 0, 59), config=config)
    assert early == {"deferred_quiet": 0} and gw.sent == []
    assert sending.send_due(hq_db, {"sms": sms}, morning, config=config)["sent"] == 3


# ---- failures ---------------------------------------------------------------------------


def test_failures_back_off_then_fail_after_six_attempts(hq_db, gw, sms, config):
    launched(hq_db, 1)
    at, waits = NOW, []
    for attempt in range(1, 7):
        gw.fail_next(500)
        counts = sending.send_due(hq_db, {"sms": sms}, at, config=config)
        row = CampaignSend.get()
        assert row.attempts == attempt and "HTTP 500" in row.last_error
        if attempt < 6:
            assert counts["retry"] == 1 and row.status == "pending"
            waits.append(int((row.next_at - at).total_seconds() // 60))
            early = sending.send_due(
                hq_db, {"sms": sms}, row.next_at - dt.timedelta(seconds=1), config=config
            )
            assert "retry" not in early and CampaignSend.get().attempts == attempt  # not yet due
            at = row.next_at
    assert waits == [1, 2, 4, 8, 16]
    assert counts["failed"] == 1 and row.status == "failed" and gw.sent == []
    assert Campaign.get().status == "done"


def test_a_refusal_is_final_and_a_timeout_is_retried_with_the_same_key(hq_db, gw, config):
    sms = HttpSmsGateway(gw.url, "t0ken", timeout=1)
    launched(hq_db, 2)
    gw.fail_next(400)
    gw.fail_next("timeout", seconds=5)  # longer than the client's 1 s
    counts = sending.send_due(hq_db, {"sms": sms}, NOW, config=config)
    assert counts == {"failed": 1, "retry": 1, "done": 0}
    rows = {r.status: r for r in CampaignSend.select()}
    assert rows["failed"].attempts == 1 and "refused" in rows["failed"].last_error
    assert "timeout" in rows["pending"].last_error
    later = sending.send_due(hq_db, {"sms": sms}, NOW + dt.timedelta(minutes=1), config=config)
    assert later["sent"] == 1 and [m["idempotency_key"] for m in gw.sent] == [rows["pending"].key]
    assert Campaign.get().status == "done"


def test_a_row_left_sending_is_sent_again_with_its_key_once_its_lease_is_out(
    hq_db, gw, sms, config
):
    launched(hq_db, 3)
    renderer = sending.Renderer(config, NOW)
    values = marketing_settings.current(hq_db)
    messages, _ = sending._claim(hq_db, ["sms"], NOW, values, 10, renderer)
    # the gateway took the first before the run died; the others never left
    sms.send(messages[0].to, messages[0].text, messages[0].key)
    assert by_status() == {"sending": 3}
    soon = sending.send_due(hq_db, {"sms": sms}, NOW + dt.timedelta(minutes=5), config=config)
    assert "sent" not in soon and len(gw.sent) == 1  # still within the lease
    after = sending.send_due(hq_db, {"sms": sms}, NOW + sending.LEASE, config=config)
    assert after["sent"] == 3 and by_status() == {"sent": 3}
    assert Counter(m["idempotency_key"] for m in gw.sent) == {m.key: 1 for m in messages}
    assert {r.attempts for r in CampaignSend.select()} == {2}


def test_cancel_stops_what_is_pending(hq_db, gw, sms, config):
    c = launched(hq_db, 4)
    campaigns.cancel(hq_db, c.id, "m", NOW)
    assert sending.send_due(hq_db, {"sms": sms}, NOW, config=config) == {"done": 0}
    assert gw.sent == [] and campaigns.get(c.id).status == "cancelled"


# ---- delivery reports, the job ----------------------------------------------------------


class Reporting:
    """The SMS adapter plus delivery reports read from a table the test fills (the
    channels part adds ``statuses`` to the real adapters)."""

    def __init__(self, inner, answers):
        self.inner, self.answers, self.asked = inner, answers, []

    def send(self, to, text, key):
        return self.inner.send(to, text, key)

    def statuses(self, ids):
        self.asked.append(list(ids))
        return {i: self.answers[i] for i in ids if i in self.answers}


def test_delivery_reports_mark_sent_messages(hq_db, gw, sms, config):
    launched(hq_db, 3)
    channel = Reporting(sms, {})
    sending.send_due(hq_db, {"sms": channel}, NOW, config=config)
    ids = sorted(r.gateway_id for r in CampaignSend.select())
    channel.answers.update({ids[0]: "delivered", ids[1]: "failed"})
    later = NOW + dt.timedelta(minutes=5)
    assert sending.poll_deliveries(hq_db, {"sms": channel}, later) == {"delivered": 1, "failed": 1}
    assert by_status() == {"delivered": 1, "failed": 1, "sent": 1}
    assert CampaignSend.get(CampaignSend.gateway_id == ids[0]).delivered_at == later
    assert sending.poll_deliveries(hq_db, {"sms": sms}, later) == {}  # no reports: skipped
    assert sending.poll_deliveries(hq_db, {"sms": channel}, later) == {}
    assert channel.asked[-1] == [ids[2]]


def test_the_scheduler_job_sends_through_the_configured_gateway(hq_db, hq_db_url, gw, tmp_path):
    launched(hq_db, 5)
    secret = tmp_path / "sms.token"
    secret.write_text("t0ken\n")
    config = HqConfig(
        database_url=hq_db_url, lookup_key_file=os.environ["HY_HQ_LOOKUP_KEY_FILE"],
        sms_gateway_url=gw.url, sms_credentials_file=str(secret),
    )  # fmt: skip
    (job,) = [j for j in scheduler.JOBS if j.name == "campaigns"]
    assert job.every == dt.timedelta(minutes=1)
    counts = job.run(scheduler.JobContext(hq_db, config, clock=lambda: NOW))
    assert counts["sent"] == 5 and counts["done"] == 1 and len(gw.sent) == 5


# ---- the crash ---------------------------------------------------------------------------

RUN = """
import datetime as dt, json, os, sys
from hq.channels.sms import HttpSmsGateway
from hq.config import HqConfig
from hq.marketing.sending import send_due
from hq.models import bind, open_database
url, gateway, now = sys.argv[1], sys.argv[2], dt.datetime.fromisoformat(sys.argv[3])
config = HqConfig(database_url=url, lookup_key_file=os.environ["HY_HQ_LOOKUP_KEY_FILE"])
db = bind(open_database(url), create=False)  # no ``with``: that is one transaction
channels = {"sms": HttpSmsGateway(gateway, "t0ken", timeout=60)}
for _ in range(50):
    counts = send_due(db, channels, now, limit=1000, config=config)
    print(json.dumps(counts), flush=True)
    if not counts.get("sent") and not counts.get("retry"):
        break
"""


class StallingGateway(FakeSmsGateway):
    """The fake gateway, stalling the ``stall_at``-th request (until stopped): the send
    run waits on it in the middle of a batch, holding the batch's answers unrecorded."""

    def __init__(self, stall_at: int) -> None:
        super().__init__(token="t0ken")
        self.stall_at, self.requests, self.stalled = stall_at, 0, threading.Event()
        self.keys_seen: Counter[str] = Counter()
        handle = self._handle

        def counting(req):
            with self._lock:
                self.requests += 1
                mine = self.requests
                self.keys_seen[req.headers.get("Idempotency-Key")] += 1
            if mine == self.stall_at:
                self.stalled.set()
                self._release.wait(120)
            handle(req)

        self._handle = counting


def _run(db_url, gateway_url, now):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", RUN, db_url, gateway_url, now.isoformat()],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_a_run_killed_mid_batch_and_run_again_messages_everyone_once(hq_db, hq_db_url):
    add_template(hq_db, TEN, by="hq-li", now=cd.AT)
    members = 700
    run = cd.many(hq_db, members)
    set_consent(hq_db, cd.member_id(7), {"sms": False}, "hq-li", cd.AT)
    c = cd.campaign(hq_db, run, benefit={"coupon": "TEN"}, text="送您{coupon}", control_pct=10)
    campaigns.launch(hq_db, c.id, "m", cd.AT, cd.AT.date())
    expected = {
        cd.phone(i)
        for i in range(members)
        if i != 7 and not campaigns.is_control(c.id, cd.member_id(i), 10)
    }
    # the third batch's 50th request stalls: two batches recorded, the third in flight
    with StallingGateway(stall_at=2 * sending.BATCH + 50) as gw:
        first = _run(hq_db_url, gw.url, NOW)
        try:
            assert gw.stalled.wait(120), first.communicate(timeout=5)
            deadline = time.monotonic() + 30
            while len(gw.sent) < 2 * sending.BATCH + 100 and time.monotonic() < deadline:
                time.sleep(0.05)  # let the batch's other workers go on past the stall
            first.send_signal(signal.SIGKILL)
        finally:
            first.kill()
            first.communicate(timeout=30)
        assert first.returncode == -signal.SIGKILL
        left = by_status()
        # two batches recorded, the third in flight, the rest claimed behind it (the
        # pipeline) or still pending
        assert left["sent"] == 2 * sending.BATCH - 1 and left["skipped"] == 1
        assert left["sending"] >= sending.BATCH
        assert left["sending"] + left["pending"] == len(expected) - left["sent"]
        assert Coupon.select().count() == 2 * sending.BATCH - 1  # the recorded ones only
        accepted_before = len(gw.sent)
        assert accepted_before > 2 * sending.BATCH  # the gateway took some of the third
        # the run again, once the lease of the rows it left ``sending`` is out
        second = _run(hq_db_url, gw.url, NOW + sending.LEASE)
        out, err = second.communicate(timeout=300)
        assert second.returncode == 0, err
        tos = Counter(m["to"] for m in gw.sent)
        resent = [k for k, n in gw.keys_seen.items() if n > 1]
    assert set(tos) == expected and set(tos.values()) == {1}  # nobody missed, nobody twice
    assert resent  # the third batch went again, each with its own key
    assert by_status() == {"sent": len(expected), "skipped": 1}
    assert {co.member_id for co in Coupon.select()} == {
        r.member_id for r in CampaignRecipient.select().where(~CampaignRecipient.control)
    } - {cd.member_id(7)}
    assert Campaign.get_by_id(c.id).status == "done"
