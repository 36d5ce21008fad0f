"""``huiyuan-hq campaign create|launch|send|status|cancel`` (issue 14, docs/campaigns.md).

``send`` runs the send loop here and now (what the scheduler's ``campaigns`` job does
every minute), through the channels the configuration names. No command wraps its work
in one transaction: each step commits as the send loop's guarantees need."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click
import peewee as pw

from core.errors import HuiyuanError
from hq.models import bind, open_database, utcnow


def _open(ctx: click.Context) -> tuple[Any, pw.Database]:
    from hq.cli import _config

    config = _config(ctx)
    return config, bind(open_database(config.database_url), create=False)


def _echo(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _run(ctx: click.Context, work: Callable[[Any, pw.Database], None]) -> None:
    """``work(config, db)`` with the database open; an error is printed with its code."""
    from hq.cli import _fail

    config, db = _open(ctx)
    try:
        work(config, db)
    except HuiyuanError as exc:
        _fail(exc)
    finally:
        db.close()


def _shown(config: Any, c: Any) -> None:
    from hq.marketing import campaigns

    _echo({**campaigns.as_dict(c, config.zone()), "progress": campaigns.progress(c.id)})


@click.group("campaign")
def campaign() -> None:
    """Campaigns: an audience, a benefit, channels and a schedule (docs/campaigns.md)."""


@campaign.command("create")
@click.option("--name", required=True)
@click.option("--list", "list_kind", help="a list: new_members | birthdays | dormant | weekly_new")
@click.option("--start", help="with --list: a day of its month or week (YYYY-MM-DD)")
@click.option("--segment", type=int, help="or: a saved segment's id (snapshotted at launch)")
@click.option("--run", "run_id", type=int, help="or: a stored list run's id")
@click.option("--coupon", help="benefit: a coupon template id")
@click.option("--points", type=int, help="benefit: points given")
@click.option("--gift", help="benefit: a gift, in words")
@click.option("--channel", "channels", multiple=True, help="sms | wechat | call (repeat)")
@click.option("--text", default="", help="the message; placeholders {name} {coupon} ...")
@click.option("--send-at", required=True, help="chain local time, e.g. 2026-12-01T10:00")
@click.option("--window-days", type=int, default=None)
@click.option("--control-pct", type=int, default=None)
@click.option("--message-cost-fen", type=int, default=None)
@click.option("--by", "actor", required=True, help="who makes it (audited)")
@click.pass_context
def create_cmd(ctx: click.Context, actor: str, **opts: Any) -> None:
    """Make a draft campaign; prints it as JSON."""
    from hq.marketing import campaigns

    audience: dict[str, Any] = {}
    if opts["list_kind"]:
        audience = {"list": opts["list_kind"], "start": opts["start"] or ""}
    elif opts["segment"] is not None:
        audience = {"segment": opts["segment"]}
    elif opts["run_id"] is not None:
        audience = {"run": opts["run_id"]}
    benefit: dict[str, Any] = {}
    for kind in ("coupon", "points", "gift"):
        if opts[kind] is not None:
            benefit[kind] = opts[kind]
    data = {
        "name": opts["name"],
        "audience": audience,
        "benefit": benefit,
        "channels": list(opts["channels"]),
        "text": opts["text"],
        "send_at": opts["send_at"],
        "window_days": opts["window_days"],
        "control_pct": opts["control_pct"],
        "message_cost_fen": opts["message_cost_fen"],
    }
    _run(ctx, lambda config, db: _echo(
        campaigns.as_dict(campaigns.create(db, data, actor, utcnow(), config.zone()), config.zone())
    ))  # fmt: skip


@campaign.command("launch")
@click.argument("campaign_id", type=int)
@click.option("--by", "actor", required=True, help="who launches it (audited)")
@click.pass_context
def launch_cmd(ctx: click.Context, campaign_id: int, actor: str) -> None:
    """Freeze the audience and schedule the messages (a second launch changes nothing)."""
    from hq.marketing import campaigns

    def work(config: Any, db: pw.Database) -> None:
        now = utcnow()
        _shown(config, campaigns.launch(db, campaign_id, actor, now, config.business_day(now)))

    _run(ctx, work)


@campaign.command("send")
@click.option("--limit", type=int, default=1000, show_default=True, help="rows per round")
@click.option("--rounds", type=int, default=100, show_default=True, help="at most this many")
@click.pass_context
def send_cmd(ctx: click.Context, limit: int, rounds: int) -> None:
    """Send what is due now through the configured channels, round after round until
    nothing more is sent; prints each round's counts."""
    from hq.marketing import sending

    def work(config: Any, db: pw.Database) -> None:
        channels = sending.channels_for(config)
        if not channels:
            click.echo("no channel configured (sms_gateway_url ...): nothing sent", err=True)
        for _ in range(max(1, rounds)):
            counts = sending.send_due(db, channels, utcnow(), limit=limit, config=config)
            reports = sending.poll_deliveries(db, channels, utcnow())
            counts.update({f"delivery_{k}": n for k, n in reports.items()})
            click.echo(json.dumps(counts, sort_keys=True))
            if not counts.get("sent") and not counts.get("retry"):
                break

    _run(ctx, work)


@campaign.command("status")
@click.argument("campaign_id", type=int, required=False)
@click.pass_context
def status_cmd(ctx: click.Context, campaign_id: int | None) -> None:
    """One campaign with its progress, or every campaign (one line each)."""
    from hq.marketing import campaigns

    def work(config: Any, db: pw.Database) -> None:
        if campaign_id is not None:
            return _shown(config, campaigns.get(campaign_id))
        for c in campaigns.all_campaigns():
            click.echo(f"{c.id}\t{c.status}\t{c.recipients}\t{c.send_at:%Y-%m-%d %H:%M}Z\t{c.name}")

    _run(ctx, work)


@campaign.command("cancel")
@click.argument("campaign_id", type=int)
@click.option("--by", "actor", required=True, help="who cancels it (audited)")
@click.pass_context
def cancel_cmd(ctx: click.Context, campaign_id: int, actor: str) -> None:
    """Stop a campaign: what is still pending is not sent."""
    from hq.marketing import campaigns

    _run(ctx, lambda config, db: _shown(config, campaigns.cancel(db, campaign_id, actor, utcnow())))


def register(main: click.Group) -> None:
    main.add_command(campaign)
