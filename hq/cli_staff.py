"""``huiyuan-hq staff | maintainer | staff-sales | product``: HQ's staff registry, moving
members between maintainers, the figures that credit sales to staff, and publishing a
product with its category and cost (docs/programme/staff.md).

Registered on the main group by ``hq.cli`` (``register(main)``); ``hq.cli`` is imported
inside the commands, as it imports this module while it loads.
"""

from __future__ import annotations

import json
from typing import Any

import click

from core.days import parse_day
from core.errors import HuiyuanError
from core.protocol import Change
from hq.models import ChangeRecord, bind, open_database, utcnow
from hq.programme import staff as programme


def _run(ctx: click.Context, work: Any, push: bool = True) -> Any:
    """Run ``work(db)`` on HQ's database; a refusal exits with its code and message. The
    change records it wrote are pushed to the stores now, best effort (a store also gets
    them with its next change page)."""
    from hq.changes import latest_change_seq
    from hq.cli import _config, _fail, push_changes

    config = _config(ctx)
    db = bind(open_database(config.database_url), create=False)
    written: list[Change] = []
    try:
        before = latest_change_seq()
        result = work(db)
        if push:
            rows = ChangeRecord.select().where(ChangeRecord.seq > before)
            written = [
                Change(r.seq, r.entity, r.key, r.op, r.data)
                for r in rows.order_by(ChangeRecord.seq)
            ]
    except HuiyuanError as exc:
        _fail(exc)
    finally:
        db.close()
    if written:
        push_changes(config, written)
    return result


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=1, default=str))


# ---- staff --------------------------------------------------------------------------


@click.group("staff")
def staff_group() -> None:
    """HQ's staff registry: who may look after members (维护人) and be credited with sales."""


@staff_group.command("add")
@click.argument("code")
@click.option("--name", required=True)
@click.option("--store", required=True, help="the store the staff member works at")
@click.option("--role", default="cashier", type=click.Choice(programme.STAFF_ROLES))
@click.option("--by", required=True, help="who adds them (HQ user)")
@click.pass_context
def staff_add(ctx: click.Context, code: str, name: str, store: str, role: str, by: str) -> None:
    """Add a staff member (status active); every store receives them."""
    _run(ctx, lambda db: programme.add_staff(db, code, name, store, role, by, utcnow()))
    click.echo(f"staff {code} added at {store}")


@staff_group.command("list")
@click.option("--store", default=None)
@click.option("--status", default=None, type=click.Choice(["active", "leaving", "closed"]))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def staff_list(ctx: click.Context, store: str | None, status: str | None, as_json: bool) -> None:
    """The registry, with how many members each one looks after."""
    rows = _run(ctx, lambda db: programme.list_staff(store, status))
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        click.echo(
            f"{r['code']:10} {r['name']:8} {r['store']:8} {r['role']:8} {r['status']:8} "
            f"members={r['members']}"
        )


@staff_group.command("leave")
@click.argument("code")
@click.option("--by", required=True)
@click.pass_context
def staff_leave(ctx: click.Context, code: str, by: str) -> None:
    """Mark a staff member as leaving: no new member may name them as maintainer."""
    _run(ctx, lambda db: programme.mark_leaving(db, code, by, utcnow()))
    click.echo(f"staff {code} is leaving")


@staff_group.command("close")
@click.argument("code")
@click.option("--by", required=True)
@click.option("--handover-to", default=None, help="who takes the members still theirs")
@click.option("--reason", default="", help="why (kept in the audit log)")
@click.pass_context
def staff_close(
    ctx: click.Context, code: str, by: str, handover_to: str | None, reason: str
) -> None:
    """Close a staff account; refused while members remain theirs, unless --handover-to
    names who takes them (recorded as an approved transfer)."""
    _run(ctx, lambda db: programme.close_staff(db, code, by, utcnow(), handover_to, reason))
    click.echo(
        f"staff {code} closed" + (f", members handed to {handover_to}" if handover_to else "")
    )


# ---- maintainer transfers -----------------------------------------------------------


@click.group("maintainer")
def maintainer_group() -> None:
    """Moving members between maintainers: request, the store manager's approval (at the
    till, or --for-store here), HQ's approval across stores."""


@maintainer_group.command("request")
@click.option("--from", "from_staff", required=True, help="the current maintainer")
@click.option("--to", "to_staff", required=True, help="the new maintainer")
@click.option("--member", "members", multiple=True, help="a member id (default: all theirs)")
@click.option("--reason", required=True)
@click.option("--by", required=True, help="who asks")
@click.pass_context
def maintainer_request(
    ctx: click.Context,
    from_staff: str,
    to_staff: str,
    members: tuple[str, ...],
    reason: str,
    by: str,
) -> None:
    """Ask to move members from one maintainer to another."""
    t = _run(
        ctx,
        lambda db: programme.request_transfer(
            db, from_staff, to_staff, reason, by, utcnow(), list(members) or None
        ),
    )
    click.echo(f"transfer {t.id}: {len(t.member_ids)} members, waiting for {t.from_store}")


@maintainer_group.command("approve")
@click.argument("transfer_id")
@click.option("--by", required=True)
@click.option("--for-store", is_flag=True, help="also give the store manager's approval")
@click.pass_context
def maintainer_approve(ctx: click.Context, transfer_id: str, by: str, for_store: bool) -> None:
    """HQ's approval of a transfer (after the store manager's)."""
    t = _run(
        ctx,
        lambda db: programme.approve_transfer(db, transfer_id, by, utcnow(), for_store=for_store),
    )
    click.echo(f"transfer {t.id}: {t.status}, {t.moved} members moved")


@maintainer_group.command("reject")
@click.argument("transfer_id")
@click.option("--by", required=True)
@click.option("--reason", required=True)
@click.pass_context
def maintainer_reject(ctx: click.Context, transfer_id: str, by: str, reason: str) -> None:
    """Reject an open transfer."""
    t = _run(ctx, lambda db: programme.reject_transfer(db, transfer_id, by, reason, utcnow()))
    click.echo(f"transfer {t.id}: rejected")


@maintainer_group.command("list")
@click.option("--status", default=None)
@click.option("--store", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def maintainer_list(
    ctx: click.Context, status: str | None, store: str | None, as_json: bool
) -> None:
    """Transfers, oldest first."""
    rows = _run(ctx, lambda db: programme.list_transfers(status, store))
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        click.echo(
            f"{r['transfer_id']} {r['status']:14} {r['from_staff']}@{r['from_store']} -> "
            f"{r['to_staff']}@{r['to_store']} members={len(r['member_ids'])} {r['reason']}"
        )


# ---- figures ------------------------------------------------------------------------


@click.command("staff-sales")
@click.option("--store", default=None)
@click.option("--from", "first", default=None, help="first business day, YYYY-MM-DD")
@click.option("--to", "last", default=None, help="last business day, YYYY-MM-DD")
@click.option("--margin", is_flag=True, help="also the margin by category")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def staff_sales_cmd(
    ctx: click.Context,
    store: str | None,
    first: str | None,
    last: str | None,
    margin: bool,
    as_json: bool,
) -> None:
    """Per staff member: members recruited, their sales, sales served, maintained
    members' sales (fen); with --margin, the margin by category."""

    def work(db: Any) -> dict[str, Any]:
        period = programme.Period(parse_day(first, "--from"), parse_day(last, "--to"))
        out: dict[str, Any] = {"staff": programme.staff_sales(store, period)}
        if margin:
            out["categories"] = programme.category_margin(store, period)
        return out

    result = _run(ctx, work, push=False)
    if as_json:
        _echo_json(result)
        return
    click.echo(
        "code       recruited  recruited_sales  served_sales  maintained_sales  followups_done"
    )
    for r in result["staff"]:
        click.echo(
            f"{r['code']:10} {r['recruited']:9}  {r['recruited_sales']:5} {r['recruited_total']:9}"
            f"  {r['served_sales']:4} {r['served_total']:9}"
            f"  {r['maintained_sales']:5} {r['maintained_total']:9}"
            f"  {r['followups_done']:5}"  # -- follow-ups (issue 14)
        )
    for c in result.get("categories", []):
        click.echo(
            f"{c['category'] or '-':10} amount={c['amount']} cost={c['cost']} "
            f"margin={c['margin']} uncosted={c['uncosted']}"
        )


# ---- products -----------------------------------------------------------------------


@click.group("product")
def product_group() -> None:
    """Products as HQ publishes them to every store."""


@product_group.command("publish")
@click.argument("sku")
@click.option("--name", required=True)
@click.option("--price", "unit_price", required=True, type=int, help="fen")
@click.option("--category", default=None, help="the chain's category code")
@click.option("--cost", default=None, help="unit cost in fen (empty: not known)")
@click.option("--barcode", default=None)
@click.pass_context
def product_publish(
    ctx: click.Context,
    sku: str,
    name: str,
    unit_price: int,
    category: str | None,
    cost: str | None,
    barcode: str | None,
) -> None:
    """Publish one product (with its category and cost) to every store."""
    from hq.rules import publish_product

    data: dict[str, Any] = {}
    if category is not None:
        data["category"] = category
    if cost is not None:
        cost = cost.strip()
        if cost and not cost.isdigit():
            raise click.BadParameter("cost must be integer fen >= 0, or empty", param_hint="--cost")
        data["cost"] = int(cost) if cost else None
    if barcode:
        data["barcode"] = barcode
    if unit_price < 0:
        raise click.BadParameter("price must be integer fen >= 0", param_hint="--price")
    _run(ctx, lambda db: publish_product(db, sku, name, unit_price, **data))
    click.echo(f"product {sku} published")


def register(main: click.Group) -> None:
    for command in (staff_group, maintainer_group, staff_sales_cmd, product_group):
        main.add_command(command)
