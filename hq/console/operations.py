"""The console's operations screens: stores (门店), sales (销售), exceptions and dead
letters (异常/死信) with their resolve workflow; and the resolve routes as JSON.

Pages read through hq/console/ops_data.py, limited to the principal's stores
(``current().stores``); one store's page, sale or item of another store is a 403.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, redirect, request, url_for

from core.errors import ValidationError
from hq.access.guard import current, requires
from hq.console import ops_data as data
from hq.console import render
from hq.services import list_stores

bp = Blueprint("operations", __name__)
api_bp = Blueprint("operations_api", __name__, url_prefix="/api")


def _db() -> Any:
    return current_app.extensions["hq_db"]


def _clean(value: str, name: str) -> str:
    """A parameter as typed, refused when it holds a control character (PostgreSQL
    refuses a NUL in a text outright) or is absurdly long."""
    if len(value) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValidationError(f"参数 {name} 含有无效字符或过长 ({name} is not valid)", field=name)
    return value


def _args() -> dict[str, str]:
    return {k: _clean(v, k) for k, v in request.args.items()}


def _visible_stores() -> list[dict[str, Any]]:
    """The stores of the principal, for a filter's choice."""
    return list_stores(current().stores)


# ---- stores


@bp.get("/stores")
@requires("stores.read")
def stores() -> Any:
    area = _clean(request.args.get("area") or "", "area").strip()[:32] or None
    rows = data.stores_overview(current().stores)
    areas = sorted({s["area"] for s in rows if s["area"]})
    if area:
        rows = [s for s in rows if s["area"] == area]
    return render("stores.html", stores=rows, areas=areas, area=area)


@bp.get("/stores/<code>")
@requires("stores.read")
def store_page(code: str) -> Any:
    code = data.store_code(code, "code") or ""
    current().require_store(code)
    store = data.store_detail(code)
    exceptions, _ = data.list_exceptions(
        {"status": "open", "kind": None, "store": code, "after": None}, current().stores, 20
    )
    dead, _ = data.list_dead_letters(
        {"status": "all", "code": None, "store": code, "after": None}, current().stores, 20
    )
    sales, _ = data.list_sales(
        data.SaleFilters(store=code), current().stores, current_app.config["HQ"].zone(), 10
    )
    return render(
        "store.html",
        store=store,
        exceptions=exceptions,
        dead_letters=dead,
        sales=sales,
        kinds=data.EXCEPTION_KINDS,
        codes=data.DEAD_LETTER_CODES,
        resolutions=data.RESOLUTIONS,
    )


# ---- sales


def _kept(filters: dict[str, Any]) -> dict[str, Any]:
    """A list's filters as query arguments: the ones set, without the page cursor."""
    return {k: v for k, v in filters.items() if v and k != "after"}


def _page_links(
    endpoint: str, query: dict[str, Any], cursor: Any, paged: Any
) -> tuple[str | None, str | None]:
    """A keyset-paged list's links: the next page (when there is one after ``cursor``) and
    the first page (when this page was reached by ``paged``, a cursor), with the same
    filters."""
    next_url = url_for(endpoint, **query, after=cursor) if cursor else None
    first_url = url_for(endpoint, **query) if paged else None
    return next_url, first_url


@bp.get("/sales")
@requires("sales.read")
def sales() -> Any:
    principal = current()
    filters = data.sale_filters(_args(), principal)
    rows, cursor = data.list_sales(
        filters, principal.stores, current_app.config["HQ"].zone(), principal=principal
    )
    problem = None
    if filters.member and not filters.member_id:
        problem = f"会员不存在: {filters.member} (no member with this id, card or phone)"
    next_url, first_url = _page_links(
        "operations.sales", filters.query_args(), cursor, filters.after
    )
    return render(
        "sales.html",
        sales=rows,
        f=filters,
        stores=_visible_stores(),
        next_url=next_url,
        first_url=first_url,
        problem=problem,
    )


@bp.get("/sales/<sale_id>")
@requires("sales.read")
def sale_page(sale_id: str) -> Any:
    if not sale_id or len(sale_id) > 64:
        raise ValidationError("销售单号无效 (sale id is 1..64 characters)", field="sale_id")
    _clean(sale_id, "sale_id")
    return render("sale.html", s=data.sale_receipt(sale_id, current()))


# ---- exceptions


@bp.get("/exceptions")
@requires("exceptions.read")
def exceptions() -> Any:
    principal = current()
    f = data.exception_filters(_args(), principal)
    rows, after = data.list_exceptions(f, principal.stores)
    next_url, first_url = _page_links("operations.exceptions", _kept(f), after, f["after"])
    return render(
        "exceptions.html",
        rows=rows,
        f=f,
        stores=_visible_stores(),
        kinds=data.EXCEPTION_KINDS,
        states=data.EXCEPTION_STATES,
        resolutions=data.RESOLUTIONS,
        next_url=next_url,
        first_url=first_url,
    )


@bp.get("/exceptions/<int:exc_id>")
@requires("exceptions.read")
def exception_page(exc_id: int) -> Any:
    row = data.get_exception(exc_id, current())
    return render(
        "exception.html",
        e=row,
        kinds=data.EXCEPTION_KINDS,
        resolutions=data.RESOLUTIONS,
        notice="已处理, 已记入审计日志 (resolved and audited)"
        if request.args.get("done")
        else None,
    )


@bp.post("/exceptions/<int:exc_id>/resolve")
@requires("exceptions.resolve")
def exception_resolve(exc_id: int) -> Any:
    data.resolve_exception(
        _db(), exc_id, current(), request.form.get("resolution"), request.form.get("note")
    )
    return redirect(url_for("operations.exception_page", exc_id=exc_id, done=1))


# ---- dead letters


@bp.get("/dead-letters")
@requires("exceptions.read")
def dead_letters() -> Any:
    principal = current()
    f = data.dead_letter_filters(_args(), principal)
    rows, after = data.list_dead_letters(f, principal.stores)
    next_url, first_url = _page_links("operations.dead_letters", _kept(f), after, f["after"])
    return render(
        "dead_letters.html",
        rows=rows,
        f=f,
        stores=_visible_stores(),
        codes=data.DEAD_LETTER_CODES,
        states=data.DEAD_LETTER_STATES,
        resolutions=data.RESOLUTIONS,
        next_url=next_url,
        first_url=first_url,
    )


@bp.get("/dead-letters/<int:dl_id>")
@requires("exceptions.read")
def dead_letter_page(dl_id: int) -> Any:
    row = data.get_dead_letter(dl_id, current())
    return render(
        "dead_letter.html",
        d=row,
        payload=data.payload_preview(row),
        codes=data.DEAD_LETTER_CODES,
        resolutions=data.RESOLUTIONS,
        notice="已处理, 已记入审计日志 (resolved and audited)"
        if request.args.get("done")
        else None,
    )


@bp.post("/dead-letters/<int:dl_id>/resolve")
@requires("exceptions.resolve")
def dead_letter_resolve(dl_id: int) -> Any:
    data.resolve_dead_letter(
        _db(), dl_id, current(), request.form.get("resolution"), request.form.get("note")
    )
    return redirect(url_for("operations.dead_letter_page", dl_id=dl_id, done=1))


# ---- JSON


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError(
            "请求体须为 JSON 对象 {resolution, note} (body must be a JSON object)"
        )
    return body


@api_bp.post("/exceptions/<int:exc_id>/resolve")
@requires("exceptions.resolve")
def api_exception_resolve(exc_id: int) -> Any:
    body = _json_body()
    row = data.resolve_exception(_db(), exc_id, current(), body.get("resolution"), body.get("note"))
    return jsonify({"exception": data.resolution_json(row)})


@api_bp.post("/dead-letters/<int:dl_id>/resolve")
@requires("exceptions.resolve")
def api_dead_letter_resolve(dl_id: int) -> Any:
    body = _json_body()
    row = data.resolve_dead_letter(
        _db(), dl_id, current(), body.get("resolution"), body.get("note")
    )
    return jsonify({"dead_letter": data.resolution_json(row)})


@bp.app_template_filter("ops_time")
def ops_time(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A naive-UTC instant in the chain's time zone (HqConfig.timezone), to the minute
    unless ``fmt`` says otherwise (— when none): the console's one wall clock."""
    import datetime as dt

    if not isinstance(value, dt.datetime):
        return "—"
    zone = current_app.config["HQ"].zone()
    return value.replace(tzinfo=dt.UTC).astimezone(zone).strftime(fmt)
