"""The guard in front of every HQ route (``init_app``, called by hq.api.create_app).

Every request is refused unless it is signed in — a console session cookie or an
integration's bearer token — except the endpoints in ``PUBLIC_ENDPOINTS``, each of
which authenticates in its own way or serves nothing private. A route declares what it
needs with ``@requires("permission")``; a route that declares nothing is admin-only, so
forgetting to declare never opens a route. A cookie-signed request that changes
anything (POST, PUT, PATCH, DELETE) must carry the session's CSRF token, as the form
field ``csrf`` or the header ``X-CSRF-Token``; bearer requests need none (a browser
never sends the header by itself).

``current()`` is the principal of the request; services are given its ``actor`` for
the audit log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from flask import Flask, Response, current_app, g, jsonify, redirect, request

from hq.access.roles import Forbidden, Principal
from hq.access.sessions import csrf_matches, session_principal, token_principal

SESSION_COOKIE = "hy_session"
ADMIN_ONLY = "users.manage"

# (endpoint, how it authenticates instead of a session)
PUBLIC_ENDPOINTS: dict[str, str] = {
    "console.login": "the sign-in form itself",
    "console.static": "the console's CSS, scripts and fonts (no data)",
    "enrol.enrol_route": "its one-time enrolment code (hq/enrol.py)",
    "metrics.metrics": "the metrics bearer token (hq/metrics.py)",
    # -- memberpage: the member has no console account, so these cannot ask for a session.
    # Each route first verifies the signed, expiring link in its URL (core.member_link)
    # and shows only the member it names; the bind forms carry their own CSRF token
    # (hq/portal/pages.py); stored value, coupons and purchases need a bound phone.
    "portal.member_page_route": "the signed, expiring member link in its URL (hq/portal/)",
    "portal.member_page_json": "the signed, expiring member link in its URL (hq/portal/)",
    "portal.request_code_route": "the signed member link and the page's CSRF token",
    "portal.bind_route": "the signed member link, the page's CSRF token, the SMS code",
    "portal.static": "the member page's CSS (no data)",
    # -- end memberpage
    # -- campaigns (channels): the unsubscribe link in every campaign message; the same
    # signed link, the POST also the page's CSRF token (hq/portal/unsubscribe.py)
    "portal.unsubscribe_page": "the signed, expiring member link in its URL (hq/portal/)",
    "portal.unsubscribe_route": "the signed member link and the page's CSRF token",
    # -- end campaigns (channels)
}
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

F = TypeVar("F", bound=Callable[..., Any])


def requires(permission: str) -> Callable[[F], F]:
    """Declare the permission a route needs (hq.access.roles.PERMISSIONS)."""

    def mark(view: F) -> F:
        view.hy_permission = permission  # type: ignore[attr-defined]
        return view

    return mark


def current() -> Principal:
    """The signed-in principal of this request (the guard has let it in)."""
    return g.hy_principal


def _is_api() -> bool:
    return request.path.startswith("/api/") or request.path == "/api"


def _refuse_unauthenticated() -> Response:
    if _is_api() or request.headers.get("Authorization"):
        resp = jsonify(
            {"error": "unauthenticated", "message": "请先登录 (sign in or send a bearer token)"}
        )
        resp.status_code = 401
        resp.headers["WWW-Authenticate"] = 'Bearer realm="huiyuan-hq"'
        return resp
    target = request.full_path if request.query_string else request.path
    return redirect(f"/login?next={quote(target, safe='/')}")  # type: ignore[return-value]


def _guard() -> Response | None:
    endpoint = request.endpoint
    if endpoint in PUBLIC_ENDPOINTS:
        return None
    header = request.headers.get("Authorization")
    principal: Principal | None
    if header is not None:
        principal = token_principal(header)
    else:
        principal = session_principal(request.cookies.get(SESSION_COOKIE))
    if principal is None:
        return _refuse_unauthenticated()
    g.hy_principal = principal
    if principal.kind == "session" and request.method in UNSAFE:
        sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf")
        if not csrf_matches(principal, sent):
            raise Forbidden("CSRF 校验失败, 请刷新页面 (missing or wrong CSRF token)")
    view = current_app.view_functions.get(endpoint) if endpoint else None
    if view is None:  # a 404 or 405: let Flask answer it, signed in
        return None
    principal.require(getattr(view, "hy_permission", ADMIN_ONLY))
    return None


def init_app(app: Flask) -> None:
    app.before_request(_guard)

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        if resp.mimetype == "text/html":
            resp.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
            )
            resp.headers.setdefault("Cache-Control", "no-store")
        return resp
