"""``huiyuan-hq clear-stored-value | sv-statement | edit-member | reset-member-password |
profile-completeness``: member upkeep at HQ (docs/programme/upkeep.md).

Registered on the main group by ``hq.cli`` (``register(main)``); ``hq.cli`` is imported
inside the commands (it imports this module while it loads). The logic is in
hq/programme/upkeep.py, which the console will call too.
"""

from __future__ import annotations

import json

import click

from core.days import parse_day
from core.errors import HuiyuanError
from hq.models import bind, open_database, utcnow
from hq.programme import upkeep


@click.command("clear-stored-value")
@click.argument("member_id")
@click.option("--by", required=True, help="who clears it (kept in the audit row)")
@click.option("--reason", required=True, help="why (kept in the audit row)")
@click.option("--no-push", is_flag=True, help="only write the change log")
@click.pass_context
def clear_stored_value_cmd(
    ctx: click.Context, member_id: str, by: str, reason: str, no_push: bool
) -> None:
    """储值清零: take a member's stored value to zero, with a reason and an audit row."""
    from hq.cli import _config, _fail, push_changes

    config = _config(ctx)
    db = bind(open_database(config.database_url), create=False)
    try:
        done, changes = upkeep.clear_stored_value(db, member_id, by, reason, utcnow())
    except HuiyuanError as exc:
        _fail(exc)
    finally:
        db.close()
    click.echo(
        f"会员 {done['member_id']} 储值已清零: 本金 {done['principal']} 分, 赠送 {done['bonus']} 分 "
        f"(cleared, ledger ref {done['ref']})"
    )
    if not no_push:
        push_changes(config, changes)


@click.command("sv-statement")
@click.argument("member_id")
@click.option("--from", "date_from", default=None, help="first day (YYYY-MM-DD, chain time)")
@click.option("--to", "date_to", default=None, help="last day (YYYY-MM-DD, chain time)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sv_statement_cmd(
    ctx: click.Context, member_id: str, date_from: str | None, date_to: str | None, as_json: bool
) -> None:
    """A member's stored value statement: opening, each movement, closing."""
    from hq.cli import _config, _fail

    config = _config(ctx)
    db = bind(open_database(config.database_url), create=False)
    try:
        data = upkeep.sv_statement(
            db,
            member_id,
            parse_day(date_from, "--from"),
            parse_day(date_to, "--to"),
            config.zone(),
        )
    except HuiyuanError as exc:
        _fail(exc)
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    o, c = data["opening"], data["closing"]
    click.echo(f"会员 {data['member_id']} 储值对账单 (stored value statement, fen)")
    click.echo(f"期初 opening   本金 {o['principal']}  赠送 {o['bonus']}  合计 {o['total']}")
    for m in data["movements"]:
        click.echo(
            f"{m['at']}  {m['store'] or '总部'}  {m['label']}  本金 {m['principal']:+d}  "
            f"赠送 {m['bonus']:+d}  {m['ref'] or ''}"
        )
    click.echo(f"期末 closing   本金 {c['principal']}  赠送 {c['bonus']}  合计 {c['total']}")


@click.command("edit-member")
@click.argument("member_id")
@click.option(
    "--set",
    "sets",
    multiple=True,
    help="field=value (name, gender, birthday, birthday_calendar, occupation, preferences "
    "and tags comma-separated, anniversaries as JSON, notes, phone, extra.NAME)",
)
@click.option("--by", required=True, help="who edits (kept in the audit row)")
@click.option("--no-push", is_flag=True, help="only write the change log")
@click.pass_context
def edit_member_cmd(
    ctx: click.Context, member_id: str, sets: tuple[str, ...], by: str, no_push: bool
) -> None:
    """Edit a member's profile at HQ (audited; the member goes down to every store)."""
    from hq.cli import _config, _fail, push_changes

    config = _config(ctx)
    db = bind(open_database(config.database_url), create=False)
    try:
        applied, changes = upkeep.edit_member(db, member_id, list(sets), by, utcnow())
    except HuiyuanError as exc:
        _fail(exc)
    finally:
        db.close()
    if not applied:
        click.echo("没有变化 (nothing changed)")
        return
    click.echo(f"已修改会员 {member_id}: {', '.join(applied)}")
    if not no_push:
        push_changes(config, changes)


@click.command("reset-member-password")
@click.argument("member_id")
@click.option("--by", required=True, help="who resets it (kept in the audit row)")
@click.option("--reason", required=True, help="why (kept in the audit row)")
@click.option("--no-push", is_flag=True, help="only write the change log")
@click.pass_context
def reset_member_password_cmd(
    ctx: click.Context, member_id: str, by: str, reason: str, no_push: bool
) -> None:
    """Clear a member's payment password: the next till visit sets a new one."""
    from hq.cli import _config, _fail, push_changes

    config = _config(ctx)
    db = bind(open_database(config.database_url), create=False)
    try:
        changes = upkeep.reset_member_password(db, member_id, by, reason, utcnow())
    except HuiyuanError as exc:
        _fail(exc)
    finally:
        db.close()
    click.echo(f"会员 {member_id} 的密码已清除, 下次到店设置新密码 (password cleared)")
    if not no_push:
        push_changes(config, changes)


@click.command("profile-completeness")
@click.option("--store", default=None, help="one registering store")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def profile_completeness_cmd(ctx: click.Context, store: str | None, as_json: bool) -> None:
    """Members' data completeness (0..100) per registering store."""
    from hq.cli import _config

    db = bind(open_database(_config(ctx).database_url), create=False)
    try:
        rows = upkeep.profile_completeness(db, store)
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    click.echo("store  members  average  complete  below_50")
    for r in rows:
        click.echo(
            f"{r['store']}  {r['members']}  {r['average']}  {r['complete']}  {r['below_50']}"
        )
    if not rows:
        click.echo("(none)")


def register(group: click.Group) -> None:
    for command in (
        clear_stored_value_cmd,
        sv_statement_cmd,
        edit_member_cmd,
        reset_member_password_cmd,
        profile_completeness_cmd,
    ):
        group.add_command(command)
