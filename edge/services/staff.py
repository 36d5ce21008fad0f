"""Staff: PIN sign-in, sessions, and manager approval.

A PIN of four digits is guessed in at most 10,000 tries, so wrong PINs are counted
per staff code (at sign-in and when a manager's PIN is given to approve an action):
after ``till.pin_max_failures`` in a row the code is locked for
``till.pin_lockout_minutes``, even for the right PIN. The count lives in the
database, so restarting the till server does not reset it; a right PIN resets it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from core.errors import Conflict, Forbidden, Unauthorized, ValidationError
from core.protocol import SCRYPT_N
from edge.models import Setting, Staff, StaffSession
from edge.security import hash_secret, verify_secret
from edge.services.context import Till

ROLES = ("cashier", "manager")


class LockedOut(Forbidden):
    """Too many wrong PINs in a row for one staff code."""

    http_status = 429
    slug = "locked"


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


def _refuse_if_locked(till: Till, key: str, who: str, field: str) -> None:
    row = Setting.get_or_none(Setting.key == key)
    locked_until = row.value.get("locked_until") if row else None
    if locked_until is None:
        return
    left = dt.datetime.fromisoformat(locked_until) - till.now()
    if left > dt.timedelta(0):
        minutes = -(-int(left.total_seconds()) // 60)
        raise LockedOut(
            f"{who}连续输错次数过多, 已锁定, 请 {minutes} 分钟后再试或联系店长"
            f" (too many wrong attempts: locked for {minutes} more minutes)",
            field=field,
            locked_until=locked_until,
        )


def verify_counted(
    till: Till,
    key: str,
    who: str,
    secret: str,
    stored: str | None,
    field: str,
    n: int = SCRYPT_N,
) -> bool:
    """Check ``secret`` against ``stored`` (an scrypt hash of cost ``n``: the chain's for a
    member password), counting wrong ones under ``key``; after ``till.pin_max_failures``
    in a row raise LockedOut (naming ``who``) until the lock ends."""
    _refuse_if_locked(till, key, who, field)
    if verify_secret(secret, stored, n):
        if Setting.get_or_none(Setting.key == key) is not None:
            with till.db.atomic():
                Setting.delete().where(Setting.key == key).execute()
        return True
    cfg = till.config.till
    now = till.now()
    with till.db.atomic():
        row = Setting.get_or_none(Setting.key == key)
        failures = (row.value.get("failures", 0) if row else 0) + 1
        value: dict[str, object] = {"failures": failures, "last_at": now.isoformat()}
        if failures >= cfg.pin_max_failures:
            # the lock starts a fresh count: after it, another full round of tries
            value = {
                "failures": 0,
                "locked_until": (now + dt.timedelta(minutes=cfg.pin_lockout_minutes)).isoformat(),
            }
        Setting.insert(key=key, value=value).on_conflict_replace().execute()
    if failures >= cfg.pin_max_failures:
        _refuse_if_locked(till, key, who, field)
    return False


def _verify_pin(till: Till, staff: Staff, pin: str, field: str) -> bool:
    return verify_counted(
        till,
        f"pin_failures:{staff.code}",
        f"员工 {staff.code} 的PIN",
        pin,
        staff.pin_hash,
        field,
        till.config.security.scrypt_n,
    )


def sign_in(till: Till, code: object, pin: object) -> tuple[str, SignedIn]:
    if not isinstance(code, str) or not code:
        raise ValidationError("staff code is required", field="staff_code")
    pin = _check_pin(pin)
    staff = Staff.get_or_none((Staff.code == code) & (Staff.active == True))  # noqa: E712
    if staff is None or not _verify_pin(till, staff, pin, "staff_code"):
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
    if not isinstance(code, str) or not code:
        raise ValidationError(
            f"{action}需要店长授权: 请填写店长编号 (manager.code is required)", field="manager.code"
        )
    if not isinstance(pin, str) or not pin.isdigit() or not 4 <= len(pin) <= 8:
        raise ValidationError(
            f"{action}需要店长授权: 店长PIN须为4到8位数字 (manager.pin must be 4-8 digits)",
            field="manager.pin",
        )
    manager = Staff.get_or_none((Staff.code == code) & (Staff.active == True))  # noqa: E712
    if (
        manager is None
        or manager.role != "manager"
        or not _verify_pin(till, manager, pin, "manager")
    ):
        raise Forbidden(
            f"{action}需要店长授权: 店长编号或PIN错误 (wrong manager code or PIN)", field="manager"
        )
    return SignedIn(manager.code, manager.name, manager.role)
