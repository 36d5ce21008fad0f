"""``huiyuan-edge devices ...``: the technician's commands.

scan      what is plugged in, matched to firmware profiles (unknown devices with vid:pid)
assign    choose the model and port of a role (printer | reader | display)
test      print a test page, show a test pattern, or wait for a card swipe
write-config  write the chosen devices as a [devices] TOML table
profiles  list and validate every firmware profile
"""

from __future__ import annotations

import json
import logging
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import click

from core.errors import ConfigError, DeviceError, HuiyuanError

from .config import DevicesConfig, to_toml
from .discovery import scan_and_match, scan_serial, scan_usb
from .profiles import ProfileLibrary

log = logging.getLogger(__name__)

DRAFT_NAME = "devices_draft.json"
ROLES = ("printer", "reader", "display")


class Context:
    def __init__(self, data_dir: Path, profiles_dir: str) -> None:
        self.data_dir = data_dir
        self.profiles_dir = profiles_dir

    @property
    def draft_path(self) -> Path:
        return self.data_dir / DRAFT_NAME

    def library(self) -> ProfileLibrary:
        return ProfileLibrary(Path(self.profiles_dir) if self.profiles_dir else None)

    def load_draft(self) -> dict[str, Any]:
        if not self.draft_path.is_file():
            draft: dict[str, Any] = {}
        else:
            draft = json.loads(self.draft_path.read_text(encoding="utf-8"))
        if self.profiles_dir:
            draft["profiles_dir"] = self.profiles_dir
        return draft

    def save_draft(self, draft: dict[str, Any]) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.draft_path.write_text(
            json.dumps(draft, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )


def _fail(exc: HuiyuanError) -> None:
    click.echo(f"错误 / error: {exc.message}", err=True)
    sys.exit(exc.code)


@click.group("devices")
@click.option(
    "--data-dir",
    envvar="HUIYUAN_DATA_DIR",
    default="data",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="the edge data directory (the draft device choice and print queue live here)",
)
@click.option("--profiles-dir", default="", help="use firmware profiles from this directory")
@click.pass_context
def devices(ctx: click.Context, data_dir: Path, profiles_dir: str) -> None:
    """门店设备 / store devices: scan, assign, test, write the configuration."""
    ctx.obj = Context(data_dir, profiles_dir)


@devices.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_obj
def scan(obj: Context, as_json: bool) -> None:
    """扫描 USB 与串口设备 / scan USB and serial ports and match them to profiles."""
    found, problems = scan_and_match(obj.library(), scan_usb, scan_serial)
    for problem in problems:
        click.echo(problem, err=True)
    if as_json:
        click.echo(json.dumps([f.to_dict() for f in found], ensure_ascii=False, indent=2))
        return
    if not found:
        click.echo("未发现设备 / no USB devices or serial ports found")
        return
    unknown = []
    for f in found:
        if f.profiles:
            click.echo(f"[{f.bus}] {f.usb_id} {f.where} {f.description} -> {', '.join(f.profiles)}")
        elif f.bus == "serial":
            click.echo(
                f"[serial] {f.where} {f.description} (adapter {f.usb_id}): "
                "串口设备请用 assign --port 指定 / assign a serial model with --port"
            )
        else:
            unknown.append(f)
    for f in unknown:
        click.echo(
            f"[usb] {f.usb_id} {f.where}: 未知设备 / unknown device - "
            f"add a profile with usb.vendor_id={f.usb_id[:4]} product_id={f.usb_id[5:]}"
        )


@devices.command()
@click.argument("role", type=click.Choice(ROLES))
@click.argument("profile")
@click.option(
    "--driver", default="", help="override: virtual | usb | network | serial | file | usb_hid"
)
@click.option("--port", "serial_port", default="", help="serial device, e.g. /dev/ttyUSB0")
@click.option("--host", default="", help="network printer address")
@click.option("--tcp-port", default=9100, show_default=True, help="network printer port")
@click.option("--device-file", default="", help="printer device file, e.g. /dev/usb/lp0")
@click.option("--baudrate", default=0, help="serial baud rate (0: the profile's)")
@click.option("--usb-id", default="", help="VID:PID when the device differs from the profile")
@click.pass_obj
def assign(
    obj: Context,
    role: str,
    profile: str,
    driver: str,
    serial_port: str,
    host: str,
    tcp_port: int,
    device_file: str,
    baudrate: int,
    usb_id: str,
) -> None:
    """指定设备型号与端口 / assign a profile (and port) to a role."""
    try:
        found = obj.library().load(profile, kind=role)
    except ConfigError as exc:
        _fail(exc)
        return
    if not driver:
        if host:
            driver = "network"
        elif serial_port:
            driver = "serial"
        elif device_file:
            driver = "file"
        elif "virtual" in found.transports:
            driver = "virtual"
        else:
            driver = "usb_hid" if role == "reader" else "usb"
    section: dict[str, Any] = {"driver": driver, "profile": profile}
    if serial_port:
        section["serial_port"] = serial_port
    if baudrate:
        section["baudrate"] = baudrate
    if role == "printer":
        if host:
            section["host"] = host
            section["tcp_port"] = tcp_port
        if device_file:
            section["device_file"] = device_file
    if usb_id:
        vid, _, pid = usb_id.partition(":")
        section["usb_vendor_id"], section["usb_product_id"] = vid.lower(), pid.lower()
    draft = obj.load_draft()
    previous = draft.get(role, {})
    keep = {
        k: v
        for k, v in previous.items()
        if k in ("enabled", "header_lines", "font_path", "idle_lines", "qr_size", "query_status")
    }
    draft[role] = {**keep, **section}
    try:
        DevicesConfig.from_dict(draft)
    except ConfigError as exc:
        _fail(exc)
        return
    obj.save_draft(draft)
    click.echo(f"已指定 / assigned {role}: {found.manufacturer} {found.model} ({driver})")


def _load_config(obj: Context, config_path: Path | None) -> DevicesConfig:
    if config_path is not None:
        with config_path.open("rb") as f:
            table = tomllib.load(f).get("devices", {})
        return DevicesConfig.from_dict(table)
    return DevicesConfig.from_dict(obj.load_draft())


@devices.command()
@click.argument("role", type=click.Choice(ROLES))
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="a TOML file with a [devices] table (default: the draft)",
)
@click.option("--timeout", default=20.0, show_default=True, help="seconds to wait")
@click.pass_obj
def test(obj: Context, role: str, config_path: Path | None, timeout: float) -> None:
    """测试设备 / print a test page, show a test pattern, or wait for a card swipe."""
    from .manager import DeviceManager  # the manager opens devices; only this command needs it

    try:
        cfg = _load_config(obj, config_path)
        manager = DeviceManager.from_config(cfg, obj.data_dir)
    except (HuiyuanError, OSError, tomllib.TOMLDecodeError) as exc:
        _fail(exc if isinstance(exc, HuiyuanError) else ConfigError(str(exc)))
        return
    manager.start()
    try:
        ok = _run_test(manager, role, timeout)
        state = manager.states()[role]
    finally:
        manager.stop()
    if not ok:
        click.echo(
            f"失败 / FAILED: state={state['state']} last_error={state['last_error']}", err=True
        )
        sys.exit(DeviceError.code)
    click.echo("通过 / OK")


def _run_test(manager: Any, role: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    if role == "printer":
        job_id = manager.print_test_page()
        click.echo(f"打印测试页 / printing test page (job {job_id}) ...")
        while time.monotonic() < deadline:
            job = manager.print_job(job_id)
            if job is not None and job.status == "done":
                return True
            time.sleep(0.1)
        click.echo("测试页仍在队列中 / the test page is still queued", err=True)
        return False
    if role == "display":
        manager.display_test()
        click.echo("显示测试图案 / showing the test pattern ...")
        while time.monotonic() < deadline:
            if manager.display_worker.current is not None:
                click.echo("请确认屏幕显示 1234567890... / check the display shows the pattern")
                return True
            time.sleep(0.1)
        return False
    click.echo(f"请刷卡 / swipe a card within {timeout:g} s ...")
    card = manager.next_card(timeout)
    if card is None:
        click.echo("未读到卡 / no card read", err=True)
        return False
    click.echo(f"读到卡号 / card read: {card}")
    return True


@devices.command("write-config")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="overwrite an existing file")
@click.pass_obj
def write_config(obj: Context, path: Path, force: bool) -> None:
    """写入设备配置 / write the assigned devices as a [devices] TOML table."""
    if path.exists() and not force:
        _fail(ConfigError(f"{path} exists; use --force to overwrite"))
        return
    try:
        cfg = DevicesConfig.from_dict(obj.load_draft())
    except ConfigError as exc:
        _fail(exc)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_toml(cfg), encoding="utf-8")
    click.echo(f"已写入 / written: {path}")


@devices.command()
@click.option("--kind", type=click.Choice(("printer", "reader", "display")), default=None)
@click.pass_obj
def profiles(obj: Context, kind: str | None) -> None:
    """列出并校验设备型号 / list and validate every firmware profile."""
    library = obj.library()
    good, problems = library.load_all()
    for p in good:
        if kind and p.kind != kind:
            continue
        usb = p.usb_id or "-"
        if p.usb_id and not p.usb_verified:
            usb += " (unverified)"
        click.echo(
            f"{p.kind:8} {p.name:28} {p.manufacturer} {p.model}  usb={usb}  "
            f"transports={','.join(p.transports)}  firmware={'; '.join(p.tested_firmware)}"
        )
    for problem in problems:
        click.echo(f"无效 / INVALID: {problem}", err=True)
    if problems:
        sys.exit(ConfigError.code)
