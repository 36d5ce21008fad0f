"""``/api/marketing/campaigns``: campaigns as JSON (docs/campaigns.md).

Reading needs ``marketing.read``; creating, changing, launching and cancelling need
``campaigns.manage`` (each audited by hq/marketing/campaigns.py). A store or area
manager's call list holds their stores' members only; name and phone are in full for a
role with ``members.pii`` (staff dial from it), masked otherwise (hq/access/masking.py);
each read is audited as an export (``marketing.export``, target ``campaign:<id>:calls``),
as the console's call list and workbook are.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from core.errors import ValidationError
from hq import audit
from hq.access.guard import current, requires
from hq.access.masking import mask_name, mask_phone
from hq.marketing import api as marketing_api
from hq.marketing import campaigns
from hq.models import Member, Store, utcnow

bp = Blueprint("campaign_api", __name__, url_prefix="/api/marketing/campaigns")
CALLS_MAX = 20_000  # rows in one call list answer


def db() -> Any:
    return marketing_api.db()


def zone() -> Any:
    """The chain's time zone (HqConfig.timezone): send times are in its wall clock."""
    return current_app.config["HQ"].zone()


def _one(c: Any) -> dict[str, Any]:
    return campaigns.as_dict(c, zone())


@bp.get("")
@requires("marketing.read")
def list_route() -> Any:
    return jsonify({"campaigns": [_one(c) for c in campaigns.all_campaigns()]})


@bp.post("")
@requires("campaigns.manage")
def create_route() -> Any:
    c = campaigns.create(db(), marketing_api._body(), current().actor, utcnow(), zone())
    return jsonify({"campaign": _one(c)}), 201


@bp.get("/<int:campaign_id>")
@requires("marketing.read")
def get_route(campaign_id: int) -> Any:
    c = campaigns.get(campaign_id)
    return jsonify({"campaign": _one(c), "progress": campaigns.progress(c.id)})


@bp.patch("/<int:campaign_id>")
@requires("campaigns.manage")
def update_route(campaign_id: int) -> Any:
    c = campaigns.update(
        db(), campaign_id, marketing_api._body(), current().actor, utcnow(), zone()
    )
    return jsonify({"campaign": _one(c)})


@bp.post("/<int:campaign_id>/launch")
@requires("campaigns.manage")
def launch_route(campaign_id: int) -> Any:
    c = campaigns.launch(db(), campaign_id, current().actor, utcnow(), marketing_api.today())
    return jsonify({"campaign": _one(c), "progress": campaigns.progress(c.id)})


@bp.post("/<int:campaign_id>/cancel")
@requires("campaigns.manage")
def cancel_route(campaign_id: int) -> Any:
    c = campaigns.cancel(db(), campaign_id, current().actor, utcnow())
    return jsonify({"campaign": _one(c), "progress": campaigns.progress(c.id)})


@bp.get("/<int:campaign_id>/progress")
@requires("marketing.read")
def progress_route(campaign_id: int) -> Any:
    return jsonify(campaigns.progress(campaign_id))


def call_rows(campaign_id: int, stores: list[str] | None, pii: bool) -> list[dict[str, Any]]:
    """The call list as rows a screen shows, by store and maintainer: name and phone in
    full for a role with ``members.pii`` (staff dial from it), masked otherwise."""
    found = campaigns.call_list(campaign_id, stores)
    if len(found) > CALLS_MAX:
        raise ValidationError(
            f"名单超过{CALLS_MAX}人, 请按门店查看 (more than {CALLS_MAX} rows: name a store)",
            field="store",
        )
    names = dict(Store.select(Store.code, Store.name).tuples())
    people: dict[str, tuple[str, str | None, str | None]] = {}
    ids = [mid for mid, _, _ in found]
    for i in range(0, len(ids), 1000):
        query = Member.select(Member.id, Member.name, Member.phone, Member.tier).where(
            Member.id.in_(ids[i : i + 1000])
        )
        people.update({mid: (name, phone, tier) for mid, name, phone, tier in query.tuples()})
    rows = []
    for mid, store, staff in found:
        name, phone, tier = people.get(mid, ("", None, None))
        rows.append(
            {
                "member_id": mid,
                "name": name if pii else (mask_name(name) or ""),
                "phone": (phone or "") if pii else mask_phone(phone),
                "tier": tier,
                "store": store,
                "store_name": names.get(store, ""),
                "maintainer": staff,
            }
        )
    return rows


@bp.get("/<int:campaign_id>/calls")
@requires("marketing.read")
def calls_route(campaign_id: int) -> Any:
    me = current()
    c = campaigns.get(campaign_id)
    rows = call_rows(c.id, marketing_api.stores_arg(me), me.can("members.pii"))
    audit.record(
        db(), me.actor, "marketing.export", f"campaign:{c.id}:calls", format="json",
        rows=len(rows), phones="full" if me.can("members.pii") else "masked",
    )  # fmt: skip
    return jsonify({"campaign": _one(c), "rows": rows})
