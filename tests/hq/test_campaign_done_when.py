"""Issue 14's "done when" for campaigns, at HQ on SQLite and PostgreSQL, through the real
parts: members registered and buying through the real ingest; the scheduler's
``marketing-lists`` job making the month's lists on the 1st; a marketing user (role
会员/营销) turning the dormant list into a campaign with a coupon through the console's
API; the scheduler's ``campaigns`` job sending it through the SMS adapter to a local fake
gateway (the configured URL and credential file); the members coming back a week later
(sales through the real ingest); and the console's campaign page showing who came back and
what they spent.

The rest of "done when" has its own end-to-end tests: the till's calls and outcomes
(tests/hq/test_followups.py, tests/edge/test_followups_screen.py), and the member scanning
the receipt (tests/edge/test_member_link_receipt.py: the receipt's QR code is the member's
signed link; tests/hq/test_member_page.py: the page HQ serves for it, in a browser at
phone size)."""

from __future__ import annotations

import datetime as dt
import os
from urllib.parse import urlsplit

from core import protocol as p
from core.ids import uuid7
from core.member_link import verify_link
from hq import scheduler
from hq.api import create_app
from hq.channels.fake_gateway import FakeSmsGateway
from hq.config import HqConfig
from hq.ingest import ingest_batch
from hq.marketing import lists
from hq.models import CampaignSend, Coupon, ListRun
from hq.privacy import set_consent
from hq.programme import staff as programme
from hq.programme.coupons import add_template
from tests.hq.edge_sim import TZ, Items
from tests.hq.signin import session_client

WAKE20 = {"id": "WAKE20", "name": "唤醒券满100减20", "kind": "amount", "amount": 2000,
          "min_spend": 10000, "valid_days": 30, "per_member_limit": 1}  # fmt: skip
FIRST = dt.datetime(2026, 11, 1, 1, 0)  # naive UTC: 09:00 in Shanghai on the 1st


def ingest(db, items: Items, batch: list[dict], now: dt.datetime) -> None:
    outcome = ingest_batch(
        db,
        p.up_topic(items.store, "tx"),
        items.store,
        p.make_batch(items.store, 1, batch),
        now.replace(tzinfo=dt.UTC),
    )
    assert outcome.ack is not None and outcome.ack.rejected == (), outcome


def at(items: Items, day: str) -> None:
    items.clock = dt.datetime.fromisoformat(f"{day}T10:00:00").replace(tzinfo=TZ)


def run_job(db, config: HqConfig, name: str, now: dt.datetime) -> dict:
    job = next(j for j in scheduler.JOBS if j.name == name)
    return job.run(scheduler.JobContext(db, config, clock=lambda: now)) or {}


def test_the_dormant_list_becomes_a_campaign_and_a_week_later_shows_who_came_back(
    hq_db, hq_db_url, tmp_path
):
    programme.add_staff(hq_db, "E01", "王芳", "S1", "guide", "hq-admin", FIRST)
    items = Items("S1")
    # 张 and 李 last bought in the summer, 孙 never since spring, 周 bought in October
    members: dict[str, str] = {}
    for n, (name, day) in enumerate(
        (("张", "2026-07-10"), ("李", "2026-06-01"), ("孙", "2026-05-15"), ("周", "2026-10-20"))
    ):
        member_id = members[name] = uuid7()
        at(items, day)
        batch = [items.registration(member_id, f"1390000{n:04d}", name=f"{name}先生")]
        batch.append(items.sale(member_id, 8000))
        ingest(hq_db, items, batch, FIRST)
    for name in ("张", "李", "周"):  # 孙 never agreed to marketing messages
        set_consent(hq_db, members[name], {"sms": True}, "hq-li", FIRST)

    credential = tmp_path / "sms.credential"
    credential.write_text("t0ken\n", encoding="utf-8")
    with FakeSmsGateway(token="t0ken") as gateway:
        config = HqConfig(
            database_url=hq_db_url, sms_gateway_url=gateway.url,
            sms_credentials_file=str(credential),
            lookup_key_file=os.environ["HY_HQ_LOOKUP_KEY_FILE"],
        )  # fmt: skip
        # the 1st: the scheduler makes the month's lists, once
        assert run_job(hq_db, config, "marketing-lists", FIRST)["lists_made"] == 4
        dormant = ListRun.get((ListRun.kind == "dormant") & (ListRun.start == dt.date(2026, 11, 1)))
        assert dormant.members == 3  # 张, 李, 孙: nothing since 1 August

        # a marketing user turns it into a campaign with a coupon, sent by SMS
        add_template(hq_db, WAKE20, by="hq-li", now=FIRST)
        app = create_app(config, db=hq_db)
        client = session_client(app, hq_db, "membership")
        made = client.post(
            "/api/marketing/campaigns",
            json={
                "name": "十一月沉睡唤醒",
                "audience": {"run": dormant.id},
                "benefit": {"coupon": "WAKE20"},
                "channels": ["sms"],
                "text": "{name}您好, 好久不见! 送您{coupon}优惠券, 30天内有效。",
                "send_at": "2026-11-02T10:00",
                "window_days": 14,
            },
        )
        assert made.status_code == 201, made.json
        campaign_id = made.json["campaign"]["id"]
        launched = client.post(f"/api/marketing/campaigns/{campaign_id}/launch")
        assert launched.status_code == 200, launched.json

        # the scheduler sends it on the day (10:05 in Shanghai, past the quiet hours)
        before = run_job(hq_db, config, "campaigns", dt.datetime(2026, 11, 1, 23, 0))
        assert not gateway.sent and before.get("sent", 0) == 0  # 07:00 local: not yet
        run_job(hq_db, config, "campaigns", dt.datetime(2026, 11, 2, 2, 5))
        phones = sorted(m["to"] for m in gateway.sent)
        assert phones == ["13900000000", "13900000001"]  # 张 and 李; 孙 gave no consent
        for message in gateway.sent:
            assert "好久不见" in message["text"] and "满100元减20元优惠券" in message["text"]
            assert "退订: https://m.example.cn/m/" in message["text"]
        # the unsubscribe link is the member's own, signed with the unsubscribe key and
        # good for 400 days from the send (the page itself: tests/hq/test_unsubscribe.py)
        by_phone = {m["to"]: m["text"] for m in gateway.sent}
        link = urlsplit(by_phone["13900000000"].rsplit("退订: ", 1)[1].strip())
        token = link.path.removeprefix("/m/").removesuffix("/unsubscribe")
        keys = app.extensions["hq_portal_keys"]
        signed = verify_link(keys.unsubscribe, token, dt.datetime(2027, 11, 1, 0, 0, tzinfo=dt.UTC))
        assert signed.member_id == members["张"]
        # a second run sends nobody again
        run_job(hq_db, config, "campaigns", dt.datetime(2026, 11, 2, 2, 6))
        assert len(gateway.sent) == 2
        coupons = Coupon.select().where(Coupon.ref == f"campaign:{campaign_id}")
        assert sorted(c.member_id for c in coupons) == sorted([members["张"], members["李"]])

    # a week later 张 comes back and spends ¥260; 李 does not; 孙 (never messaged) does
    at(items, "2026-11-09")
    later = dt.datetime(2026, 11, 9, 6, 0)
    ingest(hq_db, items, [items.sale(members["张"], 26000), items.sale(members["孙"], 5000)], later)

    page = client.get(f"/marketing/campaigns/{campaign_id}.json")
    assert page.status_code == 200, page.json
    results = page.json["results"]
    assert results["sent"] == 2 and results["treated"] == 3 and results["reached"] == 2
    assert results["came_back"]["treated"] == 1  # of the two reached
    assert results["sales_fen"]["treated"] == 26000
    assert results["came_back"]["treated_all"] == 2  # intent to treat: 孙 too
    assert results["window"]["closed"] is True
    assert CampaignSend.select().where(CampaignSend.status == "skipped").count() == 1
    shown = client.get(f"/marketing/campaigns/{campaign_id}").get_data(as_text=True)
    assert "十一月沉睡唤醒" in shown and "¥260.00" in shown
    # the list stays as it was made on the 1st
    assert lists.get_run(dormant.id).members == 3
