"""``huiyuan-hq`` commands for cards (docs/programme/cards.md): set a member's card type
by hand, replace a member's card (换卡), block a card (挂失) or lift the block. Each takes
``--by`` and ``--reason`` and writes an audit row; the change goes down to every store
(pushed now when the broker answers, else on the stores' next page)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import click
import peewee as pw

from core.errors import HuiyuanError
from core.protocol import Change
from hq.models import bind, open_database, utcnow
from hq.programme import cards as programme_cards


def _run(ctx: click.Context, action: Callable[[pw.Database], list[Change]], done: str) -> None:
    from hq.cli import _config, _fail, push_changes

    config = _config(ctx)
    db = bind(open_database(config.database_url), create=False)
    try:
        changes = action(db)
    except HuiyuanError as exc:
        _fail(exc)
    finally:
        db.close()
    pushed = push_changes(config, changes)
    click.echo(f"{done} ({len(changes)} changes, {'pushed' if pushed else 'stores page them'})")


def register(main: click.Group) -> None:
    @main.command("set-card-type")
    @click.argument("member_id")
    @click.argument("card_type")
    @click.option("--by", "by", required=True, help="who changes it (HQ user)")
    @click.option("--reason", required=True, help="why (kept in the audit log)")
    @click.option(
        "--expires-on",
        type=click.DateTime(formats=["%Y-%m-%d"]),
        default=None,
        help="the last valid day, for a card product (default: none, it never lapses)",
    )
    @click.pass_context
    def set_card_type_command(
        ctx: click.Context,
        member_id: str,
        card_type: str,
        by: str,
        reason: str,
        expires_on: Any,
    ) -> None:
        """Change a member's card type by hand (audited card_type.set)."""
        last_day = expires_on.date() if isinstance(expires_on, dt.datetime) else None
        _run(
            ctx,
            lambda db: programme_cards.set_card_type(
                db, member_id, card_type, by, reason, utcnow(), last_day
            ),
            f"{member_id}: {card_type}" + (f" until {last_day}" if last_day else ""),
        )

    @main.command("replace-card")
    @click.argument("member_id")
    @click.argument("old_card_no")
    @click.argument("new_card_no")
    @click.option("--by", "by", required=True, help="who replaces it (HQ user)")
    @click.option("--reason", required=True, help="why (kept in the audit log)")
    @click.pass_context
    def replace_card_command(
        ctx: click.Context, member_id: str, old_card_no: str, new_card_no: str, by: str, reason: str
    ) -> None:
        """换卡: block the member's old card and issue the new one (audited card.replace)."""
        _run(
            ctx,
            lambda db: programme_cards.replace_card(
                db, member_id, old_card_no, new_card_no, by, reason, utcnow()
            ),
            f"{member_id}: {old_card_no} blocked, {new_card_no} issued",
        )

    @main.command("block-card")
    @click.argument("card_no")
    @click.option("--by", "by", required=True, help="who blocks it (HQ user)")
    @click.option("--reason", required=True, help="why, e.g. 挂失 (kept in the audit log)")
    @click.option("--unblock", is_flag=True, help="lift the block instead")
    @click.pass_context
    def block_card_command(
        ctx: click.Context, card_no: str, by: str, reason: str, unblock: bool
    ) -> None:
        """挂失: block a card chain-wide, or lift the block (audited card.block/unblock)."""
        _run(
            ctx,
            lambda db: programme_cards.block_card(db, card_no, by, reason, utcnow(), not unblock),
            f"{card_no}: {'active' if unblock else 'blocked'}",
        )
