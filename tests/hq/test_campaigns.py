"""Campaigns (hq/marketing/campaigns.py, docs/campaigns.md "Campaigns"): checking each
field, launching (frozen audience, the control split, the sends) once, cancelling, the
benefit given once, what a screen reads, the call list; the JSON routes and the CLI."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from core.errors import Conflict, NotFound, ValidationError
from hq.api import create_app
from hq.config import HqConfig
from hq.marketing import api as marketing_api
from hq.marketing import campaigns
from hq.marketing import lists as marketing_lists
from hq.models import (
    AuditEntry,
    Campaign,
    CampaignRecipient,
    CampaignSend,
    ChangeRecord,
    Coupon,
    ListRun,
    Member,
)
from hq.privacy import set_consent
from hq.programme.coupons import add_template
from tests.hq import campaign_data as cd
from tests.hq import marketing_data as md
from tests.hq.signin import bearer_client, session_client

TEN = {"id": "TEN", "name": "满100减10", "kind": "amount", "amount": 1000, "min_spend": 10000,
       "valid_days": 30, "per_member_limit": 1}  # fmt: skip


def good(**fields):
    return {
        "name": "沉睡唤醒",
        "audience": {"list": "dormant", "start": "2026-12-01"},
        "benefit": {},
        "channels": ["sms"],
        "text": "{name}您好, 好久不见",
        "send_at": "2026-12-01T10:00",
        **fields,
    }


@pytest.fixture
def chain(hq_db):
    return md.load(hq_db)


# ---- checking ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, field, words",
    [
        ({"name": " "}, "name", "活动名称"),
        ({"name": "x" * 65}, "name", "不超过64字"),
        ({"audience": {}}, "audience", "活动对象"),
        ({"audience": {"list": "weekly"}}, "audience", "名单类型无效"),
        ({"audience": {"list": "dormant", "start": "2026-13-01"}}, "audience", "YYYY-MM-DD"),
        ({"audience": {"segment": 999}}, "segment", "分群不存在"),
        ({"audience": {"run": 999}}, "run", "名单不存在"),
        ({"audience": {"run": "1"}}, "audience", "正整数"),
        ({"audience": {"segment": 2**40}}, "audience", "正整数"),
        ({"benefit": {"coupon": "NOPE"}}, "benefit", "券模板不存在"),
        ({"benefit": {"points": 0}}, "benefit", "赠送积分"),
        ({"benefit": {"points": 1.5}}, "benefit", "赠送积分"),
        ({"benefit": {"gift": ""}}, "benefit", "礼品说明"),
        ({"benefit": {"gift": "毛巾", "gift_cost_fen": -1}}, "benefit", "礼品成本须为0到10000元"),
        ({"benefit": {"gift": "毛巾", "gift_cost_fen": 1.5}}, "benefit", "礼品成本"),
        ({"benefit": {"gift": "", "gift_cost_fen": 100}}, "benefit", "礼品说明"),
        ({"benefit": {"points": 5, "gift_cost_fen": 100}}, "benefit", "权益须为一项"),
        ({"benefit": {"cash": 1}}, "benefit", "未知的权益"),
        ({"channels": []}, "channels", "至少一个渠道"),
        ({"channels": ["sms", "email"]}, "channels", "未知的渠道"),
        ({"text": ""}, "text", "须填写文案"),
        ({"text": "{nmae}您好"}, "text", "未知的占位符 {nmae}"),
        ({"text": "送您{coupon}"}, "text", "需要对应的权益"),
        ({"text": "您好 {"}, "text", "花括号"),
        ({"text": "{name:>{name}}"}, "text", "占位符只写名称"),
        ({"text": "{name!r}"}, "text", "占位符只写名称"),
        ({"text": "好" * 301}, "text", "不超过300字"),
        ({"send_at": "明天"}, "send_at", "发送时间格式无效"),
        ({"send_at": None}, "send_at", "请填写发送时间"),
        ({"control_pct": 51}, "control_pct", "0到50"),
        ({"window_days": 0}, "window_days", "1到90"),
        ({"window_days": 91}, "window_days", "1到90"),
        ({"message_cost_fen": -1}, "message_cost_fen", "单条消息成本"),
        ({"message_cost_fen": "5"}, "message_cost_fen", "单条消息成本"),
        ({"colour": "red"}, "colour", "未知的字段"),
    ],
)
def test_create_names_each_bad_field(hq_db, chain, fields, field, words):
    with pytest.raises((ValidationError, NotFound)) as caught:
        campaigns.create(hq_db, good(**fields), "marketer", md.NOW)
    assert caught.value.field == field and words in caught.value.message
    assert Campaign.select().count() == 0


def test_create_reads_local_time_and_keeps_a_draft(hq_db, chain):
    add_template(hq_db, TEN, by="hq-li", now=md.NOW)
    c = campaigns.create(
        hq_db,
        good(benefit={"coupon": "TEN"}, text="{name}: {coupon} {link} {store}", control_pct=10),
        "marketer",
        md.NOW,
    )
    assert c.status == "draft" and c.send_at == dt.datetime(2026, 12, 1, 2, 0)  # 10:00 +08
    aware = campaigns.create(hq_db, good(send_at="2026-12-01T10:00+00:00"), "m", md.NOW)
    assert aware.send_at == dt.datetime(2026, 12, 1, 10, 0)
    shown = campaigns.as_dict(campaigns.get(c.id))
    assert shown["status_label"] == "草稿" and shown["channel_labels"] == ["短信"]
    assert shown["benefit_label"] == "券 TEN (满100元减10元)"
    assert shown["audience_label"].startswith("2026-12 沉睡会员唤醒")
    assert shown["send_at_local"] == "2026-12-01T10:00" and shown["window_days"] == 14
    changed = campaigns.update(hq_db, c.id, {"control_pct": 20}, "marketer", md.NOW)
    assert changed.control_pct == 20 and changed.text.startswith("{name}")
    with pytest.raises(ValidationError) as bad:
        campaigns.update(hq_db, c.id, {"benefit": {}}, "marketer", md.NOW)  # {coupon} needs it
    assert bad.value.field == "text"
    actions = [a.action for a in AuditEntry.select().where(AuditEntry.target == str(c.id))]
    assert actions == ["campaign.create", "campaign.update"]


# ---- launching --------------------------------------------------------------------------


def test_launch_freezes_the_list_and_writes_each_send_once(hq_db, chain):
    c = campaigns.create(hq_db, good(channels=["sms", "wechat", "call"]), "m", md.NOW)
    launched = campaigns.launch(hq_db, c.id, "m", md.NOW, md.TODAY)
    run = ListRun.get_by_id(launched.run_id)
    assert (run.kind, run.start) == ("dormant", md.TODAY)
    assert launched.status == "scheduled" and launched.recipients == 3
    sends = list(CampaignSend.select().order_by(CampaignSend.key))
    assert len(sends) == 6  # three members, sms and wechat (calls are a list)
    assert {(s.status, s.next_at, s.attempts) for s in sends} == {
        ("pending", dt.datetime(2026, 12, 1, 2, 0), 0)
    }
    assert sends[0].key == f"c{c.id}:{sends[0].member_id}:sms"
    before = [(s.id, s.key, s.status) for s in CampaignSend.select()]
    again = campaigns.launch(hq_db, c.id, "m", md.NOW + dt.timedelta(hours=1), md.TODAY)
    assert again.launched_at == md.NOW and again.recipients == 3
    assert [(s.id, s.key, s.status) for s in CampaignSend.select()] == before
    launches = AuditEntry.select().where(AuditEntry.action == "campaign.launch").count()
    assert launches == 1
    with pytest.raises(Conflict):
        campaigns.update(hq_db, c.id, {"name": "x"}, "m", md.NOW)


def test_a_launch_cut_short_is_finished_by_the_next(hq_db):
    run = cd.many(hq_db, 50)
    c = cd.campaign(hq_db, run, control_pct=20)
    campaigns.PAGE, page = 7, campaigns.PAGE
    try:
        calls = []
        real = campaigns._launch_page

        def dies_on_the_third(*args):
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("killed")
            real(*args)

        campaigns._launch_page = dies_on_the_third
        with pytest.raises(RuntimeError):
            campaigns.launch(hq_db, c.id, "m", cd.AT, cd.AT.date())
        campaigns._launch_page = real
        assert campaigns.get(c.id).status == "draft" and CampaignRecipient.select().count() == 14
        done = campaigns.launch(hq_db, c.id, "m", cd.AT, cd.AT.date())
    finally:
        campaigns.PAGE, campaigns._launch_page = page, real
    assert done.status == "scheduled" and done.recipients == 50
    assert CampaignRecipient.select().count() == 50
    treated = CampaignRecipient.select().where(~CampaignRecipient.control).count()
    assert CampaignSend.select().count() == treated


def test_the_control_group_is_a_stable_hash_split(hq_db):
    run = cd.many(hq_db, 400)
    c = cd.campaign(hq_db, run, control_pct=25)
    campaigns.launch(hq_db, c.id, "m", cd.AT, cd.AT.date())
    control = {r.member_id for r in CampaignRecipient.select().where(CampaignRecipient.control)}
    assert control == {
        cd.member_id(i) for i in range(400) if campaigns.is_control(c.id, cd.member_id(i), 25)
    }
    assert 60 <= len(control) <= 140  # about a quarter of 400 (a hash, not a coin per run)
    sent_to = {s.member_id for s in CampaignSend.select()}
    assert sent_to == {cd.member_id(i) for i in range(400)} - control
    assert campaigns.progress(c.id) == {
        "by_channel": {"sms": {"pending": 400 - len(control)}},
        "skipped": {},
        "treated": 400 - len(control),
        "control": len(control),
    }
    # another campaign splits the same members otherwise
    other = {
        cd.member_id(i) for i in range(400) if campaigns.is_control(c.id + 1, cd.member_id(i), 25)
    }
    assert other != control
    # no control group: everyone is treated
    assert not any(campaigns.is_control(c.id, cd.member_id(i), 0) for i in range(400))


def test_a_segment_audience_is_snapshotted(hq_db, chain):
    from hq.marketing import segments

    seg = segments.save(
        hq_db, {"name": "投诉", "conditions": [{"kind": "tags", "values": ["投诉"]}]}, "m",
        md.NOW, md.TODAY,
    )  # fmt: skip
    c = campaigns.create(hq_db, good(audience={"segment": seg.id}), "m", md.NOW)
    launched = campaigns.launch(hq_db, c.id, "m", md.NOW, md.TODAY)
    run = ListRun.get_by_id(launched.run_id)
    assert run.scope == f"segment:{seg.id}" and md.names(
        list(marketing_lists.iter_run_member_ids(run))
    ) == ["E"]


def test_cancel_skips_what_is_pending(hq_db):
    run = cd.many(hq_db, 5)
    c = cd.campaign(hq_db, run)
    campaigns.launch(hq_db, c.id, "m", cd.AT, cd.AT.date())
    first = CampaignSend.select().order_by(CampaignSend.id).first()
    first.status = "sent"
    first.save()
    done = campaigns.cancel(hq_db, c.id, "m", cd.AT)
    assert done.status == "cancelled"
    assert campaigns.progress(c.id)["by_channel"] == {"sms": {"sent": 1, "skipped": 4}}
    assert campaigns.progress(c.id)["skipped"] == {"cancelled": 4}
    assert campaigns.cancel(hq_db, c.id, "m", cd.AT).status == "cancelled"
    with pytest.raises(Conflict):
        campaigns.launch(hq_db, c.id, "m", cd.AT, cd.AT.date())
    with pytest.raises(NotFound):
        campaigns.cancel(hq_db, 999, "m", cd.AT)


# ---- the benefit, the call list ---------------------------------------------------------


def test_benefits_are_given_once_and_never_to_the_control_group(hq_db):
    from hq.changes import ChangeSet, flush_changes

    add_template(hq_db, TEN, by="hq-li", now=cd.AT)
    run = cd.many(hq_db, 40)
    c = cd.campaign(hq_db, run, benefit={"coupon": "TEN"}, text="送您{coupon}", control_pct=30)
    c = campaigns.launch(hq_db, c.id, "m", cd.AT, cd.AT.date())
    everyone = [cd.member_id(i) for i in range(40)]
    for _ in range(2):
        changes = ChangeSet()
        with hq_db.atomic():
            campaigns.give_benefits(hq_db, c, everyone, "scheduler", cd.AT, cd.AT.date(), changes)
            flush_changes(hq_db, changes, cd.AT)
    R = CampaignRecipient
    treated = {r.member_id: r.benefit_ref for r in R.select().where(~R.control)}
    coupons = {co.member_id: co.code for co in Coupon.select()}
    assert coupons == treated and len(coupons) == len(set(coupons.values()))
    assert {co.ref for co in Coupon.select()} == {f"campaign:{c.id}"}
    assert all(r.benefit_ref is None for r in R.select().where(R.control))
    assert ChangeRecord.select().where(ChangeRecord.entity == "coupon").count() == len(coupons)


def test_points_benefit_goes_down_as_a_member_change(hq_db):
    from hq.changes import ChangeSet

    run = cd.many(hq_db, 3)
    c = cd.campaign(hq_db, run, benefit={"points": 50}, text="送您{points}积分")
    c = campaigns.launch(hq_db, c.id, "m", cd.AT, cd.AT.date())
    with hq_db.atomic():
        given = campaigns.give_benefits(
            hq_db, c, [cd.member_id(0)], "scheduler", cd.AT, cd.AT.date(), ChangeSet()
        )
    assert given == 1 and Member.get_by_id(cd.member_id(0)).points == 50
    ref = CampaignRecipient.get(member_id=cd.member_id(0)).benefit_ref
    assert ref.startswith("adjust:")
    downs = ChangeRecord.select().where(
        (ChangeRecord.entity == "member") & (ChangeRecord.key == cd.member_id(0))
    )
    assert downs.count() == 1


def test_call_list_is_the_treated_who_consent_to_calls(hq_db):
    run = cd.many(hq_db, 20)
    set_consent(hq_db, cd.member_id(3), {"call": False}, "hq-li", cd.AT)
    c = cd.campaign(hq_db, run, channels=["call"], text="", control_pct=20)
    assert campaigns.call_list(c.id) == []  # not launched: nobody yet
    campaigns.launch(hq_db, c.id, "m", cd.AT, cd.AT.date())
    assert CampaignSend.select().count() == 0
    treated = {r.member_id for r in CampaignRecipient.select().where(~CampaignRecipient.control)}
    rows = campaigns.call_list(c.id)
    assert {mid for mid, _, _ in rows} == treated - {cd.member_id(3)}
    assert rows == sorted(rows, key=lambda r: (r[1], r[2], r[0]))
    assert {(store, staff) for _, store, staff in rows} <= {("S1", "E1"), ("S2", "E2")}
    assert all(store == "S1" for _, store, _ in campaigns.call_list(c.id, ["S1"]))


# ---- the JSON routes --------------------------------------------------------------------


@pytest.fixture
def app(hq_db, hq_db_url, chain, monkeypatch):
    monkeypatch.setattr(marketing_api, "today", lambda: md.TODAY)
    app = create_app(HqConfig(database_url=hq_db_url), db=hq_db)
    app.testing = True
    return app


def test_campaigns_by_api_checked_audited_and_scoped(app, hq_db):
    client = session_client(app, hq_db, "membership")
    bad = client.post("/api/marketing/campaigns", json=good(control_pct=80))
    assert bad.status_code == 400 and bad.get_json()["field"] == "control_pct"
    assert "对照组比例" in bad.get_json()["message"]
    assert client.post("/api/marketing/campaigns", data="x").status_code == 400
    made = client.post("/api/marketing/campaigns", json=good(channels=["sms", "call"]))
    assert made.status_code == 201
    c = made.get_json()["campaign"]
    assert c["status"] == "draft" and c["send_at"] == "2026-12-01T02:00:00"
    cid = c["id"]
    patched = client.patch(f"/api/marketing/campaigns/{cid}", json={"control_pct": 0})
    assert patched.status_code == 200 and patched.get_json()["campaign"]["control_pct"] == 0
    unknown = client.patch(f"/api/marketing/campaigns/{cid}", json={"text": "{who}"})
    assert unknown.status_code == 400 and "未知的占位符" in unknown.get_json()["message"]
    launched = client.post(f"/api/marketing/campaigns/{cid}/launch")
    body = launched.get_json()
    assert launched.status_code == 200 and body["campaign"]["status"] == "scheduled"
    assert body["progress"]["treated"] == 3 and body["progress"]["by_channel"] == {
        "sms": {"pending": 3}
    }
    assert client.post(f"/api/marketing/campaigns/{cid}/launch").status_code == 200
    assert client.patch(f"/api/marketing/campaigns/{cid}", json={"name": "x"}).status_code == 409
    listed = client.get("/api/marketing/campaigns").get_json()["campaigns"]
    assert [x["id"] for x in listed] == [cid]
    one = client.get(f"/api/marketing/campaigns/{cid}").get_json()
    assert one["campaign"]["status_label"] == "已排期"
    assert client.get(f"/api/marketing/campaigns/{cid}/progress").get_json()["treated"] == 3
    assert client.get("/api/marketing/campaigns/999").status_code == 404
    assert client.get(f"/api/marketing/campaigns/{2**40}").status_code == 404
    assert client.post("/api/marketing/campaigns/999/launch").status_code == 404
    # the call list: dormant E (S1), J (S2), K (S1); E and K consent to calls
    for name in ("E", "K"):
        set_consent(hq_db, md.MEMBER_ID[name], {"call": True}, "hq-li", md.NOW)
    calls = client.get(f"/api/marketing/campaigns/{cid}/calls").get_json()["rows"]
    assert [(r["name"], r["phone"], r["store"], r["maintainer"]) for r in calls] == [
        ("会员E", "13800000069", "S1", "E1"),  # members.pii: staff dial from it
        ("会员K", "13800000075", "S1", "E1"),
    ]
    store = session_client(app, hq_db, "store", "S2")
    assert store.get(f"/api/marketing/campaigns/{cid}/calls").get_json()["rows"] == []
    assert store.get(f"/api/marketing/campaigns/{cid}").status_code == 200
    assert store.post(f"/api/marketing/campaigns/{cid}/cancel").status_code == 403
    assert store.post("/api/marketing/campaigns", json=good()).status_code == 403
    analyst = bearer_client(app, hq_db, "analyst")
    assert analyst.get("/api/marketing/campaigns").status_code == 403
    cancelled = client.post(f"/api/marketing/campaigns/{cid}/cancel")
    assert cancelled.get_json()["progress"]["skipped"] == {"cancelled": 3}
    assert client.post(f"/api/marketing/campaigns/{cid}/launch").status_code == 409
    actions = [a.action for a in AuditEntry.select().where(AuditEntry.target == str(cid))]
    assert actions == ["campaign.create", "campaign.update", "campaign.launch", "campaign.cancel"]
    exports = AuditEntry.select().where(AuditEntry.target == f"campaign:{cid}:calls")
    assert [a.action for a in exports] == ["marketing.export", "marketing.export"]


# ---- the CLI ----------------------------------------------------------------------------


def test_cli_create_launch_send_status_cancel(hq_db, hq_db_url, tmp_path):
    from hq.channels.fake_gateway import FakeSmsGateway
    from hq.cli import main
    from hq.marketing import settings as marketing_settings

    run = cd.many(hq_db, 4)
    other = cd.campaign(hq_db, run, name="later", send_at=dt.datetime(2030, 1, 1))  # (first:
    # the CLI binds the models to its own database)
    # the send below runs at the real clock's time: no quiet hours to wait for
    marketing_settings.update(hq_db, {"quiet_start_hour": 0, "quiet_end_hour": 0}, "m", md.NOW)
    runner = CliRunner()
    base = ["--database-url", hq_db_url]
    bad = runner.invoke(main, [*base, "campaign", "create", "--name", "x", "--run", str(run.id),
                               "--channel", "fax", "--send-at", "2026-01-01T10:00", "--by", "m"])  # fmt: skip
    assert bad.exit_code != 0 and "未知的渠道" in bad.output
    made = runner.invoke(main, [*base, "campaign", "create", "--name", "CLI", "--run", str(run.id),
                                "--channel", "sms", "--text", "{name}您好", "--points", "20",
                                "--send-at", "2026-01-01T10:00", "--by", "m"])  # fmt: skip
    assert made.exit_code == 0, made.output
    cid = json.loads(made.output)["id"]
    launched = runner.invoke(main, [*base, "campaign", "launch", str(cid), "--by", "m"])
    assert json.loads(launched.output)["progress"]["by_channel"] == {"sms": {"pending": 4}}
    runner.invoke(main, [*base, "campaign", "launch", str(other.id), "--by", "m"])
    secret = tmp_path / "sms.token"
    secret.write_text("t0ken")
    with FakeSmsGateway(token="t0ken") as gw:
        env = {"HY_HQ_SMS_GATEWAY_URL": gw.url, "HY_HQ_SMS_CREDENTIALS_FILE": str(secret)}
        sent = runner.invoke(main, [*base, "campaign", "send"], env=env)
        assert sent.exit_code == 0, sent.output
        assert json.loads(sent.output.splitlines()[0])["sent"] == 4 and len(gw.sent) == 4
    status = runner.invoke(main, [*base, "campaign", "status", str(cid)])
    assert json.loads(status.output)["status"] == "done"
    assert Member.get_by_id(cd.member_id(0)).points == 20
    listed = runner.invoke(main, [*base, "campaign", "status"])
    assert listed.output.splitlines()[0].startswith(f"{cid}\tdone\t4\t")
    cancelled = runner.invoke(main, [*base, "campaign", "cancel", str(other.id), "--by", "m"])
    assert json.loads(cancelled.output)["status"] == "cancelled"
    missing = runner.invoke(main, [*base, "campaign", "launch", "999", "--by", "m"])
    assert missing.exit_code != 0 and "活动不存在" in missing.output
