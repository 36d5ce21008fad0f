"""``huiyuan-hq adjust-points | gift add/list/remove``: points by hand and the gift
catalogue (docs/programme/points.md). Registered on the main group by ``hq.cli``
(``register(main)``); ``hq.cli`` is imported inside the commands (it imports this module
while it loads)."""

from __future__ import annotations

import json

import click

from core.days import parse_day
from core.errors import HuiyuanError
from hq.models import bind, open_database, utcnow
from hq.programme import points


@click.command("adjust-points", context_settings={"ignore_unknown_options": True})
@click.argument("member_id")
@click.argument("delta", type=int)
@click.option("--by", required=True, help="who adjusts (the HQ user), for the audit log")
@click.option("--reason", required=True, help="why (须填写原因), for the audit log")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def adjust_points_cmd(
    ctx: click.Context, member_id: str, delta: int, by: str, reason: str, as_json: bool
) -> None:
    """积分调整: add (DELTA > 0, a new lot expiring by the rules) or take (DELTA < 0, e.g.
    -150, the soonest-expiring lots first, never below zero) a member's points; audited."""
    from hq.cli import _config, _fail, push_changes

    config = _config(ctx)
    db = bind(open_database(config.database_url), create=False)
    try:
        now = utcnow()
        out = points.adjust_points(
            db,
            member_id,
            delta,
            by=by,
            reason=reason,
            today=config.business_day(now),
            now=now,
        )
    except HuiyuanError as exc:
        _fail(exc)
    finally:
        db.close()
    push_changes(config, out.pop("changes"))
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    click.echo(f"会员 {out['member_id']} 积分 {delta:+d}, 现有 {out['points']} (points adjusted)")


@click.group("gift")
def gift_group() -> None:
    """积分兑换礼品: the gift catalogue sent to every store."""


@gift_group.command("add")
@click.argument("gift_id")
@click.option("--name", required=True)
@click.option("--points", "points_each", type=int, required=True, help="points per unit")
@click.option("--kind", type=click.Choice(["goods", "coupon"]), default="goods", show_default=True)
@click.option("--sku", default=None, help="the product handed over (goods)")
@click.option("--template", default=None, help="the coupon template issued (coupon)")
@click.option("--from", "valid_from", default=None, help="first day it can be redeemed")
@click.option("--to", "valid_to", default=None, help="last day it can be redeemed")
@click.option("--by", required=True, help="who (the HQ user), for the audit log")
@click.pass_context
def gift_add(
    ctx: click.Context,
    gift_id: str,
    name: str,
    points_each: int,
    kind: str,
    sku: str | None,
    template: str | None,
    valid_from: str | None,
    valid_to: str | None,
    by: str,
) -> None:
    """Add a gift (or replace the one with this id)."""
    from hq.cli import _config, _fail, push_changes

    config = _config(ctx)
    db = bind(open_database(config.database_url), create=False)
    try:
        state, changes = points.add_gift(
            db,
            gift_id,
            name=name,
            points=points_each,
            kind=kind,
            sku=sku,
            coupon_template=template,
            valid_from=parse_day(valid_from, "--from"),
            valid_to=parse_day(valid_to, "--to"),
            by=by,
        )
    except HuiyuanError as exc:
        _fail(exc)
    finally:
        db.close()
    push_changes(config, changes)
    click.echo(json.dumps(state, ensure_ascii=False))


@gift_group.command("remove")
@click.argument("gift_id")
@click.option("--by", required=True, help="who (the HQ user), for the audit log")
@click.pass_context
def gift_remove(ctx: click.Context, gift_id: str, by: str) -> None:
    """Stop offering a gift (kept at HQ, inactive, for late redemptions)."""
    from hq.cli import _config, _fail, push_changes

    config = _config(ctx)
    db = bind(open_database(config.database_url), create=False)
    try:
        state, changes = points.remove_gift(db, gift_id, by=by)
    except HuiyuanError as exc:
        _fail(exc)
    finally:
        db.close()
    push_changes(config, changes)
    click.echo(json.dumps(state, ensure_ascii=False))


@gift_group.command("list")
@click.option("--all", "include_removed", is_flag=True, help="removed gifts too")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def gift_list(ctx: click.Context, include_removed: bool, as_json: bool) -> None:
    """The gift catalogue."""
    from hq.cli import _config

    db = bind(open_database(_config(ctx).database_url), create=False)
    try:
        gifts = points.list_gifts(include_removed)
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps(gifts, ensure_ascii=False))
        return
    if not gifts:
        click.echo("(none)")
    for g in gifts:
        what = g["sku"] if g["kind"] == "goods" else g["coupon_template"]
        dates = (
            f" {g['valid_from'] or '…'}..{g['valid_to'] or '…'}"
            if (g["valid_from"] or g["valid_to"])
            else ""
        )
        state = "" if g["active"] else " (removed)"
        click.echo(
            f"{g['gift_id']}  {g['name']}  {g['points']}分  {g['kind']}:{what}{dates}{state}"
        )


def register(main: click.Group) -> None:
    main.add_command(adjust_points_cmd)
    main.add_command(gift_group)
