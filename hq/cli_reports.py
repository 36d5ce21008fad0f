"""``huiyuan-hq reports-rebuild [--from DAY]`` and ``huiyuan-hq kpis``: the KPIs' summary
tables rebuilt from the sales (after an upgrade, or to repair), and the figures printed
(docs/kpis.md).

Registered on the main group by ``hq.cli`` (``register(main)``).
"""

from __future__ import annotations

import datetime as dt
import json
import time

import click

from core.days import parse_day
from core.errors import HuiyuanError
from hq.models import bind, open_database


def _db(ctx: click.Context):  # noqa: ANN202 - a peewee database
    from hq.cli import _config

    return bind(open_database(_config(ctx).database_url), create=False)


@click.command("reports-rebuild")
@click.option(
    "--from", "since", default=None, help="rebuild from this business day's year on (YYYY-MM-DD)"
)
@click.pass_context
def reports_rebuild(ctx: click.Context, since: str | None) -> None:
    """Rebuild the KPIs' summary tables from the sales, returns and members, and roll up
    every month, quarter and year (what the reports-rollup job keeps current)."""
    from hq.cli import _fail
    from hq.reports.rollup import rollup_all
    from hq.reports.summary import rebuild

    try:
        day = parse_day(since, "from") if since else None
        db = _db(ctx)
        started = time.monotonic()
        counts = rebuild(db, day)
        counts["rolled_up_periods"] = rollup_all(db)
    except HuiyuanError as exc:
        _fail(exc)
        return
    counts["seconds"] = round(time.monotonic() - started, 1)
    click.echo(json.dumps(counts))


@click.command("kpis")
@click.option("--scope", default="chain", type=click.Choice(["chain", "area", "store", "staff"]))
@click.option("--key", default="", help="the area, store or staff code")
@click.option(
    "--kind", default="month", type=click.Choice(["day", "week", "month", "quarter", "year"])
)
@click.option("--period", default=None, help="e.g. 2026-11, 2026-W48, 2026-Q4, 2026 (default: now)")
@click.pass_context
def kpis_command(ctx: click.Context, scope: str, key: str, kind: str, period: str | None) -> None:
    """Print a scope's figures for a period, against the previous period and last year."""
    from hq.cli import _fail
    from hq.reports import kpis
    from hq.reports.periods import Scope, parse_period, period_containing

    try:
        p = parse_period(kind, period) if period else period_containing(kind, dt.date.today())
        out = kpis.compare(_db(ctx), Scope(scope, key), p)
    except HuiyuanError as exc:
        _fail(exc)
        return
    click.echo(json.dumps(kpis.as_json(out), ensure_ascii=False, indent=1))


def register(main: click.Group) -> None:
    main.add_command(reports_rebuild)
    main.add_command(kpis_command)
