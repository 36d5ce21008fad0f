"""The till JSON API: a Flask application factory with one blueprint per resource.

Bad requests get a 4xx JSON error naming the field and the problem, never a 500.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, current_app, g, jsonify, make_response, render_template, request
from werkzeug.exceptions import HTTPException

from core.errors import Forbidden, HuiyuanError, NotFound, ValidationError
from core.money import MAX_AMOUNT, format_yuan
from core.receipt import Receipt
from edge import metrics as edge_metrics
from edge.config import client_allowed
from edge.models import Product, Sale
from edge.services import consent as consent_svc
from edge.services import fields
from edge.services import members as member_svc
from edge.services import products as product_svc
from edge.services import receipts as receipts_svc
from edge.services import sales as sales_svc
from edge.services import staff as staff_svc
from edge.services.context import Till
from edge.services.offline import policies_in_force
from edge.services.outbox import backlog
from edge.services.sync_link import link_status

log = logging.getLogger(__name__)


def till() -> Till:
    return current_app.extensions["huiyuan.till"]


def _json() -> Any:
    try:
        return request.get_json(silent=True)
    except RecursionError:
        # silent=True covers malformed JSON, not JSON nested past the parser's depth
        raise ValidationError("请求嵌套过深 (request body is nested too deeply)") from None


def body() -> dict[str, Any]:
    """The request's JSON object, its texts already checked (``_check_request_texts``)."""
    data = _json()
    if not isinstance(data, dict):
        raise ValidationError(
            "请求须为 JSON 对象 (request body must be a JSON object, Content-Type: application/json)"
        )
    return data


def _check_request_texts() -> None:
    """Every text a request carries, on every route (devices' too): the URL's parts, the
    query string and the JSON body, checked at the door by edge.services.fields (a length
    cap per field, no lone surrogate, no NUL, bounded nesting), so a bad one is a 400
    naming the field before any route runs."""
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str):
            fields.check_text(value, name)
    for name, value in request.args.items(multi=True):
        fields.check_text(name, "query", fields.MAX_CODE_LEN)
        fields.check_text(value, name)
    if request.is_json:
        fields.check_body(_json())


def _only_allowed_networks() -> None:
    """The door: a client outside loopback and ``http.allow`` is refused before anything
    else runs (docs/operations.md, "The till's network surface")."""
    address = request.remote_addr
    if not client_allowed(address, current_app.extensions["huiyuan.networks"]):
        log.warning("till API refused a client outside http.allow: %s", address)
        raise Forbidden(
            f"此设备 ({address}) 不在收银服务允许的网络内, 请联系店长或技术人员"
            f" (this address may not reach the till API: see http.allow)",
            field="client_address",
        )


def _note_client_address() -> None:
    """Wrong PINs are counted per address too (edge.services.staff.client_address)."""
    staff_svc.client_address.set(request.remote_addr)


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    return header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else None


# Requests a screen makes by itself, not a person at the till: they need a live session
# but do not keep it from going idle (the cashier screen waits on the card reader
# all the time it is signed in).
BACKGROUND_ENDPOINTS = frozenset({"devices.reader_next", "status.status", "session.who"})


def signed_in() -> staff_svc.SignedIn:
    touch = request.endpoint not in BACKGROUND_ENDPOINTS
    g.staff = staff_svc.session_staff(till(), _bearer_token(), touch=touch)
    return g.staff


def manager_signed_in(action: str) -> staff_svc.SignedIn:
    """A signed-in manager, or a cashier with a manager's code+PIN for this one action
    (``{"manager": {"code", "pin"}}`` in the body)."""
    staff = signed_in()
    data = _json()
    approval = data.get("manager") if isinstance(data, dict) else None
    return staff_svc.require_manager(till(), staff, approval, action)


def devices() -> Any:
    return current_app.extensions.get("huiyuan.devices")


def after_commit_print(
    receipt: dict[str, Any], total: int | None = None, change: int | None = None
) -> None:
    """Devices are told after the commit; a device fault never fails the sale."""
    manager = devices()
    if manager is None:
        return
    model = Receipt.from_dict(receipt)
    manager.print_receipt(model)
    if total is not None and change is not None:
        manager.display_change(total + change, change)


session_bp = Blueprint("session", __name__, url_prefix="/api/v1/session")
members_bp = Blueprint("members", __name__, url_prefix="/api/v1/members")
products_bp = Blueprint("products", __name__, url_prefix="/api/v1/products")
sales_bp = Blueprint("sales", __name__, url_prefix="/api/v1/sales")
topups_bp = Blueprint("topups", __name__, url_prefix="/api/v1/topups")
status_bp = Blueprint("status", __name__, url_prefix="/api/v1/status")
health_bp = Blueprint("health", __name__, url_prefix="/api/v1/health")
sessions_bp = Blueprint("sessions", __name__, url_prefix="/api/v1/sessions")
ui_bp = Blueprint("ui", __name__, static_folder="static", template_folder="templates")


# The cashier screen's page allows only its own scripts, styles and API (no inline code):
# a member's name or a product's name shown on it can never run as script.
TILL_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


TILL_STATIC = Path(__file__).with_name("static") / "till"
TILL_TEMPLATES = Path(__file__).with_name("templates") / "till"


@functools.cache
def till_screen_parts() -> dict[str, list[str]]:
    """The cashier screen's parts, found by name so that a new panel touches no shared
    list: every module in edge/static/till/ but core.js (which they import), every
    stylesheet beside them, every ``dialog_*.html`` template."""
    return {
        "modules": sorted(p.name for p in TILL_STATIC.glob("*.js") if p.name != "core.js"),
        "panel_styles": sorted(p.name for p in TILL_STATIC.glob("*.css") if p.name != "till.css"),
        "dialogs": sorted(p.name for p in TILL_TEMPLATES.glob("dialog_*.html")),
    }


@ui_bp.get("/")
def cashier_ui():
    """The cashier screen (edge/templates/till/, edge/static/till/): one page over the
    same JSON API, the store's name in its header before anyone signs in."""
    t = till()
    response = make_response(
        render_template(
            "till/index.html",
            store_name=t.config.store.name,
            store_code=t.store,
            **till_screen_parts(),
        )
    )
    response.headers["Content-Security-Policy"] = TILL_CSP
    response.headers["Cache-Control"] = "no-store"
    return response


OPENAPI = Path(__file__).with_name("openapi.json")
# one file per part of the API added later (edge/openapi/*.json): {"paths": {...},
# "components": {"schemas": {...}}}, merged over the base description
OPENAPI_PARTS = Path(__file__).with_name("openapi")


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3 description of the till API: edge/openapi.json with the parts in
    edge/openapi/ merged in (a path's method or a schema named twice is an error, not a
    silent win; a part may add methods to a path described before)."""
    doc = json.loads(OPENAPI.read_text("utf-8"))
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for part_file in sorted(OPENAPI_PARTS.glob("*.json")):
        part = json.loads(part_file.read_text("utf-8"))
        for key, into in (("paths", doc["paths"]), ("schemas", schemas)):
            new = part["paths"] if key == "paths" else part.get("components", {}).get(key, {})
            twice = set(new) & set(into)
            if key == "paths":
                # a part may add methods to a path described before (PUT beside a GET)
                twice = {f"{p} {m}" for p in twice for m in set(new[p]) & set(into[p])}
                for path in set(new) & set(into):
                    new = new | {path: into[path] | new[path]}
            if twice:
                raise ValueError(f"{part_file.name} describes {sorted(twice)} again")
            into.update(new)
    return doc


@ui_bp.get("/api/v1/openapi.json")
def openapi():
    """The OpenAPI 3 description of this API (``openapi_document``), which the fuzz tests use."""
    return jsonify(openapi_document())


@session_bp.post("")
def sign_in():
    data = body()
    token, staff = staff_svc.sign_in(till(), data.get("staff_code"), data.get("pin"))
    return jsonify(token=token, **_who(staff)), 201


def _who(staff: staff_svc.SignedIn) -> dict[str, Any]:
    """The signed-in staff and the store, as the screen's header shows them."""
    t = till()
    return {
        "staff": {"code": staff.code, "name": staff.name, "role": staff.role},
        "store": {"code": t.store, "name": t.config.store.name},
    }


@session_bp.get("")
def who():
    """Who is signed in with this token, and where: the screen asks after a reload (its
    token kept for the browser tab) instead of signing the cashier out."""
    return jsonify(_who(signed_in()))


@session_bp.delete("")
def sign_out():
    signed_in()
    staff_svc.sign_out(till(), _bearer_token() or "")
    return "", 204


@sessions_bp.post("/end-all")
def end_sessions():
    """A manager ends every staff sign-in on this till, or one staff member's
    (``{"staff_code": ...}``); the screens signed in get 401 on their next request."""
    manager_signed_in("结束登录")
    data = _json()
    if data is not None and not isinstance(data, dict):
        raise ValidationError(
            "请求须为 JSON 对象或为空 (request body must be a JSON object or empty)"
        )
    code = (data or {}).get("staff_code")
    if code is not None and (not isinstance(code, str) or not code):
        raise ValidationError("员工编号须为文字 (staff_code must be a text)", field="staff_code")
    if code is not None:
        code = member_svc.check_code(code, "staff_code")
    ended = staff_svc.end_sessions(till(), code)
    return jsonify(ended=ended, staff_code=code)


@members_bp.get("")
def search_members():
    signed_in()
    t = till()
    found = member_svc.search(t, request.args.get("q", ""))
    return jsonify(members=[member_svc.summary(t, m) for m in found])


@members_bp.get("/by-card/<card_no>")
def member_by_card(card_no: str):
    signed_in()
    t = till()
    member = member_svc.by_card(card_no)
    summary = member_svc.summary(t, member)
    manager = devices()
    if manager is not None:
        manager.display_greeting(summary["masked_name"], summary["tier"] or summary["card_type"])
    return jsonify(member=summary)


@members_bp.get("/<member_id>")
def get_member(member_id: str):
    signed_in()
    t = till()
    return jsonify(member=member_svc.summary(t, member_svc.resolve(member_id)))


@members_bp.post("")
def register_member():
    staff = signed_in()
    t = till()
    rules = t.rules()
    reg = member_svc.Registration.from_request(body(), set(rules.card_type_discount) or None, rules)
    member = member_svc.register(t, reg, staff.code)
    return jsonify(member=member_svc.summary(t, member)), 201


@members_bp.put("/<member_id>/consent")
def change_member_consent(member_id: str):
    """The member's marketing consent, changed at the till (any signed-in staff)."""
    staff = signed_in()
    data = body()
    consent = consent_svc.consent_from_request(data.get("consent"), partial=True)
    return jsonify(consent_svc.change_consent(till(), member_id, consent, staff.code))


@products_bp.get("")
def search_products():
    """Products by what the scan box holds: a barcode or SKU exactly (``exact``), else a
    part of the name, its pinyin or initials (edge.services.products.search)."""
    signed_in()
    exact, found = product_svc.search(request.args.get("q", ""))
    if exact is not None:
        _show_on_display(exact)  # a scan: the pole display shows it
    return jsonify(
        exact=_product(exact) if exact is not None else None,
        products=[_product(p) for p in found],
    )


@products_bp.get("/<code>")
def get_product(code: str):
    signed_in()
    code = member_svc.check_code(code, "code")
    p = Product.get_or_none(Product.sku == code) or Product.get_or_none(Product.barcode == code)
    if p is None:
        raise NotFound(f"商品 {code} 不存在", field="code")
    _show_on_display(p)
    return jsonify(product=_product(p))


def _show_on_display(p: Product) -> None:
    manager = devices()
    if manager is not None:
        shown = p.price if p.promo_price is None else min(p.price, p.promo_price)
        manager.display_item(p.name, shown)  # what the till charges (core.pricing)


_product = product_svc.product_dict


@sales_bp.post("/quote")
def quote_sale():
    staff = signed_in()
    result = sales_svc.quote(till(), sales_svc.BasketRequest.from_request(body()), staff)
    manager = devices()
    if manager is not None:
        manager.display_total(result["total"])
    return jsonify(result)


@sales_bp.post("")
def create_sale():
    staff = signed_in()
    result = sales_svc.checkout(till(), staff, sales_svc.CheckoutRequest.from_request(body()))
    if not result["replayed"]:
        after_commit_print(result["receipt"], result["total"], result["change"])
    return jsonify(result), 200 if result["replayed"] else 201


@sales_bp.get("/<sale_id>")
def get_sale(sale_id: str):
    signed_in()
    sale = Sale.get_or_none(Sale.id == sale_id)
    if sale is None:
        raise NotFound(f"小票 {sale_id} 不存在", field="sale_id")
    return jsonify(sales_svc.sale_result(sale))


@sales_bp.post("/<sale_id>/reprint")
def reprint_sale(sale_id: str):
    signed_in()
    sale = Sale.get_or_none(Sale.id == sale_id)
    if sale is None:
        raise NotFound(f"小票 {sale_id} 不存在", field="sale_id")
    receipt = receipts_svc.reprint_copy(till(), sales_svc.sale_result(sale)["receipt"], sale)
    job = None
    manager = devices()
    if manager is not None:
        job = manager.reprint(Receipt.from_dict(receipt))
    return jsonify(receipt=receipt, print_job=job)


@sales_bp.post("/<sale_id>/returns")
def return_sale(sale_id: str):
    staff = signed_in()
    data = body()
    parsed = sales_svc.return_lines(data.get("lines"))
    return_id = data.get("return_id")
    if return_id is not None and not isinstance(return_id, str):
        raise ValidationError("退货单号须为文字 (return_id must be a string)", field="return_id")
    result = sales_svc.return_sale(till(), staff, sale_id, parsed, data.get("manager"), return_id)
    if not result["replayed"]:
        after_commit_print(result["receipt"])
    return jsonify(result), 200 if result["replayed"] else 201


@topups_bp.post("")
def create_topup():
    staff = signed_in()
    data = body()
    member = sales_svc.member_ref(data.get("member"))
    amount = data.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise ValidationError(
            f"充值金额须大于 0 且不超过 {format_yuan(MAX_AMOUNT)}"
            f" (amount must be a positive integer of fen, at most {MAX_AMOUNT})",
            field="amount",
        )
    topup_id = data.get("topup_id")
    if topup_id is not None and not isinstance(topup_id, str):
        raise ValidationError("充值编号须为文字 (topup_id must be a string)", field="topup_id")
    result = sales_svc.top_up(till(), staff, member, amount, topup_id, data.get("manager"))
    if not result["replayed"]:
        after_commit_print(result["receipt"])
    return jsonify(result), 200 if result["replayed"] else 201


@health_bp.get("")
def health():
    """Whether the till API answers, for monitoring and the screens before sign-in: no
    member, sale or device detail (that is GET /api/v1/status, for signed-in staff)."""
    return jsonify(ok=True, store=till().store)


@status_bp.get("")
def status():
    signed_in()
    t = till()
    manager = devices()
    return jsonify(
        store=t.store,
        now=t.now().isoformat(timespec="seconds"),
        rules_version=t.rules().version,
        members=member_svc.member_count(),
        outbox=backlog(),
        # the sync agent's link (None: no agent has run on this box)
        sync=link_status(t.now()),
        devices=manager.states() if manager is not None else None,
        offline_policies=policies_in_force(t.config),
    )


def _devices_need_a_signed_in_cashier() -> None:
    """Card reads, test pages, injected faults and the devices' states are for the till's
    own staff (as GET /api/v1/status, which shows the states too)."""
    if request.blueprint == "devices":
        signed_in()


def _error(exc: HuiyuanError):
    response = jsonify(exc.to_dict())
    if isinstance(exc, staff_svc.LockedOut):
        # when to try again, for clients and proxies that read it (RFC 9110 Retry-After)
        response.headers["Retry-After"] = str(exc.retry_after(till().now()))
    return response, exc.http_status


# the HTTP errors Flask itself answers (no such route, a wrong method, a body too large),
# said in Chinese first like every other refusal
HTTP_ERRORS_ZH = {
    400: "请求无法读取",
    404: "没有这个接口",
    405: "这个接口不支持这种请求方法",
    413: "请求太大 (最多 1 MiB)",
    415: "请求须为 JSON (Content-Type: application/json)",
}


def _http_error(exc: HTTPException):
    zh = HTTP_ERRORS_ZH.get(exc.code or 0, "请求被拒绝")
    message = f"{zh} ({exc.name}: {exc.description})"
    return jsonify(error=exc.name.lower().replace(" ", "_"), message=message), exc.code


def _unreadable(exc: Exception):
    """The last resort for bad input: a ValueError or TypeError that got past the checks
    (edge.services.fields, the services' from_request) came from a request they let
    through. The client gets a 400, the log the trace, so the missing check gets written;
    the fuzz tests (tests/edge/test_openapi.py) fail on this answer."""
    log.warning("request not understood: a check is missing", exc_info=exc)
    return jsonify(error="unreadable", message="请求无法处理 (the request could not be read)"), 400


def _unexpected(exc: Exception):
    log.exception("unhandled error in till API")
    return jsonify(error="internal", message="内部错误, 已记录 (internal error, logged)"), 500


def create_app(t: Till, device_manager: Any = None) -> Flask:
    app = Flask(__name__)
    # a till request is a basket of at most 200 lines; anything far larger is refused (413)
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["huiyuan.till"] = t
    if device_manager is not None:
        app.extensions["huiyuan.devices"] = device_manager
    app.extensions["huiyuan.networks"] = t.config.http.networks()
    for bp in (ui_bp, session_bp, members_bp, products_bp, sales_bp, topups_bp, status_bp):
        app.register_blueprint(bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(sessions_bp)
    from edge.routes import blueprints  # after this module: they use its helpers

    for bp in blueprints():
        app.register_blueprint(bp)
    app.before_request(_only_allowed_networks)
    app.before_request(_note_client_address)
    app.before_request(_check_request_texts)
    staff_svc.warm_up(t)
    try:
        from edge.devices.api import devices_bp
    except ImportError:
        devices_bp = None
    if devices_bp is not None:
        app.register_blueprint(devices_bp)
        app.before_request(_devices_need_a_signed_in_cashier)
    edge_metrics.init_app(app, t, device_manager)
    app.register_error_handler(HuiyuanError, _error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(ValueError, _unreadable)
    app.register_error_handler(TypeError, _unreadable)
    app.register_error_handler(Exception, _unexpected)
    return app
