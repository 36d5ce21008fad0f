"""``huiyuan-hq enrol-store``: a one-time enrolment code for a store box (hq/enrol.py)."""

from __future__ import annotations

import datetime as dt
import getpass
import re
import sys

import click

from core.errors import HuiyuanError
from hq.enrol import DEFAULT_VALID, create_code
from hq.models import bind, open_database, utcnow

_DURATION = re.compile(r"^(\d{1,4})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> dt.timedelta:
    """``30m``, ``24h`` or ``7d``."""
    found = _DURATION.match(text.strip())
    if not found:
        raise click.BadParameter(f"{text!r}: write it as 30m, 24h or 7d")
    return dt.timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


@click.command("enrol-store")
@click.argument("store")
@click.option(
    "--valid",
    default=f"{int(DEFAULT_VALID.total_seconds() // 3600)}h",
    show_default=True,
    help="how long the code works (30m, 24h, 7d; at most 30d)",
)
@click.option("--by", "created_by", default=None, help="who asks for it (recorded; default: you)")
@click.pass_context
def enrol_store(ctx: click.Context, store: str, valid: str, created_by: str | None) -> None:
    """Print a one-time code that enrols STORE's box: on the box, run
    `huiyuan-edge enrol --hq URL --store STORE --code CODE`. A new code voids the store's
    earlier unspent ones."""
    config = ctx.obj["config"]
    db = bind(open_database(config.database_url), create=False)
    now = utcnow()
    try:
        code, row = create_code(
            db, store, now, parse_duration(valid), created_by or getpass.getuser()
        )
    except HuiyuanError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(exc.code)
    finally:
        db.close()
    click.echo(code)
    click.echo(
        f"门店 {store} 的一次性登记码, 有效期至 {row.expires_at:%Y-%m-%d %H:%M} UTC"
        f" (one-time enrolment code for store {store}, valid until "
        f"{row.expires_at:%Y-%m-%d %H:%M} UTC). On the box:\n"
        f"  huiyuan-edge enrol --hq <HQ API URL> --store {store} --code {code}",
        err=True,
    )
