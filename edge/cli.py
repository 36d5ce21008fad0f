"""The edge box command line: `huiyuan-edge ...`."""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path

import click

from core.errors import ConfigError, HuiyuanError
from core.logsafe import keep_personal_data_out_of_logs
from edge import backup as edge_backup
from edge.cli_sessions import end_sessions
from edge.config import EdgeConfig, config_problems, load_config
from edge.migrate import migrate_command

CONFIG_HELP = "TOML config file (default: built-in demo store settings)"


def _config_path() -> str | None:
    ctx = click.get_current_context()
    return (ctx.find_root().obj or {}).get("config")


def _load() -> EdgeConfig:
    try:
        root = click.get_current_context().find_root().obj or {}
        return load_config(_config_path(), root.get("overrides"))
    except ConfigError as exc:
        click.echo(exc.message, err=True)
        sys.exit(exc.code)


def _open(create_key: bool = False, online_authorization: bool = False):
    from edge.services.context import open_till

    cfg = _load()
    authorizer = _start_authorizer(cfg) if online_authorization else None
    try:
        return open_till(cfg, authorizer=authorizer, create_key=create_key)
    except HuiyuanError as exc:
        click.echo(exc.message, err=True)
        sys.exit(exc.code)


@click.group()
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(),
    envvar="HUIYUAN_EDGE_CONFIG",
    help=CONFIG_HELP,
)
@click.option("-v", "--verbose", is_flag=True, help="log at DEBUG")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """会员 Huiyuan edge box: till, member cache, devices."""
    ctx.obj = {"config": config_path}
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    keep_personal_data_out_of_logs()  # core/logsafe.py: no query parameters at -v


@main.command("validate-config")
def validate_config() -> None:
    """Print each problem (key path, value, message); exit non-zero if any."""
    import tomllib

    path = _config_path()
    data = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            click.echo(f"{path}: {exc}", err=True)
            sys.exit(ConfigError.code)
    _, problems = config_problems(data)
    for problem in problems:
        click.echo(problem)
    if problems:
        sys.exit(ConfigError.code)
    click.echo("配置有效 (config OK)")


@main.command("config-reference")
def config_reference() -> None:
    """Print every setting with its default and description (a starting edge.toml)."""
    from edge.config import reference_toml

    click.echo(reference_toml())


@main.command()
def init() -> None:
    """Create the data directory, member key and database."""
    till = _open(create_key=True)
    click.echo(f"database: {till.config.db_path}\nmember key: {till.config.key_path}")


@main.command("add-staff")
@click.argument("code")
@click.argument("name")
@click.option("--role", type=click.Choice(["cashier", "manager"]), default="cashier")
@click.option("--pin", prompt=True, hide_input=True, confirmation_prompt=True)
def add_staff(code: str, name: str, role: str, pin: str) -> None:
    """Add a staff member with a PIN."""
    from edge.services.staff import add_staff as add

    till = _open()
    try:
        add(till, code, name, role, pin)
    except HuiyuanError as exc:
        click.echo(exc.message, err=True)
        sys.exit(exc.code)
    click.echo(f"added {role} {code} {name}")


def _import(kind: str, file: str) -> None:
    from edge import importer

    till = _open()
    fn = importer.import_members if kind == "members" else importer.import_products
    try:
        report = fn(till, Path(file))
    except HuiyuanError as exc:
        click.echo(exc.message, err=True)
        sys.exit(exc.code)
    for row, reason in report.errors:
        click.echo(f"第 {row} 行 (row {row}): {reason}", err=True)
    click.echo(json.dumps(report.to_dict() | {"errors": len(report.errors)}, ensure_ascii=False))


@main.command("import-members")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def import_members(file: str) -> None:
    """Import members from CSV or .xlsx; bad rows are reported, good rows load."""
    _import("members", file)


@main.command("import-products")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def import_products(file: str) -> None:
    """Import products from CSV or .xlsx; bad rows are reported, good rows load."""
    _import("products", file)


@main.command("demo-data")
@click.option("--members", default=200, show_default=True)
def demo_data(members: int) -> None:
    """Load demo staff (1001/1234 cashier, 9001/9999 manager), products and members."""
    from edge.demo_data import load_demo

    till = _open(create_key=True)
    click.echo(json.dumps(load_demo(till, members), ensure_ascii=False))


@main.command()
@click.option(
    "--listen",
    "listen",
    multiple=True,
    help="listen on this address instead of http.listen (repeat for several)",
)
@click.option("--port", default=None, type=int, help="override http.port")
def serve(listen: tuple[str, ...], port: int | None) -> None:
    """Run the till API (and the devices, when configured); SIGTERM or Ctrl-C stops it
    after the requests in flight, then stops the checkpointer, devices and authorizer."""
    from core.systemd import service_ready
    from edge.api import create_app
    from edge.health import till_checks
    from edge.server import TillServer, ignore_signals_from_now, stop_on_signals
    from edge.services.context import start_checkpointer

    if listen or port:
        http = {"listen": list(listen)} if listen else {}
        ctx = click.get_current_context().find_root()
        ctx.obj["overrides"] = {"http": http | ({"port": port} if port else {})}
    stopping = threading.Event()
    stop_on_signals(stopping)  # from here on a signal lets the shutdown below run
    till = _open(create_key=True, online_authorization=True)
    authorizer = getattr(till.authorizer, "stop", None)
    checkpointer = start_checkpointer(till)  # before any request thread opens a connection
    manager = watchdog = None
    try:
        manager = _start_devices(till)
        app = create_app(till, manager)
        http = till.config.http
        server = TillServer(app, http.listen, http.port, threads=4, stopping=stopping)
        for host, bound in server.addresses:
            shown = f"[{host}]" if ":" in host else host
            click.echo(f"till API for store {till.store} on http://{shown}:{bound}/api/v1/status")
        shown = ", ".join(f"{h}:{b}" for h, b in server.addresses)
        watchdog = service_ready(till_checks(server, till.db), f"serving {shown}")
        server.serve()
    finally:
        if watchdog is not None:
            watchdog.stop()
        if manager is not None:
            manager.stop()
        if authorizer is not None:
            authorizer()
        checkpointer.stop()
        ignore_signals_from_now()
    click.echo("till API stopped")


def _start_authorizer(cfg: EdgeConfig):  # noqa: ANN202
    """With a [sync] section, spends are authorized online by HQ (else the offline policy)."""
    if "sync" not in cfg.extra:
        return None
    from edge.services.context import system_clock
    from edge.sync.authorizer import MqttAuthorizer
    from edge.sync.config import SyncConfig

    return MqttAuthorizer(
        cfg.store.code,
        SyncConfig.from_dict(cfg.extra["sync"]),
        system_clock(cfg.store.utc_offset_minutes),
    ).start(wait=3.0)


@main.command("serve-sync")
def serve_sync() -> None:
    """Run the sync agent: outbox to HQ, HQ's changes to this store ([sync] section)."""
    from edge.sync.agent import SyncAgent
    from edge.sync.config import SyncConfig

    till = _open(create_key=True)
    try:
        cfg = SyncConfig.from_dict(till.config.extra.get("sync", {}))
    except ConfigError as exc:
        click.echo(exc.message, err=True)
        sys.exit(exc.code)
    click.echo(f"sync agent for store {till.store} via {cfg.broker_url}")
    agent = SyncAgent(till, cfg)
    listener = _start_sync_metrics(agent, till.config)
    try:
        agent.run_forever()
    finally:
        if listener is not None:
            listener.stop()


def _start_sync_metrics(agent, config: EdgeConfig):  # noqa: ANN001, ANN202
    """The sync agent's /metrics when [metrics] sync_port is set (edge/metrics.py)."""
    from edge.metrics import MetricsConfig, start_sync_listener

    try:
        listener = start_sync_listener(agent, MetricsConfig.from_dict(config.extra.get("metrics")))
    except ConfigError as exc:
        click.echo(exc.message, err=True)
        sys.exit(exc.code)
    if listener is not None:
        click.echo(f"sync agent metrics on http://{listener.host}:{listener.port}/metrics")
    return listener


@main.command("sync-reload")
def sync_reload() -> None:
    """Forget the down-sync cursor: the sync agent's next hello loads HQ's members
    from a snapshot (after HQ was restored from a backup; see docs/operations.md).
    Restart the sync agent afterwards."""
    from edge.sync.apply import DOWN_CURSOR, down_cursor, put_setting

    till = _open()
    with till.db.atomic():
        was = down_cursor()
        put_setting(DOWN_CURSOR, 0)
    click.echo(f"down cursor {was} -> 0: restart the sync agent to load a snapshot from HQ")


def _start_devices(till):  # noqa: ANN001, ANN202
    try:
        from edge.devices.config import DevicesConfig
        from edge.devices.manager import DeviceManager
    except ImportError as exc:
        logging.getLogger(__name__).warning("devices unavailable: %s", exc)
        return None
    cfg = DevicesConfig.from_dict(till.config.extra.get("devices", {}))
    manager = DeviceManager.from_config(cfg, Path(till.config.data_dir))
    manager.start()
    return manager


def _mount_optional() -> None:
    try:
        from edge.devices.cli import devices
    except ImportError:
        return
    main.add_command(devices)


main.add_command(migrate_command)
_mount_optional()
main.add_command(edge_backup.backup)
main.add_command(end_sessions)

from edge.cli_keys import rotate_member_key  # noqa: E402 - after main, which it joins

main.add_command(rotate_member_key)
main.add_command(__import__("edge.enrol", fromlist=["enrol"]).enrol)  # edge/enrol.py

if __name__ == "__main__":
    main()
