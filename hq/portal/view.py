"""What the member's page shows, as one dict (the page renders it; ``.json`` returns it).

Without a bound phone the page shows what the receipt already prints or what is harmless
to whoever holds the receipt: points and their worth, the tier and the way to the next,
how many coupons, the birthday month's gift. Once this browser has bound the member's
phone (hq/portal/binding.py), it also shows stored value, each coupon, recent purchases
and the masked name and phone.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import peewee as pw

from core import tiers
from core.birthday import Birthday
from core.errors import HuiyuanError
from core.points import fen_for_points
from core.receipt import mask_name, mask_phone
from core.rules import Rules
from hq.ledger import survivors
from hq.models import (
    Campaign,
    CampaignRecipient,
    Coupon,
    CouponTemplate,
    ListRun,
    Member,
    Sale,
    Store,
)

RECENT_SALES = 10


def surviving_member(member_id: str) -> Member | None:
    """The member an id names today: a merged member's survivor (following merges)."""
    return survivors([member_id]).get(member_id)


def _tier(rules: Rules, member: Member) -> dict[str, Any]:
    """The tier and the way to the next rung (``core.tiers.progress``, as the till shows
    it), with how far along it the member is, for the page's bar."""
    ahead = tiers.progress(rules.tiers, member.tier, member.growth)
    out: dict[str, Any] = {"name": member.tier or member.card_type or "", "growth": member.growth}
    if ahead is not None and ahead["next_tier"] is not None:
        out["next"] = ahead["next_tier"]
        out["next_threshold"] = ahead["next_threshold"]
        out["to_next"] = ahead["to_next"]
        out["progress_pct"] = min(
            100, max(0, member.growth * 100 // max(1, ahead["next_threshold"]))
        )
    else:
        out["next"] = ""
        out["progress_pct"] = 0 if ahead is None else 100
    return out


def _coupons(member_id: str, today: dt.date) -> list[dict[str, Any]]:
    rows = (
        Coupon.select(Coupon, CouponTemplate.name)
        .join(
            CouponTemplate,
            on=(Coupon.template_id == CouponTemplate.id),
            join_type=pw.JOIN.LEFT_OUTER,
        )
        .where(
            (Coupon.member_id == member_id)
            & (Coupon.status == "issued")
            & (Coupon.expires_on.is_null() | (Coupon.expires_on >= today))
        )
        .order_by(Coupon.expires_on)
    )
    out = []
    for c in rows:
        template = getattr(c, "coupontemplate", None)
        out.append(
            {
                "name": (template.name if template is not None else "") or "优惠券",
                "value": c.value,
                "expires_on": c.expires_on.isoformat() if c.expires_on else "",
            }
        )
    return out


def _birthday(member: Member, today: dt.date) -> dict[str, Any] | None:
    """The next birthday and this year's birthday gift (``_birthday_gift``)."""
    if not member.birthday:
        return None
    try:
        birthday = Birthday.parse(
            member.birthday, member.birthday_calendar, member.birthday_leap_month
        )
        next_on = birthday.next_on_or_after(today)
    except HuiyuanError:
        return None
    gift, what = _birthday_gift(member.id, today.year)
    return {
        "next_on": next_on.isoformat(),
        "days": (next_on - today).days,
        "gift": gift,
        "what": what,
    }


def _birthday_gift(member_id: str, year: int) -> tuple[str, str]:
    """This year's birthday gift and what it is: the benefit of a campaign to a 生日祝福
    list of a month of ``year`` (docs/campaigns.md) the member was treated in, or else a
    coupon issued this year from a template whose name says 生日 (issued by hand).
    ``gift``: used | issued (a coupon) | points | gift (to fetch at a store) | coming (in
    the campaign, not given yet) | none."""
    R, C = CampaignRecipient, Campaign
    found = (
        R.select(R.benefit_ref, C.benefit)
        .join(C, on=(R.campaign == C.id))
        .join(ListRun, on=(C.run_id == ListRun.id))
        .where(
            (R.member_id == member_id)
            & ~R.control
            & (ListRun.kind == "birthdays")
            & (ListRun.start >= dt.date(year, 1, 1))
            & (ListRun.start < dt.date(year + 1, 1, 1))
            & (C.status != "cancelled")
        )
        .order_by(ListRun.start.desc(), C.id.desc())
        .tuples()
        .first()
    )
    if found is not None and found[1]:
        ref, benefit = found
        kind = next(iter(benefit))
        if ref is None:
            return "coming", ""
        if kind == "points":
            return "points", f"{benefit['points']} 积分"
        if kind == "gift":
            return "gift", str(benefit["gift"])
        coupon = Coupon.get_or_none(Coupon.code == ref)
        if coupon is not None:
            return ("used" if coupon.status == "used" else "issued"), ""
    start = dt.datetime(year, 1, 1)
    coupon = (
        Coupon.select(Coupon.status)
        .join(CouponTemplate, on=(Coupon.template_id == CouponTemplate.id))
        .where(
            (Coupon.member_id == member_id)
            & (CouponTemplate.name.contains("生日"))
            & (Coupon.issued_at >= start)
        )
        .order_by(Coupon.issued_at.desc())
        .first()
    )
    if coupon is None:
        return "none", ""
    return ("used" if coupon.status == "used" else "issued"), ""


def _recent_sales(member_id: str) -> list[dict[str, Any]]:
    sales = (
        Sale.select(Sale.store, Sale.occurred_at, Sale.total, Sale.body)
        .where(Sale.member_id == member_id)
        .order_by(Sale.occurred_at.desc())
        .limit(RECENT_SALES)
    )
    names = {s.code: s.name for s in Store.select(Store.code, Store.name)}
    out = []
    for sale in sales:
        lines = sale.body.get("lines", []) if isinstance(sale.body, dict) else []
        out.append(
            {
                "at": str(sale.occurred_at)[:16].replace("T", " "),
                "store": names.get(sale.store) or sale.store,
                "total": sale.total,
                "item_count": sum(
                    int(line.get("qty", 0)) for line in lines if isinstance(line, dict)
                ),
            }
        )
    return out


def member_page(member: Member, rules: Rules, today: dt.date, bound: bool) -> dict[str, Any]:
    """The page's data for ``member`` (already the surviving one). Money in fen."""
    points = max(0, member.points)
    coupons = _coupons(member.id, today)
    page: dict[str, Any] = {
        "bound": bound,
        "points": points,
        "points_worth": fen_for_points(rules, points),
        "tier": _tier(rules, member),
        "coupon_count": len(coupons),
        "birthday": _birthday(member, today),
    }
    if bound:
        page |= {
            "name": mask_name(member.name),
            "phone": mask_phone(member.phone or ""),
            "stored_value": member.sv_principal + member.sv_bonus,
            "coupons": coupons,
            "recent_sales": _recent_sales(member.id),
        }
    return page
