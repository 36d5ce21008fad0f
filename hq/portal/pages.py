"""The member's page: ``/m/<token>`` (and its JSON twin ``/m/<token>.json``), the code
request and the binding. Public by necessity: the member has no console account; the
signed link (core.member_link) is what lets a request in, and each route checks it first
(hq/access/guard.py PUBLIC_ENDPOINTS). Whatever is refused, the member sees one Chinese
page, never which check failed.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, redirect, render_template, request

from core.errors import HuiyuanError
from core.member_link import LinkRefused, verify_link
from hq.channels.sms import sms_gateway
from hq.lookup import chain_lookup
from hq.models import Member, utcnow
from hq.portal import binding
from hq.portal.keys import PortalKeys
from hq.portal.view import member_page, surviving_member

log = logging.getLogger("hq.portal")

bp = Blueprint(
    "portal",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/m/static",
)

SESSION_COOKIE = "hy_member"
CSRF_COOKIE = "hy_m_csrf"
REFUSED = "此链接无效或已过期。请使用最近一张购物小票上的二维码, 或到门店查询。"


def _keys() -> PortalKeys:
    return current_app.extensions["hq_portal_keys"]


def _refused(status: int = 403) -> Any:
    return render_template("portal/refused.html", message=REFUSED), status


def _member_of(token: str, unsubscribing: bool = False) -> tuple[Member | None, str]:
    """The surviving member a token names, or None (the link is refused). A member-page
    link (a receipt's, the page's own) opens every page; a message's 退订 link, signed by
    the unsubscribe key, only the unsubscribe page (``unsubscribing``)."""
    keys = [_keys().link] + ([_keys().unsubscribe] if unsubscribing else [])
    reason = "key"
    for key in keys:
        try:
            link = verify_link(key, token, utcnow())
        except LinkRefused as exc:
            reason = exc.reason if exc.reason != "key" else reason  # the telling one
            continue
        member = surviving_member(link.member_id)
        return member, "" if member is not None else "unknown"
    log.info("member link refused: %s", reason)
    return None, reason


def _bound(member: Member) -> bool:
    signed = binding.session_member(_keys(), request.cookies.get(SESSION_COOKIE), utcnow())
    if signed is None:
        return False
    survivor = surviving_member(signed)
    return survivor is not None and survivor.id == member.id


def _csrf_for(browser: str, token: str) -> str:
    return _keys().mac(_keys().csrf, browser, token)


def _page(token: str, member: Member, status: int = 200, **notice: Any) -> Any:
    from hq.programme.points import current_rules

    config = current_app.config["HQ"]
    now = utcnow()
    data = member_page(member, current_rules(), config.business_day(now), _bound(member))
    return _render(
        "portal/member.html",
        token,
        status,
        page=data,
        sms=current_app.extensions.get("hq_sms") is not None,
        **notice,
    )


def _render(template: str, token: str, status: int, **context: Any) -> Any:
    """A page whose forms carry the CSRF token: this browser's CSRF cookie (set here on
    the first page) signed with the link."""
    browser = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(16)
    resp = current_app.make_response(
        (
            render_template(template, token=token, csrf=_csrf_for(browser, token), **context),
            status,
        )
    )
    if request.cookies.get(CSRF_COOKIE) != browser:
        resp.set_cookie(CSRF_COOKIE, browser, httponly=True, samesite="Strict", path="/m/")
    return resp


def _csrf_ok(token: str) -> bool:
    """Whether the posted form's ``csrf`` is this browser's token for this link."""
    browser = request.cookies.get(CSRF_COOKIE) or ""
    sent = request.form.get("csrf") or ""
    return bool(browser) and hmac.compare_digest(sent, _csrf_for(browser, token))


@bp.get("/m/<token>")
def member_page_route(token: str) -> Any:
    member, _reason = _member_of(token)
    if member is None:
        return _refused()
    return _page(token, member)


@bp.get("/m/<token>.json")
def member_page_json(token: str) -> Any:
    from hq.programme.points import current_rules

    member, _reason = _member_of(token)
    if member is None:
        return jsonify({"error": "link_refused", "message": REFUSED + " (link refused)"}), 403
    today = current_app.config["HQ"].business_day(utcnow())
    return jsonify(member_page(member, current_rules(), today, _bound(member)))


def _form_checked(token: str) -> Member | Any:
    member, _reason = _member_of(token)
    if member is None:
        return _refused()
    if not _csrf_ok(token):
        return _page(token, member, 403, error="页面已过期, 请刷新后重试 (CSRF check failed)")
    return member


@bp.post("/m/<token>/code")
def request_code_route(token: str) -> Any:
    checked = _form_checked(token)
    if not isinstance(checked, Member):
        return checked
    phone = request.form.get("phone", "")
    try:
        binding.request_code(
            current_app.extensions["hq_db"],
            _keys(),
            current_app.extensions.get("hq_sms"),
            checked,
            phone,
            utcnow(),
        )
    except HuiyuanError as exc:
        status = exc.http_status if 400 <= exc.http_status < 500 else 503
        return _page(token, checked, status, error=exc.message, phone=phone[:20])
    return _page(
        token,
        checked,
        code_sent=True,
        phone=phone[:20],
        notice="如果该号码是本会员登记的手机号, 验证码已发送, 5分钟内有效。",
    )


@bp.post("/m/<token>/bind")
def bind_route(token: str) -> Any:
    checked = _form_checked(token)
    if not isinstance(checked, Member):
        return checked
    now = utcnow()
    try:
        binding.check_code(
            current_app.extensions["hq_db"], _keys(), checked, request.form.get("code", ""), now
        )
    except HuiyuanError as exc:
        return _page(token, checked, exc.http_status, error=exc.message, code_sent=True)
    resp = redirect(f"/m/{token}", code=303)
    resp.set_cookie(
        SESSION_COOKIE,
        binding.session_cookie(_keys(), checked.id, now),
        max_age=binding.SESSION_DAYS * 86400,
        httponly=True,
        secure=current_app.config["HQ"].console_secure_cookie,
        samesite="Lax",
        path="/m/",
    )
    return resp


def init_app(app: Flask, gateway: Any = None) -> None:
    """Register the page; ``gateway`` replaces the configured SMS gateway (tests, demo)."""
    config = app.config["HQ"]
    app.extensions["hq_portal_keys"] = PortalKeys(chain_lookup(config))
    app.extensions["hq_sms"] = gateway if gateway is not None else sms_gateway(config)
    app.register_blueprint(bp)


# -- campaigns (channels): the unsubscribe page's routes join this blueprint
from hq.portal import unsubscribe  # noqa: E402,F401 - it adds routes to ``bp``
