"""``huiyuan-hq consent | export-member | erase-member``: a member's personal data (PIPL).

Registered on the main group by ``hq.cli`` (``register(main)``). ``hq.cli`` is imported
inside the commands: it imports this module while it loads.
"""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path

import click

from core.errors import HuiyuanError
from hq import privacy
from hq.models import bind, open_database, utcnow

YES_NO = click.Choice(["yes", "no"])


def _operator() -> str:
    """Who runs the command, for the audit row: the login behind sudo if any."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def _member_options(f):  # noqa: ANN001, ANN202
    f = click.option("--card", default=None, help="the member's card number")(f)
    f = click.option("--phone", default=None, help="the member's phone number")(f)
    return click.argument("member_id", required=False)(f)


@click.command("consent")
@_member_options
@click.option("--sms", type=YES_NO, default=None, help="marketing by SMS")
@click.option("--wechat", type=YES_NO, default=None, help="marketing by WeChat")
@click.option("--call", type=YES_NO, default=None, help="marketing by phone call")
@click.option("--by", default=None, help="who records it (default: the login)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def consent_cmd(
    ctx: click.Context,
    member_id: str | None,
    phone: str | None,
    card: str | None,
    sms: str | None,
    wechat: str | None,
    call: str | None,
    by: str | None,
    as_json: bool,
) -> None:
    """Show a member's marketing consent, or change it (--sms yes|no, --wechat, --call)."""
    from hq.cli import _config, _fail

    given = {k: v == "yes" for k, v in (("sms", sms), ("wechat", wechat), ("call", call)) if v}
    db = bind(open_database(_config(ctx).database_url), create=False)
    try:
        member = privacy.find_member_for_request(member_id, phone, card)
        if given:
            state = privacy.set_consent(db, member.id, given, by or _operator(), utcnow())
        else:
            state = privacy.consent_state(member.id)
    except HuiyuanError as exc:
        _fail(exc)
    finally:
        db.close()
    if as_json:
        click.echo(json.dumps({"member_id": member.id, "consent": state}, ensure_ascii=False))
        return
    click.echo(f"会员 {member.id} 营销同意 (marketing consent):")
    for channel, answer in state.items():
        word = "同意 yes" if answer["granted"] else "不同意 no"
        where = (
            f"  {answer['at']} {answer['source']} {answer['store'] or ''}" if answer["at"] else ""
        )
        click.echo(f"  {channel:7} {word}{where}")


@click.command("export-member")
@_member_options
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--by", default=None, help="who asks (default: the login)")
@click.pass_context
def export_member_cmd(
    ctx: click.Context,
    member_id: str | None,
    phone: str | None,
    card: str | None,
    out: Path | None,
    by: str | None,
) -> None:
    """Everything HQ holds about a member, as JSON (the member's right to see it)."""
    from hq.cli import _config, _fail

    db = bind(open_database(_config(ctx).database_url), create=False)
    try:
        member = privacy.find_member_for_request(member_id, phone, card)
        data = privacy.export_member(db, member, by or _operator(), utcnow())
    except HuiyuanError as exc:
        _fail(exc)
    finally:
        db.close()
    text = json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    # personal data: readable by the operator only
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    click.echo(f"已导出会员 {data['member']['member_id']} 的个人信息到 {out} (exported)")


@click.command("erase-member")
@click.argument("member_id")
@click.option("--reason", required=True, help="why (kept in the audit row)")
@click.option("--by", default=None, help="who erases (default: the login)")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.option("--no-push", is_flag=True, help="only write the change log")
@click.pass_context
def erase_member_cmd(
    ctx: click.Context, member_id: str, reason: str, by: str | None, yes: bool, no_push: bool
) -> None:
    """Erase a member's personal data at HQ and every store; the ledger and sales stay."""
    from hq.cli import _config, _fail, push_changes

    config = _config(ctx)
    db = bind(open_database(config.database_url), create=False)
    try:
        member = privacy.find_member_for_request(member_id)
        if not yes:
            click.confirm(
                f"删除会员 {member.id} 的姓名、手机号、生日等个人信息? 余额和流水保留. "
                "(erase this member's personal data?)",
                abort=True,
            )
        changes = privacy.erase_member(db, member, reason, by or _operator(), utcnow())
    except HuiyuanError as exc:
        _fail(exc)
    finally:
        db.close()
    click.echo(f"已删除会员 {member.id} 的个人信息 (erased; {len(changes)} changes for the stores)")
    if not no_push:
        push_changes(config, changes)


def register(group: click.Group) -> None:
    for command in (consent_cmd, export_member_cmd, erase_member_cmd):
        group.add_command(command)
