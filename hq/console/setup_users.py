"""The console's accounts and integration tokens (账号): admins add staff accounts, change
their role and scope, reset passwords, deactivate and activate them, and issue and
revoke bearer tokens. Every change goes through hq/access (users.py, sessions.py), which
audits it; a password or token is shown once, on the answer to the form that made it."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, redirect, request, url_for

from core.errors import HuiyuanError, ValidationError
from hq.access import sessions, users
from hq.access.guard import current, requires
from hq.access.roles import PERMISSIONS, ROLES
from hq.console import render
from hq.models import HqUser, Store, utcnow

bp = Blueprint("setup_users", __name__)

NOTICES = {
    "role": "角色已修改, 该账号的下一次请求即按新角色",
    "active": "账号已启用",
    "inactive": "账号已停用, 其登录会话已结束",
    "revoked": "令牌已吊销",
}


def _page(status: int = 200, **context: Any) -> Any:
    now = utcnow()
    accounts = list(HqUser.select().order_by(HqUser.username).limit(1000))
    areas = sorted(
        {s.area for s in Store.select(Store.area).where(Store.area.is_null(False)).limit(1000)}
    )
    stores = [s.code for s in Store.select(Store.code).order_by(Store.code).limit(1000)]
    return render(
        "users.html",
        status,
        accounts=accounts,
        tokens=sessions.list_tokens()[:200],
        roles=ROLES,
        permissions=PERMISSIONS,
        areas=areas,
        stores=stores,
        now=now,
        **context,
    )


def _refused(exc: HuiyuanError, **context: Any) -> Any:
    status = exc.http_status if 400 <= exc.http_status < 500 else 400
    return _page(status, problem=exc.message, **context)


def _db() -> Any:
    return current_app.extensions["hq_db"]


def _password(form: Any) -> tuple[str, bool]:
    """The password typed, or a generated one (shown once) when the field is empty."""
    typed = form.get("password", "")
    if typed:
        return typed, False
    return users.generate_password(), True


@bp.get("/setup/users")
@requires("users.manage")
def users_page() -> Any:
    return _page(notice=NOTICES.get(request.args.get("done", "")))


@bp.post("/setup/users")
@requires("users.manage")
def add_user() -> Any:
    form = request.form
    username = (form.get("username") or "").strip()
    password, generated = _password(form)
    try:
        users.add_user(
            _db(),
            username,
            password,
            form.get("role", ""),
            scope=form.get("scope"),
            display_name=(form.get("display_name") or "").strip(),
            by=current().actor,
        )
    except HuiyuanError as exc:
        return _refused(exc, draft=form)
    return _page(
        notice=f"账号 {username} 已创建",
        secret={
            "what": f"账号 {username} 的初始密码",
            "value": password if generated else None,
        },
    )


@bp.post("/setup/users/<username>/role")
@requires("users.manage")
def set_role(username: str) -> Any:
    form = request.form
    try:
        if username == current().name and form.get("role") != "admin":
            raise ValidationError(
                "不能取消自己的管理员角色 (you cannot take the admin role from yourself)",
                field="role",
            )
        users.set_role(
            _db(), username, form.get("role", ""), scope=form.get("scope"), by=current().actor
        )
    except HuiyuanError as exc:
        return _refused(exc)
    return redirect(url_for("setup_users.users_page", done="role"), 303)


@bp.post("/setup/users/<username>/password")
@requires("users.manage")
def reset_password(username: str) -> Any:
    password, generated = _password(request.form)
    try:
        users.reset_password(_db(), username, password, by=current().actor)
    except HuiyuanError as exc:
        return _refused(exc)
    return _page(
        notice=f"账号 {username} 的密码已重置, 其登录会话已结束",
        secret={
            "what": f"账号 {username} 的新密码",
            "value": password if generated else None,
        },
    )


@bp.post("/setup/users/<username>/active")
@requires("users.manage")
def set_active(username: str) -> Any:
    active = request.form.get("active")
    try:
        if active not in ("0", "1"):
            raise ValidationError("active 须为 0 或 1 (active must be 0 or 1)", field="active")
        if username == current().name and active == "0":
            raise ValidationError(
                "不能停用自己的账号 (you cannot deactivate your own account)", field="active"
            )
        users.set_active(_db(), username, active == "1", by=current().actor)
    except HuiyuanError as exc:
        return _refused(exc)
    return redirect(
        url_for("setup_users.users_page", done="active" if active == "1" else "inactive"), 303
    )


@bp.post("/setup/tokens")
@requires("users.manage")
def issue_token() -> Any:
    form = request.form
    days_text = (form.get("days") or "").strip()
    try:
        if days_text and (not days_text.isdigit() or len(days_text) > 5):
            raise ValidationError("有效天数须为整数 (days must be a whole number)", field="days")
        token, row = sessions.issue_token(
            _db(),
            form.get("name", ""),
            form.get("role", ""),
            scope=form.get("scope"),
            days=int(days_text) if days_text else None,
            by=current().actor,
        )
    except HuiyuanError as exc:
        return _refused(exc, token_draft=form)
    return _page(
        notice=f"令牌 {row.token_id} ({row.name}) 已签发",
        secret={"what": f"令牌 {row.token_id} ({row.name})", "value": token},
    )


@bp.post("/setup/tokens/<token_id>/revoke")
@requires("users.manage")
def revoke_token(token_id: str) -> Any:
    try:
        sessions.revoke_token(_db(), token_id[:16], by=current().actor)
    except HuiyuanError as exc:
        return _refused(exc)
    return redirect(url_for("setup_users.users_page", done="revoked"), 303)
