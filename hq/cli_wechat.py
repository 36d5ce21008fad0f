"""``huiyuan-hq wechat import | unbind`` (members' WeChat openids, hq/channels/wechat.py)
and ``huiyuan-hq sms-reply`` (an SMS reply that may say 退订, hq/portal/unsubscribe.py).

Registered on the main group by ``hq.cli`` (``register(main)``). ``hq.cli`` is imported
inside the commands: it imports this module while it loads.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from typing import Any

import click

from core.errors import HuiyuanError
from hq.models import bind, open_database, utcnow


def _operator() -> str:
    return os.environ.get("SUDO_USER") or getpass.getuser()


def _with_db(ctx: click.Context, work: Callable[[Any], Any]) -> Any:
    """Run ``work(db)`` on HQ's database; a refusal is the command's error and exit code."""
    from hq.cli import _config, _fail

    db = bind(open_database(_config(ctx).database_url), create=False)
    try:
        return work(db)
    except HuiyuanError as exc:
        _fail(exc)
    finally:
        db.close()


@click.group("wechat")
def wechat_group() -> None:
    """Members' WeChat official-account openids (what template messages are sent to)."""


@wechat_group.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--by", default=None, help="who imports (default: the login)")
@click.pass_context
def import_cmd(ctx: click.Context, path: str, by: str | None) -> None:
    """Bind openids from a CSV: a header naming openid and phone (or member_id). Good rows
    load, bad rows are listed by line (phones masked); exit 11 when any row was bad."""
    from hq.channels.wechat import import_openids_file

    result = _with_db(ctx, lambda db: import_openids_file(db, path, by or _operator(), utcnow()))
    click.echo(
        f"已绑定 {result.loaded} 个, 未变 {result.unchanged} 个, 错误 {len(result.errors)} 行 "
        f"(bound {result.loaded}, unchanged {result.unchanged}, refused {len(result.errors)})"
    )
    for line, message in result.errors:
        click.echo(f"第{line}行 (line {line}): {message}", err=True)
    if result.errors:
        ctx.exit(11)


@wechat_group.command("unbind")
@click.argument("member_id")
@click.option("--by", default=None, help="who unbinds (default: the login)")
@click.pass_context
def unbind_cmd(ctx: click.Context, member_id: str, by: str | None) -> None:
    """Forget a member's openid (no more WeChat messages to them)."""
    from hq.channels.wechat import unbind_openid

    gone = _with_db(ctx, lambda db: unbind_openid(db, member_id, by or _operator(), utcnow()))
    click.echo("已解除绑定 (unbound)" if gone else "该会员未绑定微信 (no openid was bound)")


@click.command("sms-reply")
@click.argument("phone")
@click.argument("text")
@click.pass_context
def sms_reply_cmd(ctx: click.Context, phone: str, text: str) -> None:
    """Apply an SMS reply the gateway received: "TD", "T" or "退订" turns SMS marketing off
    for the member with that phone."""
    from hq.portal.unsubscribe import apply_sms_reply

    done = _with_db(ctx, lambda db: apply_sms_reply(db, phone, text, utcnow()))
    click.echo("已退订短信 (SMS turned off)" if done else "无需处理 (nothing to do)")


def register(main: click.Group) -> None:
    main.add_command(wechat_group)
    main.add_command(sms_reply_cmd)
