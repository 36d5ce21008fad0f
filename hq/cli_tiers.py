"""``huiyuan-hq set-tier | evaluate-tiers | rules-status | rebuild-growth-spend``: tiers, growth value and stores'
rules (docs/programme/tiers.md, docs/programme/rules.md).

Registered on the main group by ``hq.cli`` (``register(main)``); ``hq.cli`` is imported
inside the commands: it imports this module while it loads.
"""

from __future__ import annotations

import json

import click

from core.days import parse_day
from core.errors import HuiyuanError
from hq.models import bind, open_database, utcnow
from hq.programme import tiers


@click.command("set-tier")
@click.argument("member")
@click.argument("tier")
@click.option("--by", required=True, help="the HQ user who sets it (audit)")
@click.option("--reason", required=True, help="why (audit; required)")
@click.option(
    "--until",
    default=None,
    help="YYYY-MM-DD: the evaluation does not downgrade below TIER up to this day",
)
@click.pass_context
def set_tier_cmd(
    ctx: click.Context, member: str, tier: str, by: str, reason: str, until: str | None
) -> None:
    """Give MEMBER (id, card number or phone) the tier TIER by hand (audited tier.set)."""
    from hq.cli import _config, _fail
    from hq.services import find_member

    config = _config(ctx)
    db = bind(open_database(config.database_url), create=False)
    try:
        with db.connection_context():
            day = config.business_day(utcnow())
            found = find_member(member)
            change = tiers.set_tier(
                db, found.id, tier, by, reason, day, until=parse_day(until, "--until")
            )
    except HuiyuanError as exc:
        _fail(exc)
        return
    if change is None:
        click.echo(f"member {found.id} already holds {tier} (nothing changed)")
    else:
        click.echo(
            f"member {found.id}: {change.from_tier or '-'} -> {tier}"
            + (f" (held until {until})" if until else "")
        )


@click.command("evaluate-tiers")
@click.option("--day", default=None, help="YYYY-MM-DD (default: the chain's business day)")
@click.pass_context
def evaluate_tiers_cmd(ctx: click.Context, day: str | None) -> None:
    """Run the tier evaluation now (what the tier-evaluation job does) and print its counts."""
    from hq.cli import _config, _fail

    config = _config(ctx)
    db = bind(open_database(config.database_url), create=False)
    try:
        with db.connection_context():
            when = parse_day(day, "--day") or config.business_day(utcnow())
            counts = tiers.run_nightly(db, when)
    except HuiyuanError as exc:
        _fail(exc)
        return
    click.echo(json.dumps(counts, sort_keys=True))


@click.command("rules-status")
@click.option("--json", "as_json", is_flag=True)
@click.option("--behind", "behind_only", is_flag=True, help="only stores behind the newest")
@click.pass_context
def rules_status_cmd(ctx: click.Context, as_json: bool, behind_only: bool) -> None:
    """Each store's rules version in force, any version it refused and why, and whether it
    is behind the newest published version."""
    from hq.cli import _config

    db = bind(open_database(_config(ctx).database_url), create=False)
    with db.connection_context():
        status = tiers.rules_status(db)
    if behind_only:
        status["stores"] = [s for s in status["stores"] if s["behind"]]
    if as_json:
        click.echo(json.dumps(status, ensure_ascii=False, sort_keys=True))
        return
    click.echo(f"newest published rules version: {status['newest_version']}")
    if not status["stores"]:
        click.echo("(no stores)")
    for s in status["stores"]:
        in_force = "?" if s["version_in_force"] is None else s["version_in_force"]
        line = f"{s['store']}  in force {in_force}  {'BEHIND' if s['behind'] else 'current'}"
        if s["refused_version"] is not None:
            line += f"  refused {s['refused_version']}: {s['refused_reason']}"
        click.echo(line)


@click.command("rebuild-growth-spend")
@click.pass_context
def rebuild_growth_spend_cmd(ctx: click.Context) -> None:
    """Rebuild growth's per-member-day spend summary from the sales and returns."""
    from hq.cli import _config

    db = bind(open_database(_config(ctx).database_url), create=False)
    with db.connection_context():
        n = tiers.rebuild_spend(db)
    click.echo(f"{n} member-days rebuilt")


def register(group: click.Group) -> None:
    for command in (set_tier_cmd, evaluate_tiers_cmd, rules_status_cmd, rebuild_growth_spend_cmd):
        group.add_command(command)
