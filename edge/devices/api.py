"""Device states and technician checks for the till screen and remote support.

The manager lives at ``current_app.extensions["huiyuan.devices"]``. Every
error is a JSON 4xx/503 with {"error", "message"}; nothing here answers 500.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from core.errors import HuiyuanError

from . import discovery

log = logging.getLogger(__name__)

devices_bp = Blueprint("devices", __name__, url_prefix="/api/v1/devices")

EXTENSION_KEY = "huiyuan.devices"
MAX_READER_WAIT_S = 30.0


def _error(status: int, slug: str, message: str) -> tuple[Response, int]:
    return jsonify({"error": slug, "message": message}), status


def _manager() -> Any:
    manager = current_app.extensions.get(EXTENSION_KEY)
    if manager is None:
        raise _NoDevices()
    return manager


class _NoDevices(Exception):
    pass


@devices_bp.errorhandler(_NoDevices)
def _no_devices(_exc: _NoDevices) -> tuple[Response, int]:
    return _error(503, "device", "devices are not configured on this till (设备未配置)")


@devices_bp.errorhandler(HuiyuanError)
def _huiyuan_error(exc: HuiyuanError) -> tuple[Response, int]:
    status = exc.http_status if 400 <= exc.http_status < 500 or exc.http_status == 503 else 503
    return jsonify(exc.to_dict()), status


@devices_bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> tuple[Response, int]:
    log.exception("devices API error")
    return _error(503, "device", f"device layer error: {type(exc).__name__}: {exc}")


@devices_bp.get("")
def states() -> Response:
    return jsonify(_manager().states())


@devices_bp.post("/printer/test")
def printer_test() -> tuple[Response, int]:
    job_id = _manager().print_test_page()
    return jsonify({"job_id": job_id, "message": "测试页已加入打印队列 / test page queued"}), 202


@devices_bp.post("/display/test")
def display_test() -> tuple[Response, int]:
    _manager().display_test()
    return jsonify({"message": "测试图案已发送 / test pattern sent"}), 202


@devices_bp.post("/virtual/<role>/<action>")
def rehearse(role: str, action: str) -> tuple[Response, int]:
    """Rehearsals and remote support: inject a fault or a swipe into a virtual device."""
    data = request.get_json(silent=True)
    card_no = data.get("card_no", "") if isinstance(data, dict) else ""
    if not isinstance(card_no, str):
        return _error(400, "invalid", "卡号须为文字 (card_no must be a string)")
    manager = _manager()
    manager.rehearse(role, action, card_no)
    return jsonify({"role": role, "action": action, "state": manager.states()[role]}), 202


@devices_bp.get("/scan")
def scan() -> Response:
    """What is plugged into the box, matched to firmware profiles (as the technician CLI)."""
    manager = _manager()
    found, problems = discovery.scan_and_match(manager.cfg.profile_library())
    return jsonify({"devices": [f.to_dict() for f in found], "problems": problems})


@devices_bp.get("/reader/next")
def reader_next() -> Any:
    raw = request.args.get("timeout", "10")
    try:
        timeout = float(raw)
    except ValueError:
        return _error(
            400, "invalid", f"等待时间须为秒数 (timeout must be a number of seconds, got {raw!r})"
        )
    if not 0 <= timeout <= MAX_READER_WAIT_S:
        return _error(
            400,
            "invalid",
            f"等待时间须在 0 到 {MAX_READER_WAIT_S:g} 秒之间"
            f" (timeout must be between 0 and {MAX_READER_WAIT_S:g} s)",
        )
    card_no = _manager().next_card(timeout)
    if card_no is None:
        return Response(status=204)
    return jsonify({"card_no": card_no})
