"""Staff: PIN sign-in, sessions, and manager approval."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from core.errors import Conflict, Forbidden, Unauthorized, ValidationError
from edge.models import Staff, StaffSession
from edge.security import hash_secret, verify_secret
from edge.services.context import Till

ROLES = ("cashier", "manager")


@dataclass(frozen=True)
class SignedIn:
    code: str
    name: str
    role: str

    @property
    def is_manager(self) -> bool:
        return self.role == "manager"


def _check_pin(pin: object) -> str:
    if not isinstance(pin, str) or not pin.isdigit() or not 4 <= len(pin) <= 8:
        raise ValidationError("PIN 须为4到8位数字 (PIN must be 4-8 digits)", field="pin")
    return pin


def add_staff(till: Till, code: str, name: str, role: str, pin: str) -> Staff:
    if role not in ROLES:
        raise ValidationError(f"role must be one of {ROLES}", field="role")
    if not code or not name:
        raise ValidationError("staff code and name are required", field="code")
    pin_hash = hash_secret(_check_pin(pin), till.config.security.scrypt_n)
    with till.db.atomic():
        if Staff.get_or_none(Staff.code == code):
            raise Conflict(f"员工编号 {code} 已存在", field="code")
        return Staff.create(code=code, name=name, role=role, pin_hash=pin_hash)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_in(till: Till, code: object, pin: object) -> tuple[str, SignedIn]:
    if not isinstance(code, str) or not code:
        raise ValidationError("staff code is required", field="staff_code")
    staff = Staff.get_or_none((Staff.code == code) & (Staff.active == True))  # noqa: E712
    if staff is None or not verify_secret(_check_pin(pin), staff.pin_hash):
        raise Forbidden("员工编号或PIN错误 (wrong staff code or PIN)", field="pin")
    token = secrets.token_urlsafe(24)
    now = till.now()
    with till.db.atomic():
        StaffSession.create(
            token_hash=_token_hash(token),
            staff_code=staff.code,
            created_at=now.isoformat(),
            expires_at=(now + dt.timedelta(hours=till.config.till.session_hours)).isoformat(),
        )
    return token, SignedIn(staff.code, staff.name, staff.role)


def session_staff(till: Till, token: str | None) -> SignedIn:
    if not token:
        raise Unauthorized("请先登录 (sign in first)", field="token")
    row = StaffSession.get_or_none(StaffSession.token_hash == _token_hash(token))
    if row is None or dt.datetime.fromisoformat(row.expires_at) < till.now():
        raise Unauthorized("登录已过期, 请重新登录 (session expired)", field="token")
    staff = Staff.get_or_none((Staff.code == row.staff_code) & (Staff.active == True))  # noqa: E712
    if staff is None:
        raise Unauthorized("员工已停用 (staff disabled)", field="token")
    return SignedIn(staff.code, staff.name, staff.role)


def sign_out(till: Till, token: str) -> None:
    with till.db.atomic():
        StaffSession.delete().where(StaffSession.token_hash == _token_hash(token)).execute()


def require_manager(till: Till, staff: SignedIn, approval: object, action: str) -> SignedIn:
    """The signed-in manager, or a manager's code+PIN given for this one action."""
    if staff.is_manager:
        return staff
    if not isinstance(approval, dict):
        raise Forbidden(f"{action}需要店长授权 (manager PIN required)", field="manager")
    code, pin = approval.get("code"), approval.get("pin")
    manager = Staff.get_or_none((Staff.code == code) & (Staff.active == True))  # noqa: E712
    if (
        manager is None
        or manager.role != "manager"
        or not verify_secret(_check_pin(pin), manager.pin_hash)
    ):
        raise Forbidden(f"{action}需要店长授权: 店长编号或PIN错误", field="manager")
    return SignedIn(manager.code, manager.name, manager.role)
