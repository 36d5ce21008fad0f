"""``huiyuan-hq coupon-template add|list`` and ``huiyuan-hq issue-coupons`` (issue 11,
docs/programme/coupons.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from core.errors import HuiyuanError, ValidationError
from hq.models import bind, open_database, utcnow


@click.group("coupon-template")
def coupon_template() -> None:
    """Coupon templates: what a coupon gives and when (immutable once added)."""


@coupon_template.command("add")
@click.option("--id", "template_id", required=True, help="a short id, e.g. NEW10")
@click.option("--name", required=True, help="what the member sees, e.g. 新人券")
@click.option("--kind", required=True, type=click.Choice(["amount", "percent", "gift"]))
@click.option("--amount", type=int, default=0, help="amount: fen off")
@click.option("--off-permille", type=int, default=0, help="percent: permille off (100 = 九折)")
@click.option("--gift-sku", default=None, help="gift: the SKU given free (one unit)")
@click.option(
    "--min-spend", type=int, default=0, help="fen of eligible goods after member discount"
)
@click.option("--category", "categories", multiple=True, help="an eligible category (repeat)")
@click.option("--sku", "skus", multiple=True, help="an eligible SKU (repeat)")
@click.option("--valid-from", default=None, help="fixed dates: first day (YYYY-MM-DD)")
@click.option("--valid-until", default=None, help="fixed dates: last day (YYYY-MM-DD)")
@click.option("--valid-days", type=int, default=0, help="or: valid N days from issue")
@click.option("--per-member-limit", type=int, default=0, help="coupons one member may hold; 0: any")
@click.option("--by", "actor", required=True, help="who adds it (audited)")
@click.option("--no-push", is_flag=True, help="only write the change log")
@click.pass_context
def template_add(ctx: click.Context, actor: str, no_push: bool, **opts: Any) -> None:
    """Add a coupon template and publish it to the stores."""
    from hq.changes import ChangeSet, flush_changes
    from hq.cli import _config, _fail, push_changes
    from hq.programme.coupons import add_template

    data = {
        "id": opts["template_id"],
        "name": opts["name"],
        "kind": opts["kind"],
        "amount": opts["amount"],
        "off_permille": opts["off_permille"],
        "gift_sku": opts["gift_sku"],
        "min_spend": opts["min_spend"],
        "categories": list(opts["categories"]),
        "skus": list(opts["skus"]),
        "valid_from": opts["valid_from"],
        "valid_until": opts["valid_until"],
        "valid_days": opts["valid_days"],
        "per_member_limit": opts["per_member_limit"],
    }
    config = _config(ctx)
    db = open_database(config.database_url)
    try:
        with bind(db, create=False):
            now = utcnow()
            changes = ChangeSet()
            with db.atomic():
                template = add_template(db, data, by=actor, now=now, changes=changes)
                sent = flush_changes(db, changes, now)
    except HuiyuanError as exc:
        _fail(exc)
    click.echo(f"template {template.id}: {template.name} {template.describe()}")
    if not no_push:
        push_changes(config, sent)


@coupon_template.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def template_list(ctx: click.Context, as_json: bool) -> None:
    """List the coupon templates."""
    from hq.cli import _config, _print_rows
    from hq.programme.coupons import list_templates

    with bind(open_database(_config(ctx).database_url), create=False):
        rows = list_templates()
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        _print_rows(rows, ("id", "name", "kind", "amount", "off_permille", "min_spend", "active"))


@click.command("issue-coupons")
@click.argument("template_id")
@click.option("--member", "members", multiple=True, help="a member id (repeat)")
@click.option(
    "--members-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="a file of member ids, one a line",
)
@click.option("--by", "actor", required=True, help="who issues them (audited)")
@click.option("--source", default="hq", type=click.Choice(["hq", "campaign"]))
@click.option("--ref", default=None, help="the campaign or reason they are issued for")
@click.option("--no-push", is_flag=True, help="only write the change log")
@click.pass_context
def issue_coupons_cmd(
    ctx: click.Context,
    template_id: str,
    members: tuple[str, ...],
    members_file: Path | None,
    actor: str,
    source: str,
    ref: str | None,
    no_push: bool,
) -> None:
    """Issue one coupon of TEMPLATE_ID to each member (members at the template's limit
    get none); prints each code."""
    from hq.changes import ChangeSet, flush_changes
    from hq.cli import _config, _fail, push_changes
    from hq.programme.coupons import issue_coupons

    ids = list(members)
    if members_file is not None:
        ids += [ln.strip() for ln in members_file.read_text().splitlines() if ln.strip()]
    if not ids:
        _fail(ValidationError("name members with --member or --members-file", field="member"))
    config = _config(ctx)
    db = open_database(config.database_url)
    try:
        with bind(db, create=False):
            now = utcnow()
            changes = ChangeSet()
            with db.atomic():
                codes = issue_coupons(
                    db, template_id, ids, by=actor, source=source, ref=ref, now=now,
                    changes=changes, today=config.business_day(now),
                )  # fmt: skip
                sent = flush_changes(db, changes, now)
    except HuiyuanError as exc:
        _fail(exc)
    for code in codes:
        click.echo(code)
    skipped = len(ids) - len(codes)
    click.echo(f"issued {len(codes)}, skipped {skipped} at the template's limit", err=True)
    if not no_push:
        push_changes(config, sent)
    sys.exit(0)


def register(main: click.Group) -> None:
    main.add_command(coupon_template)
    main.add_command(issue_coupons_cmd)
