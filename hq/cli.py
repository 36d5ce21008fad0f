"""``huiyuan-hq``: the HQ command line. Exit codes are the error codes of core.errors."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from core.errors import HuiyuanError
from core.logsafe import keep_personal_data_out_of_logs
from core.protocol import Change, down_topic, encode_json
from hq import backup as hq_backup
from hq import services
from hq.cli_enrol import enrol_store
from hq.cli_pki import PKI_COMMANDS
from hq.config import HqConfig
from hq.models import Store, bind, open_database, utcnow

log = logging.getLogger("hq.cli")


def _config(ctx: click.Context) -> HqConfig:
    return ctx.obj["config"]


def _fail(exc: HuiyuanError) -> None:
    click.echo(f"error: {exc.message}", err=True)
    sys.exit(exc.code)


def push_changes(config: HqConfig, changes: list[Change], timeout: float = 3.0) -> bool:
    """Best effort: push changes written outside a worker to the stores now. Stores
    also get them from the change log on their next page request."""
    if not changes:
        return True
    from hq.lookup import chain_lookup
    from hq.worker import publish_changes

    lookup = chain_lookup(config)
    return _with_broker(
        config, lambda client: publish_changes(client, changes, lookup), "changes", timeout
    )


def publish_down(
    config: HqConfig, messages: list[tuple[str, dict[str, Any]]], timeout: float = 3.0
) -> bool:
    """Publish messages to stores' down topics now (QoS 1); False if the broker is away."""

    def send(client: Any) -> None:
        for topic, obj in messages:
            client.publish(topic, encode_json(obj), qos=1).wait_for_publish(timeout)

    return _with_broker(config, send, "requests", timeout)


def _with_broker(config: HqConfig, send: Any, what: str, timeout: float) -> bool:
    from hq.mqtt import make_client

    client = make_client(config.mqtt, "cli")
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    try:
        client.connect(config.mqtt.host, config.mqtt.port, keepalive=10)
    except OSError as exc:
        log.warning("%s not sent now (broker %s: %s)", what, config.mqtt.url, exc)
        return False
    client.loop_start()
    try:
        if not connected.wait(timeout):
            log.warning("%s not sent now (no CONNACK)", what)
            return False
        send(client)
        return True
    finally:
        client.disconnect()
        client.loop_stop()


@click.group()
@click.option(
    "--database-url",
    envvar="HY_HQ_DATABASE_URL",
    default=None,
    help="sqlite:///path or postgresql://...",
)
@click.option(
    "--mqtt-url", envvar="HY_MQTT_URL", default=None, help="mqtt://host:port or mqtts://host:port"
)
@click.option("--mqtt-ca", envvar="HY_MQTT_CA", default=None, help="CA certificate (PEM)")
@click.option("--mqtt-cert", envvar="HY_MQTT_CERT", default=None, help="client certificate (PEM)")
@click.option("--mqtt-key", envvar="HY_MQTT_KEY", default=None, help="client key (PEM)")
@click.option("-v", "--verbose", is_flag=True, help="log at DEBUG")
@click.pass_context
def main(ctx: click.Context, database_url, mqtt_url, mqtt_ca, mqtt_cert, mqtt_key, verbose) -> None:
    """Huiyuan HQ: chain database, ingest workers, API."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    keep_personal_data_out_of_logs()  # core/logsafe.py: no query parameters at -v
    try:
        config = HqConfig.from_env(
            database_url=database_url,
            mqtt_url=mqtt_url,
            mqtt_ca=mqtt_ca,
            mqtt_cert=mqtt_cert,
            mqtt_key=mqtt_key,
        )
    except HuiyuanError as exc:
        _fail(exc)
    ctx.obj = {"config": config}


@main.command("init-db")
@click.pass_context
def init_db(ctx: click.Context) -> None:
    """Create the tables (safe to run again)."""
    config = _config(ctx)
    if config.database_url.startswith("sqlite:///"):
        Path(config.database_url.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    db = open_database(config.database_url)
    bind(db, create=True)
    db.close()
    click.echo(f"database ready: {config.database_url.split('@')[-1]}")


@main.command("serve-ingest")
@click.option("--client-id", default="", help="stable MQTT client id (one per worker)")
@click.option(
    "--session-expiry",
    type=click.IntRange(0, 86400 * 7),
    default=0,
    help="seconds the broker keeps this worker's session after it goes (0: none; see docs)",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    envvar="HY_HQ_INGEST_METRICS_PORT",
    help="serve this worker's Prometheus /metrics on this port (one per worker; 0: any free)",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="address of /metrics; other than loopback it needs the metrics token",
)
@click.pass_context
def serve_ingest(
    ctx: click.Context,
    client_id: str,
    session_expiry: int,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run an ingest worker (start as many as needed: they share the subscription)."""
    from dataclasses import replace

    from hq.worker import IngestWorker

    config = _config(ctx)
    mqtt = replace(
        config.mqtt, client_id=client_id or config.mqtt.client_id, session_expiry=session_expiry
    )
    config = replace(config, mqtt=mqtt)
    _require_current_schema(config)
    try:
        IngestWorker(config, metrics_port=metrics_port, metrics_host=metrics_host).run_forever()
    except HuiyuanError as exc:
        _fail(exc)


def _require_current_schema(config: HqConfig) -> None:
    """A service refuses an older schema (it never migrates): init-db does that."""
    from hq.models import check_schema

    db = open_database(config.database_url)
    try:
        check_schema(db)
    except HuiyuanError as exc:
        _fail(exc)
    finally:
        db.close()


@main.command("serve-api")
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
@click.pass_context
def serve_api(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the HQ JSON API (waitress, a production WSGI server)."""
    from waitress.server import create_server

    from core.systemd import service_ready
    from hq.api import create_app
    from hq.health import database_answers

    config = _config(ctx)
    _require_current_schema(config)
    app = create_app(config)
    host, port = host or config.api_host, port or config.api_port
    server = create_server(app, host=host, port=port, threads=4)
    click.echo(f"HQ API on http://{host}:{port}/api/stores")
    watchdog = service_ready([database_answers(app.extensions["hq_db"])], f"API on {host}:{port}")
    try:
        server.run()
    except KeyboardInterrupt:
        click.echo("HQ API stopped")
    finally:
        watchdog.stop()


@main.command("publish-rules")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--no-push", is_flag=True, help="only write the change log")
@click.pass_context
def publish_rules_cmd(ctx: click.Context, file: str, no_push: bool) -> None:
    """Publish a rules document (JSON, Rules.to_dict shape) to every store."""
    from hq.rules import publish_rules

    config = _config(ctx)
    try:
        document = json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        click.echo(f"error: cannot read {file}: {exc}", err=True)
        sys.exit(11)
    if not isinstance(document, dict):
        click.echo("error: the rules document must be a JSON object", err=True)
        sys.exit(11)
    db = bind(open_database(config.database_url), create=False)
    try:
        changes = publish_rules(db, document)
    except HuiyuanError as exc:
        _fail(exc)
    finally:
        db.close()
    click.echo(f"rules version {document.get('version', 1)} published ({len(changes)} changes)")
    if not no_push:
        push_changes(config, changes)


@main.command("reconcile")
@click.option(
    "--store",
    "only",
    multiple=True,
    help="only this store (repeatable; HQ's own ledger is always checked)",
)
@click.option(
    "--ask",
    is_flag=True,
    help="first ask the stores (those named, else those online) for a fresh digest; "
    "needs the broker and an ingest worker",
)
@click.option(
    "--wait", type=click.FloatRange(0, 600), default=30.0, help="seconds to wait for the answers"
)
@click.pass_context
def reconcile_cmd(ctx: click.Context, only: tuple[str, ...], ask: bool, wait: float) -> None:
    """Compare every member's figures: HQ's balances with HQ's ledger, and each store's
    latest balance digest with HQ's figures. Prints each difference; exits 1 if any."""
    from hq import reconcile

    config = _config(ctx)
    db = bind(open_database(config.database_url), create=False)
    try:
        if ask:
            online = Store.select(Store.code).where(Store.online == True)  # noqa: E712
            requests = reconcile.digest_requests(list(only) or [s.code for s in online])
            messages = [(down_topic(c, "digestreq"), r.to_dict()) for c, r in requests.items()]
            if publish_down(config, messages):
                deadline = time.monotonic() + wait
                while set(requests) - reconcile.answered(requests) and time.monotonic() < deadline:
                    time.sleep(0.2)
            for code in sorted(set(requests) - reconcile.answered(requests)):
                click.echo(
                    f"store {code}: no fresh digest within {wait:.0f}s; its last one is used"
                )
        report = reconcile.reconcile_report(db, utcnow(), list(only) or None)
    finally:
        db.close()
    for line in report.lines:
        click.echo(line)
    click.echo(f"{report.differences} differences")
    sys.exit(1 if report.differences else 0)


@main.command("merge")
@click.argument("from_member")
@click.argument("to_member")
@click.option("--staff", required=True, help="who merges (recorded)")
@click.option("--no-push", is_flag=True, help="only write the change log")
@click.pass_context
def merge_cmd(
    ctx: click.Context, from_member: str, to_member: str, staff: str, no_push: bool
) -> None:
    """Merge FROM_MEMBER into TO_MEMBER (the survivor)."""
    config = _config(ctx)
    db = bind(open_database(config.database_url), create=False)
    try:
        merge, changes = services.staff_merge(db, from_member, to_member, staff, utcnow())
    except HuiyuanError as exc:
        _fail(exc)
    finally:
        db.close()
    click.echo(f"merged {merge.from_member} into {merge.to_member} (merge #{merge.id})")
    if not no_push:
        push_changes(config, changes)


@main.command("merges")
@click.option("--limit", type=int, default=50)
@click.pass_context
def merges_cmd(ctx: click.Context, limit: int) -> None:
    """List recent merges: who, where, when."""
    bind(open_database(_config(ctx).database_url), create=False)
    _print_rows(
        services.list_merges(limit),
        ("at", "from_member_id", "to_member_id", "store", "staff", "reason"),
    )


@main.command("audit")
@click.option("--action", default=None, help="e.g. points.adjust, tier.set")
@click.option("--target", default=None, help="a member id, card number or coupon code")
@click.option("--by", "actor", default=None, help="who did it")
@click.option("--limit", type=int, default=50)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def audit_cmd(
    ctx: click.Context,
    action: str | None,
    target: str | None,
    actor: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List the audit log (newest first): who did what to which member, and why."""
    from hq.audit import entries

    db = open_database(_config(ctx).database_url)
    with bind(db, create=False):
        rows = entries(db, action=action, target=target, actor=actor, limit=limit)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        _print_rows(rows, ("at", "actor", "action", "target", "store", "reason"))


@main.command("dead-letters")
@click.option("--store", default=None)
@click.option("--limit", type=int, default=50)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dead_letters_cmd(ctx: click.Context, store: str | None, limit: int, as_json: bool) -> None:
    """List dead letters (newest first) with their reasons."""
    with bind(open_database(_config(ctx).database_url), create=False):
        rows = services.list_dead_letters(store, limit)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        _print_rows(rows, ("received_at", "store", "seq", "code", "reason"))


@main.group("offline-policy")
def offline_policy() -> None:
    """Offline policies: what a till may spend of a balance kind without HQ's answer."""


@offline_policy.command("set")
@click.option("--kind", required=True, help="stored_value, points or coupons")
@click.option("--mode", required=True, help="online_only or floor_limit")
@click.option("--daily-limit", type=int, default=None, help="floor_limit: per member per day")
@click.option("--store", default=None, help="only this store (an override of the chain's)")
@click.option("--staff", default=None, help="who publishes it (recorded)")
@click.option("--no-push", is_flag=True, help="only write the change log")
@click.pass_context
def offline_policy_set(
    ctx: click.Context,
    kind: str,
    mode: str,
    daily_limit: int | None,
    store: str | None,
    staff: str | None,
    no_push: bool,
) -> None:
    """Publish the chain's policy for a balance kind, or one store's override."""
    from hq.offline import set_policy

    raw: dict[str, Any] = {"kind": kind, "mode": mode}
    if daily_limit is not None:
        raw["daily_limit"] = daily_limit
    _offline_policy_publish(ctx, no_push, lambda db: set_policy(db, raw, store, staff))


@offline_policy.command("remove")
@click.option("--kind", required=True, help="stored_value, points or coupons")
@click.option("--store", required=True, help="the store whose override goes")
@click.option("--staff", default=None, help="who removes it (recorded)")
@click.option("--no-push", is_flag=True, help="only write the change log")
@click.pass_context
def offline_policy_remove(
    ctx: click.Context, kind: str, store: str, staff: str | None, no_push: bool
) -> None:
    """Remove a store's override: the store follows the chain's policy again."""
    from hq.offline import remove_store_policy

    _offline_policy_publish(ctx, no_push, lambda db: remove_store_policy(db, kind, store, staff))


def _offline_policy_publish(ctx: click.Context, no_push: bool, publish: Any) -> None:
    config = _config(ctx)
    db = bind(open_database(config.database_url), create=False)
    try:
        state, changes = publish(db)
    except HuiyuanError as exc:
        _fail(exc)
    finally:
        db.close()
    scope = f"store {state['store']}" if state["store"] else "the chain"
    click.echo(f"{state['kind']} for {scope}: {_policy_text(state)} (version {state['version']})")
    if not no_push:
        push_changes(config, changes)


def _policy_text(state: dict[str, Any] | None) -> str:
    if state is None:
        return "the store's own [offline] config"
    if state["mode"] == "floor_limit":
        return f"floor_limit {state['daily_limit']} per member per day"
    return state["mode"]


@offline_policy.command("show")
@click.option("--store", default=None, help="what this store enforces, per kind")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def offline_policy_show(ctx: click.Context, store: str | None, as_json: bool) -> None:
    """List the published policies, or with --store the one in force there per kind."""
    from hq.offline import list_policies, policies_in_force

    with bind(open_database(_config(ctx).database_url), create=False):
        try:
            rows: Any = policies_in_force(store) if store else list_policies()
        except HuiyuanError as exc:
            _fail(exc)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    elif store:
        for kind, state in rows.items():
            source = "(none)" if state is None else "chain" if not state["store"] else "store"
            click.echo(f"{kind}  {_policy_text(state)}  {source}  {_published(state)}".rstrip())
    else:
        for state in rows:
            scope = state["store"] or "chain"
            click.echo(f"{scope}  {state['kind']}  {_policy_text(state)}  {_published(state)}")
        if not rows:
            click.echo("(none: every store follows its own [offline] config)")


def _published(state: dict[str, Any] | None) -> str:
    if state is None:
        return ""
    by = f" by {state['published_by']}" if state["published_by"] else ""
    return f"version {state['version']} at {state['published_at']}{by}"


def _print_rows(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    if not rows:
        click.echo("(none)")
        return
    for row in rows:
        click.echo("  ".join(str(row.get(c, "")) for c in columns))


from hq.cli_keys import init_lookup_key  # noqa: E402 - after main, which it joins

main.add_command(init_lookup_key)

from hq.scheduler import (  # noqa: E402  (HQ's periodic jobs)
    job_runs_command,
    run_job_command,
    serve_scheduler_command,
)

main.add_command(serve_scheduler_command)
main.add_command(job_runs_command)
main.add_command(run_job_command)

main.add_command(hq_backup.backup)

from hq import cli_privacy  # noqa: E402 (it imports this module's helpers when run)

cli_privacy.register(main)


for _command in PKI_COMMANDS:  # init-ca, broker-config, revoke-store, ... (hq/cli_pki.py)
    main.add_command(_command)
main.add_command(enrol_store)  # hq/cli_enrol.py

# ---- the programme's commands (issue 11): each part's module hq/cli_<part>.py has a
# ``register(main)``; one line per part
# -- tiers (tiers, growth value, member day)
from hq import cli_tiers  # noqa: E402

cli_tiers.register(main)

# -- cards (card types as products, card replacement)
from hq import cli_cards  # noqa: E402

cli_cards.register(main)

# -- points (points rules, gifts, referral)
from hq import cli_points  # noqa: E402 (it imports this module's helpers when run)

cli_points.register(main)

# -- coupons (coupons)
from hq import cli_coupons  # noqa: E402

cli_coupons.register(main)

# -- upkeep (stored value, profile, password)
from hq import cli_upkeep  # noqa: E402 (it imports this module's helpers when run)

cli_upkeep.register(main)

# -- staff (maintainers, categories and cost)
from hq import cli_staff  # noqa: E402 (it imports this module's helpers when run)

cli_staff.register(main)
# ---- end of the programme's commands

# -- campaigns (engine; issue 14: hq campaign create|launch|send|status|cancel)
from hq import cli_campaigns  # noqa: E402

cli_campaigns.register(main)

# -- HQ staff accounts and integration tokens (hq/access/)
from hq import cli_users  # noqa: E402 (it imports this module's helpers when run)

cli_users.register(main)

# -- reports (KPIs' summary tables: reports-rebuild, kpis)
from hq import cli_reports  # noqa: E402 (it imports this module's helpers when run)

cli_reports.register(main)

if __name__ == "__main__":
    main()
