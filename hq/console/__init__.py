"""HQ's console: server-rendered pages (Jinja templates, vendored CSS and one small
script), served by the HQ API process, Simplified Chinese first.

Each part of the console is a blueprint in its own module, registered by
``register(app)``; ``NAV`` is the sidebar, each entry shown only to roles with its
permission. Pages read through the same service functions as the JSON API and declare
their permission with ``hq.access.guard.requires``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from flask import (
    Blueprint,
    Flask,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)

from core.errors import ValidationError
from hq.access import guard
from hq.access.guard import SESSION_COOKIE, current
from hq.access.sessions import LONGEST, end_session, start_session
from hq.access.users import authenticate

bp = Blueprint(
    "console",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

LOGIN_CSRF_COOKIE = "hy_login_csrf"


@dataclass(frozen=True)
class NavItem:
    endpoint: str
    label: str
    permission: str
    key: str  # the keyboard shortcut (Alt+key)
    also: tuple[str, ...] = ()  # other paths whose pages belong to this item


NAV: list[NavItem] = [
    NavItem("console.home", "概览", "reports.read", "1"),
    # ---- console parts add their pages here, one block each (key: Alt+key)
    # -- reports (dashboard, reports, exports): keys 1, 2
    NavItem("reports.reports_page", "报表", "reports.read", "2"),
    # -- members (search, member page): keys 3
    NavItem("console_members.search", "会员", "members.read", "3"),
    # -- operations (stores, sales, exceptions and dead letters): keys 4, 5, 6
    NavItem("operations.stores", "门店", "stores.read", "4"),
    NavItem("operations.sales", "销售", "sales.read", "5"),
    NavItem("operations.exceptions", "异常", "exceptions.read", "6", ("/dead-letters",)),
    # -- setup (programme rules, audit log, users and tokens): keys 7, 8, 9
    NavItem("setup.rules_page", "会员规则", "rules.read", "7"),
    NavItem("setup_audit.audit_page", "审计", "audit.read", "8"),
    NavItem("setup_users.users_page", "账号", "users.manage", "9"),
    # -- follow-ups (回访): key 0
    NavItem("followups_console.followups_page", "回访", "followups.read", "0"),
    # -- marketing (lists, segments): key L
    NavItem("marketing.lists_page", "营销", "marketing.read", "L", ("/marketing",)),
    # -- shifts and day close (门店交班/日结 reports): none, a section of the store's page
    # ---- end of the console's pages
]


def render(template: str, status: int = 200, **context: Any) -> Any:
    """A console page: the template with the principal and the sidebar it may use."""
    principal = current()
    nav = [item for item in NAV if principal.can(item.permission)]
    return (
        render_template(
            template,
            me=principal,
            nav=nav,
            csrf=principal.csrf,
            active=_active_item(nav),
            **context,
        ),
        status,
    )


def _active_item(nav: list[NavItem]) -> str | None:
    """The sidebar item this page belongs to: the one whose path (or an ``also`` path)
    is the longest prefix of the request's path, so a store's page lights 门店."""
    best, best_len = None, -1
    for item in nav:
        url = url_for(item.endpoint)
        for path in (url, *item.also):
            inside = request.path == path or (
                path != "/" and request.path.startswith(path.rstrip("/") + "/")
            )
            if inside and len(path) > best_len:
                best, best_len = item.endpoint, len(path)
    return best


def _cookie_secure() -> bool:
    return current_app.config["HQ"].console_secure_cookie


def _safe_next(target: str | None) -> str:
    """Only a path on this site (never //host or a scheme): no open redirect."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    username = ""
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        sent = request.form.get("csrf", "")
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not sent or not secrets.compare_digest(sent, cookie):
            error = "页面已过期, 请重新登录 (the form expired; try again)"
        else:
            try:
                user = authenticate(
                    current_app.extensions["hq_db"], username, request.form.get("password", "")
                )
            except ValidationError as exc:
                error = exc.message
            else:
                token, _ = start_session(user)
                resp = make_response(redirect(_safe_next(request.args.get("next"))))
                resp.set_cookie(
                    SESSION_COOKIE,
                    token,
                    max_age=int(LONGEST.total_seconds()),
                    httponly=True,
                    secure=_cookie_secure(),
                    samesite="Strict",
                )
                resp.delete_cookie(LOGIN_CSRF_COOKIE)
                return resp
    # one token per browser, kept while it signs in: another tab's sign-in page does not
    # invalidate this one's form
    form_csrf = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not 20 <= len(form_csrf) <= 64:
        form_csrf = secrets.token_urlsafe(24)
    resp = make_response(
        render_template("login.html", error=error, username=username, csrf=form_csrf),
        401 if error else 200,
    )
    resp.set_cookie(
        LOGIN_CSRF_COOKIE,
        form_csrf,
        httponly=True,
        secure=_cookie_secure(),
        samesite="Strict",
    )
    return resp


@bp.post("/logout")
@guard.requires("stores.read")
def logout() -> Any:
    end_session(request.cookies.get(SESSION_COOKIE))
    resp = make_response(redirect("/login"))
    resp.delete_cookie(SESSION_COOKIE)
    return resp


@bp.get("/")
@guard.requires("reports.read")
def home() -> Any:
    """概览: the dashboard (hq/console/reports_pages.py)."""
    from hq.console import reports_pages

    return reports_pages.dashboard()


def register(app: Flask) -> None:
    app.register_blueprint(bp)
    # ---- console parts register their blueprints here, one block each
    # -- reports
    from hq.reports.api import bp as reports_api  # noqa: PLC0415 (KPIs, docs/kpis.md)

    app.register_blueprint(reports_api)
    from hq.console.reports_pages import bp as reports_pages

    app.register_blueprint(reports_pages)
    # -- members
    from hq.console import members

    app.register_blueprint(members.bp)
    # -- operations
    from hq.console import operations

    app.register_blueprint(operations.bp)
    app.register_blueprint(operations.api_bp)
    # -- setup
    from hq.console import setup, setup_audit, setup_users

    for part in (setup.bp, setup_audit.bp, setup_users.bp):
        app.register_blueprint(part)
    # -- follow-ups
    from hq.followups import console as followups_console

    app.register_blueprint(followups_console.bp)
    # -- marketing
    from hq.marketing import api as marketing_api
    from hq.marketing import pages as marketing_pages

    app.register_blueprint(marketing_api.bp)
    app.register_blueprint(marketing_pages.bp)
    # -- campaigns (engine)
    from hq.marketing import campaign_api

    app.register_blueprint(campaign_api.bp)
    # -- shifts and day close
    from hq.console import shifts

    app.register_blueprint(shifts.bp)
    # ---- end of the console's blueprints


@bp.app_template_filter("yuan")
def yuan(fen: int | None) -> str:
    """Integer fen as yuan text for the screen (¥1,234.50); the figure stays integer."""
    if fen is None:
        return "—"
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"
