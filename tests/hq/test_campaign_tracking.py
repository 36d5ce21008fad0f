"""Campaign results (hq/marketing/tracking.py), on SQLite and PostgreSQL, against figures
computed by hand for a small campaign written row by row (Campaign, CampaignRecipient,
CampaignSend, sales, a return, coupons) over the fixed chain of tests/hq/marketing_data.py;
and one campaign launched and sent through the engine (hq.marketing.campaigns, sending).

The campaign (a dormant-list wake-up with a 10 元 coupon, SMS and WeChat, 5 fen a
message) is sent 2026-12-02 02:00 UTC, window 7 days: [12-02 02:00, 12-09 02:00).

    treated  H (merged into A before the results: A's sales are H's)
               sms delivered, wechat failed (refused: never sent)   -> reached
             B sms sent (no report yet), wechat skipped no_contact   -> reached
             C sms failed after it was sent (reported undelivered)   -> reached
             D sms skipped consent, wechat skipped no_contact        -> not reached
             E sms delivered                                         -> reached
    control  F, G, J

    window sales (store, fen):
      A  12-03 S1 10000, of which 3000 returned;  12-05 S2 2000      -> 9000 net
      B  12-02 01:59 S1 700 (before send_at), 12-09 02:00 S1 5000 (the window's end): none
      C  12-08 S1 4000
      D  12-04 S2 1500 (not reached: intent to treat only)
      F  12-09 03:00 S2 3000 (after the window)
      J  12-02 02:00 S2 2501 (the window's first instant), 12-07 S2 500
      a sale without a member in the window (counts for nobody)

    reached 4, came back 2 (A, C), sales 13000       rate 1/2
    treated 5, came back 3 (A, C, D), sales 14500     rate 3/5
    control 3, came back 1 (J), sales 3001            rate 1/3
    lift 1/2 - 1/3 = 1/6; with intent to treat 3/5 - 1/3 = 4/15
    incremental (13000*3 - 3001*4) / 3 = 26996/3 = 8998.67 -> 8999
                (14500*3 - 3001*5) / 3 = 28495/3 = 9498.33 -> 9498
    cost: 4 messages sent x 5 = 20; coupons: C's used (1000); A's was used on the
          returned sale and restored (not redeemed); another campaign's used coupon
          does not count -> 1020; net 8999 - 1020 = 7979; roi 8999/1020
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from fractions import Fraction

import pytest

from core.errors import NotFound
from core.points import fen_for_points
from core.rules import DEMO_RULES
from hq.channels.fake_gateway import FakeSmsGateway
from hq.channels.sms import HttpSmsGateway
from hq.config import HqConfig
from hq.marketing import campaigns, sending, tracking
from hq.models import (
    Campaign,
    CampaignRecipient,
    CampaignSend,
    Coupon,
    ListRun,
    Return,
    Sale,
)
from hq.programme.coupons import add_template
from tests.hq import campaign_data as cd
from tests.hq import marketing_data as md

SEND_AT = dt.datetime(2026, 12, 2, 2, 0)
AFTER = dt.datetime(2026, 12, 10, 0, 0)  # the window is over
_seq = itertools.count(100)


def sale(member: str | None, store: str, at: dt.datetime, total: int) -> str:
    n = next(_seq)
    sale_id = f"W{n}"
    Sale.create(
        sale_id=sale_id,
        store=store,
        seq=n,
        member_id=md.MEMBER_ID[member] if member else None,
        total=total,
        rules_version=1,
        occurred_at=(at + dt.timedelta(hours=8)).isoformat() + "+08:00",
        occurred_utc=at,
        body={"lines": [{"qty": 1}]},
        ingested_at=at,
    )
    return sale_id


def campaign(
    kind: str = "dormant",
    benefit: dict | None = None,
    channels: tuple[str, ...] = ("sms", "wechat"),
    name: str = "唤醒",
) -> Campaign:
    run = ListRun.create(
        kind=kind,
        start=dt.date(2026, 12, 1),
        scope=f"t{next(_seq)}",
        members=0,
        made_at=md.NOW,
        made_by="test",
    )
    return Campaign.create(
        name=name,
        audience={"list": kind, "start": "2026-12-01"},
        run_id=run.id,
        benefit=benefit if benefit is not None else {"coupon": "T10"},
        channels=list(channels),
        text="{name}, 送您{coupon}",
        send_at=SEND_AT,
        window_days=7,
        control_pct=30,
        message_cost_fen=5,
        status="done",
        recipients=0,
        created_by="test",
        created_at=md.NOW,
    )


def recipient(c: Campaign, member: str, control: bool = False, given: bool = False) -> None:
    CampaignRecipient.create(
        campaign=c.id,
        member_id=md.MEMBER_ID[member],
        control=control,
        benefit_ref=f"ref-{member}" if given else None,
        benefit_at=SEND_AT if given else None,
    )


def send(c: Campaign, member: str, channel: str, status: str, sent: bool, reason: str = "") -> None:
    CampaignSend.create(
        campaign=c.id,
        member_id=md.MEMBER_ID[member],
        channel=channel,
        key=f"c{c.id}:{md.MEMBER_ID[member]}:{channel}",
        status=status,
        reason=reason,
        attempts=1,
        next_at=SEND_AT,
        sent_at=SEND_AT if sent else None,
        delivered_at=SEND_AT if status == "delivered" else None,
        updated_at=SEND_AT,
    )


def coupon(c_id: int, member: str, status: str, used_sale: str | None = None) -> None:
    Coupon.create(
        code=f"CP{next(_seq)}",
        member_id=md.MEMBER_ID[member],
        value=1000,
        status=status,
        template_id="T10",
        issued_at=SEND_AT,
        source="campaign",
        ref=f"campaign:{c_id}",
        used_sale=used_sale,
    )


@pytest.fixture
def wake(hq_db):
    """The campaign of the module docstring; returns it."""
    md.load(hq_db)
    Sale.fill_occurred_utc()
    c = campaign()
    for m in "HBCDE":
        recipient(c, m, given=m != "D")
    for m in "FGJ":
        recipient(c, m, control=True)
    send(c, "H", "sms", "delivered", True)
    send(c, "H", "wechat", "failed", False)
    send(c, "B", "sms", "sent", True)
    send(c, "B", "wechat", "skipped", False, "no_contact")
    send(c, "C", "sms", "failed", True)
    send(c, "D", "sms", "skipped", False, "consent")
    send(c, "D", "wechat", "skipped", False, "no_contact")
    send(c, "E", "sms", "delivered", True)

    day = SEND_AT.replace(hour=3)
    returned = sale("A", "S1", day + dt.timedelta(days=1), 10000)  # 12-03
    Return.create(
        return_id="R1",
        sale_id=returned,
        store="S1",
        seq=1,
        member_id=md.MEMBER_ID["A"],
        refund_total=3000,
        occurred_at="2026-12-04T12:00:00+08:00",
        body={},
        ingested_at=dt.datetime(2026, 12, 4, 4, 0),
    )
    sale("A", "S2", day + dt.timedelta(days=3), 2000)  # 12-05
    sale("B", "S1", SEND_AT - dt.timedelta(minutes=1), 700)
    sale("B", "S1", SEND_AT + dt.timedelta(days=7), 5000)
    c_sale = sale("C", "S1", day + dt.timedelta(days=6), 4000)  # 12-08
    sale("D", "S2", day + dt.timedelta(days=2), 1500)  # 12-04
    sale("F", "S2", SEND_AT + dt.timedelta(days=7, hours=1), 3000)
    sale("J", "S2", SEND_AT, 2501)
    sale("J", "S2", day + dt.timedelta(days=5), 500)  # 12-07
    sale(None, "S1", day, 9999)

    coupon(c.id, "A", "issued")  # used on the returned sale, then restored by the return
    coupon(c.id, "B", "issued")
    coupon(c.id, "C", "used", used_sale=c_sale)
    coupon(c.id, "E", "issued")
    coupon(c.id + 1000, "E", "used")  # another campaign's
    return c


def test_results_of_a_closed_window_hand_computed(hq_db, wake):
    r = tracking.results(hq_db, wake.id, AFTER)
    assert r["window"] == {"from": SEND_AT, "to": dt.datetime(2026, 12, 9, 2, 0), "closed": True}
    assert (r["treated"], r["reached"], r["control"]) == (5, 4, 3)
    assert (r["sent"], r["delivered"], r["failed"], r["waiting"]) == (4, 2, 2, 0)
    assert r["skipped"] == {"consent": 1, "no_contact": 2}
    assert r["by_channel"] == {
        "sms": {"sent": 4, "delivered": 2, "failed": 1, "skipped": 1, "waiting": 0},
        "wechat": {"sent": 0, "delivered": 0, "failed": 1, "skipped": 2, "waiting": 0},
    }
    assert (r["coupons_issued"], r["coupons_redeemed"]) == (4, 1)
    assert r["came_back"] == {"treated": 2, "treated_all": 3, "control": 1}
    assert r["sales_fen"] == {"treated": 13000, "treated_all": 14500, "control": 3001}
    assert r["came_back_rate"] == {
        "treated": Fraction(1, 2),
        "treated_all": Fraction(3, 5),
        "control": Fraction(1, 3),
    }
    assert r["lift"] == Fraction(1, 6)
    assert r["lift_all"] == Fraction(4, 15)
    assert r["incremental_sales_fen"] == 8999
    assert r["incremental_sales_fen_all"] == 9498
    assert r["cost_fen"] == {
        "messages": 20, "coupons": 1000, "points": 0, "gifts": 0, "total": 1020
    }  # fmt: skip
    assert r["net_fen"] == 7979
    assert r["roi"] == Fraction(8999, 1020)
    assert r["wake_rate"] == r["came_back_rate"]
    assert r["activation_rate"] is None
    assert r["by_store"] == {
        "S1": {
            "treated": {"came_back": 2, "sales_fen": 11000},
            "treated_all": {"came_back": 2, "sales_fen": 11000},
            "control": {"came_back": 0, "sales_fen": 0},
        },
        "S2": {
            "treated": {"came_back": 1, "sales_fen": 2000},
            "treated_all": {"came_back": 2, "sales_fen": 3500},
            "control": {"came_back": 1, "sales_fen": 3001},
        },
    }
    for money in (*r["sales_fen"].values(), *r["cost_fen"].values(), r["net_fen"]):
        assert type(money) is int


def test_a_store_managers_results_are_their_stores_members_only(hq_db, wake):
    """S1's members: H (A's now), C, D, E treated, nobody in control; their messages,
    coupons and sales wherever they bought. S2's: B treated, F, G, J in control."""
    s1 = tracking.results(hq_db, wake.id, AFTER, ["S1"])
    assert (s1["treated"], s1["reached"], s1["control"], s1["stores"]) == (4, 3, 0, ["S1"])
    assert (s1["sent"], s1["delivered"], s1["failed"]) == (3, 2, 2)
    assert s1["skipped"] == {"consent": 1, "no_contact": 1}
    assert (s1["coupons_issued"], s1["coupons_redeemed"]) == (3, 1)
    assert s1["came_back"] == {"treated": 2, "treated_all": 3, "control": 0}
    assert s1["sales_fen"] == {"treated": 13000, "treated_all": 14500, "control": 0}
    assert s1["cost_fen"] == {
        "messages": 15, "coupons": 1000, "points": 0, "gifts": 0, "total": 1015
    }  # fmt: skip
    assert s1["incremental_sales_fen"] is None  # no control group among S1's members
    s2 = tracking.results(hq_db, wake.id, AFTER, ["S2"])
    assert (s2["treated"], s2["reached"], s2["control"]) == (1, 1, 3)
    assert (s2["sent"], s2["skipped"], s2["coupons_issued"]) == (1, {"no_contact": 1}, 1)
    assert s2["came_back"] == {"treated": 0, "treated_all": 0, "control": 1}
    assert s2["incremental_sales_fen"] == -1000  # (0 x 3 - 3001 x 1) / 3
    assert tracking.results(hq_db, wake.id, AFTER, [])["treated"] == 0
    assert tracking.results(hq_db, wake.id, AFTER)["stores"] is None  # the chain


def test_an_open_window_counts_up_to_now_and_returns_recorded_by_then(hq_db, wake):
    # on 12-04 03:30: A's 12-03 sale is in, its return (recorded 12-04 04:00) not yet;
    # D's 12-04 03:00 sale is in; J's first one too; C's, A's second and J's second not
    r = tracking.results(hq_db, wake.id, dt.datetime(2026, 12, 4, 3, 30))
    assert r["window"]["closed"] is False
    assert r["came_back"] == {"treated": 1, "treated_all": 2, "control": 1}
    assert r["sales_fen"] == {"treated": 10000, "treated_all": 11500, "control": 2501}
    # before the send nothing has come back, and the window is not closed
    r = tracking.results(hq_db, wake.id, SEND_AT - dt.timedelta(hours=1))
    assert r["came_back"] == {"treated": 0, "treated_all": 0, "control": 0}
    assert r["window"]["closed"] is False


def test_a_merged_away_recipient_is_the_survivor_and_counts_once(hq_db, wake):
    # H (treated) was merged into A: A's window sales are H's. Were A a recipient too
    # (in the control group), the one person counts once, as treated
    recipient(wake, "A", control=True)
    r = tracking.results(hq_db, wake.id, AFTER)
    assert (r["treated"], r["reached"], r["control"]) == (5, 4, 3)
    assert r["sales_fen"] == {"treated": 13000, "treated_all": 14500, "control": 3001}


def test_without_a_control_group_there_is_no_comparison(hq_db, wake):
    CampaignRecipient.delete().where(
        (CampaignRecipient.campaign == wake.id) & (CampaignRecipient.control == True)  # noqa: E712
    ).execute()
    r = tracking.results(hq_db, wake.id, AFTER)
    assert r["control"] == 0
    assert r["came_back_rate"]["control"] is None
    assert r["lift"] is None and r["lift_all"] is None
    assert r["incremental_sales_fen"] is None and r["net_fen"] is None and r["roi"] is None
    assert r["cost_fen"]["total"] == 1020  # the cost stands


def test_points_benefit_costs_its_worth_and_new_members_give_activation(hq_db):
    md.load(hq_db)
    c = campaign(kind="new_members", benefit={"points": 250}, channels=("sms",))
    recipient(c, "A", given=True)
    recipient(c, "B", given=True)
    recipient(c, "C")  # treated, never sent to: not given
    recipient(c, "D", control=True)
    send(c, "A", "sms", "delivered", True)
    send(c, "B", "sms", "delivered", True)
    send(c, "C", "sms", "pending", False)
    sale("B", "S2", SEND_AT + dt.timedelta(days=1), 800)
    r = tracking.results(hq_db, c.id, AFTER)
    assert r["points_given"] == 500
    assert r["cost_fen"] == {
        "messages": 10,
        "coupons": 0,
        "points": fen_for_points(DEMO_RULES, 500),
        "gifts": 0,
        "total": 10 + fen_for_points(DEMO_RULES, 500),
    }
    assert r["cost_fen"]["points"] == 500  # 100 points to the yuan: 5 元
    assert r["waiting"] == 1
    assert r["activation_rate"] == {
        "treated": Fraction(1, 2),
        "treated_all": Fraction(1, 3),
        "control": Fraction(0),
    }
    assert r["wake_rate"] is None
    # treated 800 over 2 against nothing over 1: 800 more
    assert r["incremental_sales_fen"] == 800


def test_a_call_list_campaign_reaches_every_treated_member(hq_db):
    md.load(hq_db)
    c = campaign(
        kind="birthdays", benefit={"gift": "毛巾", "gift_cost_fen": 1250}, channels=("call",)
    )
    recipient(c, "A", given=True)
    recipient(c, "B")
    recipient(c, "C", given=True)
    sale("A", "S1", SEND_AT + dt.timedelta(days=2), 600)
    r = tracking.results(hq_db, c.id, AFTER)
    assert (r["treated"], r["reached"], r["sent"]) == (3, 3, 0)
    assert r["came_back"]["treated"] == 1
    # two towels given at ¥12.50 each are the campaign's cost
    assert r["gifts_given"] == 2
    assert r["cost_fen"] == {"messages": 0, "coupons": 0, "points": 0, "gifts": 2500, "total": 2500}
    assert r["activation_rate"] is None and r["wake_rate"] is None


def test_json_form_and_unknown_campaign(hq_db, wake):
    out = tracking.as_json(tracking.results(hq_db, wake.id, AFTER))
    assert out["lift"] == 0.1667
    assert out["came_back_rate"]["control"] == 0.3333
    assert out["window"] == {
        "from": "2026-12-02T02:00:00",
        "to": "2026-12-09T02:00:00",
        "closed": True,
    }
    assert out["incremental_sales_fen"] == 8999
    with pytest.raises(NotFound) as e:
        tracking.results(hq_db, 999_999, AFTER)
    assert e.value.field == "campaign_id"


@pytest.mark.parametrize(
    ("num", "den", "expected"),
    [
        (5, 2, 3),
        (-5, 2, -3),
        (7, 3, 2),
        (-7, 3, -2),
        (8, 3, 3),
        (-8, 3, -3),
        (4, 2, 2),
        (0, 3, 0),
        (5, -2, -3),
    ],
)
def test_round_half_away_from_zero(num, den, expected):
    assert tracking.round_half_away(num, den) == expected


# ---- end to end, through the engine (branch camp-engine merged in) ------------------------


def test_a_launched_and_sent_campaign_end_to_end(hq_db, hq_db_url):
    """Launch (hq.marketing.campaigns) and send through the fake SMS gateway
    (hq.marketing.sending), then sales: every treated member of even number buys 1000
    fen in the window, every control member of number divisible by 3 buys 600; one
    coupon is redeemed. The expected figures follow from the launch's split."""
    ten = {"id": "TEN", "name": "满100减10", "kind": "amount", "amount": 1000,
           "min_spend": 10000, "valid_days": 30, "per_member_limit": 1}  # fmt: skip
    add_template(hq_db, ten, by="hq-li", now=cd.AT)
    run = cd.many(hq_db, 40)
    c = cd.campaign(
        hq_db, run, benefit={"coupon": "TEN"}, control_pct=25, message_cost_fen=4, window_days=7
    )
    campaigns.launch(hq_db, c.id, "marketer", cd.AT, cd.AT.date())
    config = HqConfig(database_url=hq_db_url, lookup_key_file=os.environ["HY_HQ_LOOKUP_KEY_FILE"])
    with FakeSmsGateway(token="t0ken") as gw:
        sms = HttpSmsGateway(gw.url, "t0ken", timeout=10)
        sending.send_due(hq_db, {"sms": sms}, cd.SEND_AT, config=config)
    number = {cd.member_id(i): i for i in range(40)}
    control = {
        r.member_id
        for r in CampaignRecipient.select().where(CampaignRecipient.control == True)  # noqa: E712
    }
    treated = set(number) - control
    assert control and treated
    buyers_t = sorted(m for m in treated if number[m] % 2 == 0)
    buyers_c = sorted(m for m in control if number[m] % 3 == 0)
    at = cd.SEND_AT + dt.timedelta(days=2)
    for seq, m in enumerate(buyers_t + buyers_c, start=1):
        Sale.create(
            sale_id=f"E{seq}", store="S1" if m in treated else "S2", seq=seq, member_id=m,
            total=1000 if m in treated else 600, rules_version=1, occurred_at="",
            occurred_utc=at, body={}, ingested_at=at,
        )  # fmt: skip
    Coupon.update(status="used").where(Coupon.member_id == buyers_t[0]).execute()

    r = tracking.results(hq_db, c.id, cd.SEND_AT + dt.timedelta(days=8))
    progress = campaigns.progress(c.id)
    assert (r["treated"], r["control"]) == (progress["treated"], progress["control"])
    assert r["reached"] == r["treated"] == r["sent"] == len(treated)
    assert r["by_channel"]["sms"]["sent"] == len(treated)
    assert r["coupons_issued"] == len(treated) and r["coupons_redeemed"] == 1
    assert r["came_back"] == {
        "treated": len(buyers_t), "treated_all": len(buyers_t), "control": len(buyers_c)
    }  # fmt: skip
    assert r["sales_fen"]["treated"] == 1000 * len(buyers_t)
    assert r["sales_fen"]["control"] == 600 * len(buyers_c)
    assert r["lift"] == Fraction(len(buyers_t), len(treated)) - Fraction(
        len(buyers_c), len(control)
    )
    expected = Fraction(1000 * len(buyers_t)) - Fraction(
        600 * len(buyers_c) * len(treated), len(control)
    )
    assert abs(r["incremental_sales_fen"] - expected) <= Fraction(1, 2)
    assert r["cost_fen"] == {
        "messages": 4 * len(treated), "coupons": 1000, "points": 0, "gifts": 0,
        "total": 4 * len(treated) + 1000,
    }  # fmt: skip
    assert r["by_store"]["S1"]["treated"]["came_back"] == len(buyers_t)
    assert r["by_store"]["S2"]["control"]["sales_fen"] == 600 * len(buyers_c)
