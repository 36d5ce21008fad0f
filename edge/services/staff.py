"""Staff: PIN sign-in, sessions, and manager approval.

A PIN of four digits is guessed in at most 10,000 tries, so wrong PINs are counted
per staff code (at sign-in and when a manager's PIN is given to approve an action):
after ``till.pin_max_failures`` in a row the code is locked for
``till.pin_lockout_minutes``, even for the right PIN. The count lives in the
database, so restarting the till server does not reset it; a right PIN resets it.

Each attempt is counted before its PIN is checked, in one write transaction, so
concurrent attempts cannot all slip under the limit. An unknown staff code is checked
against a dummy hash of the same cost and counted the same way, so its refusal takes
as long and reads the same (codes cannot be enumerated). Wrong PINs are also counted
per client address over every code (``till.address_max_failures`` within
``till.address_lockout_minutes`` lock the address for that long), so one PIN cannot be
tried on every code in turn.

A session ends ``till.session_idle_minutes`` after its last request and
``till.session_hours`` after sign-in however busy (``session_staff``); a manager ends
them all, or one staff member's (``end_sessions``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import secrets
from contextvars import ContextVar
from dataclasses import dataclass

from core.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationError
from core.protocol import SCRYPT_N
from edge.models import Setting, Staff, StaffSession
from edge.security import hash_secret, verify_secret
from edge.services.context import Till

ROLES = ("cashier", "manager")


class LockedOut(Forbidden):
    """Too many wrong PINs in a row for one staff code."""

    http_status = 429
    slug = "locked"

    def retry_after(self, now: dt.datetime) -> int:
        """Whole seconds until the lock ends (at least 1), for a Retry-After header."""
        until = dt.datetime.fromisoformat(str(self.details["locked_until"]))
        return max(1, math.ceil((until - now).total_seconds()))


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


@dataclass(frozen=True)
class _Limit:
    """Wrong attempts counted under ``key``: ``most`` of them lock it for ``minutes``.
    ``window``: minutes after the first counted attempt that the count starts afresh
    (None: it starts afresh only on a right one)."""

    key: str
    who: str
    most: int
    minutes: int
    window: int | None = None


def _locked(limit: _Limit, locked_until: str, now: dt.datetime, field: str) -> LockedOut:
    left = dt.datetime.fromisoformat(locked_until) - now
    minutes = max(1, -(-int(left.total_seconds()) // 60))
    return LockedOut(
        f"{limit.who}连续输错次数过多, 已锁定, 请 {minutes} 分钟后再试或联系店长"
        f" (too many wrong attempts: locked for {minutes} more minutes)",
        field=field,
        locked_until=locked_until,
    )


def _lock_value(limit: _Limit, now: dt.datetime) -> dict[str, object]:
    """``limit.key`` locked for ``limit.minutes`` from ``now``; the lock starts a fresh
    count: after it, another full round of tries."""
    until = (now + dt.timedelta(minutes=limit.minutes)).isoformat()
    return {"failures": 0, "locked_until": until}


def _reserve(till: Till, limits: list[_Limit], field: str) -> list[int]:
    """Count this attempt under every limit before it is checked, in one write
    transaction (BEGIN IMMEDIATE), so concurrent attempts are counted one after another
    and at most ``most`` of them are ever checked; raise LockedOut for a locked key (and
    lock a key whose count is used up). The counts this attempt holds, per limit."""
    now = till.now()
    refusal: LockedOut | None = None
    counts = []
    values: dict[str, dict[str, object]] = {}
    with till.db.atomic("IMMEDIATE"):
        for limit in limits:
            row = Setting.get_or_none(Setting.key == limit.key)
            value = dict(row.value) if row else {}
            locked_until = value.get("locked_until")
            if locked_until and dt.datetime.fromisoformat(locked_until) > now:
                refusal = refusal or _locked(limit, locked_until, now, field)
                continue
            since = value.get("since")
            if locked_until or (
                limit.window is not None
                and since
                and dt.datetime.fromisoformat(since) + dt.timedelta(minutes=limit.window) <= now
            ):
                value = {}  # a lock that ended, or a window that passed: a fresh count
            failures = value.get("failures", 0)
            if failures >= limit.most:
                value = _lock_value(limit, now)
                refusal = refusal or _locked(limit, str(value["locked_until"]), now, field)
            else:
                counts.append(failures + 1)
                value = {"failures": failures + 1, "since": since or now.isoformat()}
            values[limit.key] = value
        for key, value in values.items():
            # a refused attempt is not checked, so it counts against nothing else (else a
            # locked address could go on locking every staff code)
            if refusal is None or "locked_until" in value:
                Setting.insert(key=key, value=value).on_conflict_replace().execute()
    if refusal is not None:
        raise refusal
    return counts


def verify_counted(
    till: Till,
    key: str,
    who: str,
    secret: str,
    stored: str | None,
    field: str,
    n: int = SCRYPT_N,
    also: _Limit | None = None,
) -> bool:
    """Check ``secret`` against ``stored`` (an scrypt hash of cost ``n``: the chain's for a
    member password), counting wrong ones under ``key``; after ``till.pin_max_failures``
    in a row raise LockedOut (naming ``who``) until the lock ends. The attempt is counted
    before it is checked (``_reserve``); a right one clears the count under ``key`` (not
    ``also``'s: an address's count only ends with its window)."""
    cfg = till.config.till
    limits = [_Limit(key, who, cfg.pin_max_failures, cfg.pin_lockout_minutes)]
    if also is not None:
        limits.append(also)
    counts = _reserve(till, limits, field)
    if verify_secret(secret, stored, n):
        with till.db.atomic("IMMEDIATE"):
            Setting.delete().where(Setting.key == key).execute()
            if also is not None:  # not a wrong one: give back what was reserved
                row = Setting.get_or_none(Setting.key == also.key)
                if row is not None and row.value.get("failures"):
                    value = row.value | {"failures": row.value["failures"] - 1}
                    Setting.update(value=value).where(Setting.key == also.key).execute()
        return True
    used_up = [lim for lim, count in zip(limits, counts, strict=True) if count >= lim.most]
    if used_up:
        now = till.now()
        locks = {limit.key: _lock_value(limit, now) for limit in used_up}
        with till.db.atomic():
            for key, value in locks.items():
                Setting.insert(key=key, value=value).on_conflict_replace().execute()
        raise _locked(used_up[0], str(locks[used_up[0].key]["locked_until"]), now, field)
    return False


# The address of the request being served (set by the till API for each request): wrong
# PINs are counted per address too, so one PIN cannot be tried on every staff code.
client_address: ContextVar[str | None] = ContextVar("till_client_address", default=None)

_dummy_hashes: dict[int, str] = {}


def warm_up(till: Till) -> None:
    """Make the dummy hash before the first request, so the first unknown code costs no more."""
    _dummy_hash(till.config.security.scrypt_n)


def _dummy_hash(n: int) -> str:
    """A PIN hash of cost ``n`` no PIN matches: an unknown staff code is checked against it,
    so its refusal costs what a known code's does (codes cannot be told apart by time)."""
    if n not in _dummy_hashes:
        _dummy_hashes[n] = hash_secret(secrets.token_hex(16), n)
    return _dummy_hashes[n]


def _verify_pin(till: Till, code: str, staff: Staff | None, pin: str, field: str) -> bool:
    """Check a PIN given for staff ``code`` (``staff``: its active row, None for an unknown
    code, which is checked against a dummy hash and counted the same way)."""
    n = till.config.security.scrypt_n
    cfg = till.config.till
    address = client_address.get()
    also = None
    if address and cfg.address_max_failures:
        also = _Limit(
            f"pin_address_failures:{address}",
            f"来自 {address} 的PIN",
            cfg.address_max_failures,
            cfg.address_lockout_minutes,
            cfg.address_lockout_minutes,
        )
    right = verify_counted(
        till,
        f"pin_failures:{code}",
        f"员工 {code} 的PIN",
        pin,
        staff.pin_hash if staff is not None else _dummy_hash(n),
        field,
        n,
        also,
    )
    return right and staff is not None


def sign_in(till: Till, code: object, pin: object) -> tuple[str, SignedIn]:
    if not isinstance(code, str) or not code:
        raise ValidationError("请输入员工编号 (staff code is required)", field="staff_code")
    pin = _check_pin(pin)
    staff = Staff.get_or_none((Staff.code == code) & (Staff.active == True))  # noqa: E712
    if not _verify_pin(till, code, staff, pin, "staff_code") or staff is None:
        raise Forbidden("员工编号或PIN错误 (wrong staff code or PIN)", field="pin")
    token = secrets.token_urlsafe(24)
    now = till.now()
    with till.db.atomic():
        StaffSession.create(
            token_hash=_token_hash(token),
            staff_code=staff.code,
            created_at=now.isoformat(),
            expires_at=_expiry(till, now, now).isoformat(),
        )
    return token, SignedIn(staff.code, staff.name, staff.role)


# A session ends ``till.session_hours`` after sign-in however busy (the absolute end,
# from ``created_at``), and ``till.session_idle_minutes`` after its last request.
# ``expires_at`` is when it ends if no other request comes: the earlier of the two.
# A request moves it on only when that gains at least IDLE_STEP, so a busy screen writes
# once a minute, not on every request (the idle limit is kept to the minute).
IDLE_STEP = dt.timedelta(minutes=1)


def _absolute_end(till: Till, created_at: dt.datetime) -> dt.datetime:
    return created_at + dt.timedelta(hours=till.config.till.session_hours)


def _expiry(till: Till, created_at: dt.datetime, last_request: dt.datetime) -> dt.datetime:
    end = _absolute_end(till, created_at)
    idle = till.config.till.session_idle_minutes
    return min(end, last_request + dt.timedelta(minutes=idle)) if idle else end


# Every till request makes this check: one statement written out, not two peewee queries
# built per request (a third of a millisecond, as much as a sale's own statements).
SESSION_SQL = (
    "SELECT s.expires_at, s.created_at, f.code, f.name, f.role, f.active FROM staff_session"
    " AS s LEFT JOIN staff AS f ON f.code = s.staff_code WHERE s.token_hash = ?"
)
TOUCH_SQL = "UPDATE staff_session SET expires_at = ? WHERE token_hash = ? AND expires_at = ?"


def session_staff(till: Till, token: str | None, touch: bool = True) -> SignedIn:
    """The staff member signed in with ``token``, or Unauthorized (401) naming why.
    ``touch``: this request is someone at the till, so the idle limit starts again."""
    if not token:
        raise Unauthorized("请先登录 (sign in first)", field="token")
    token_hash = _token_hash(token)
    row = till.db.execute_sql(SESSION_SQL, (token_hash,)).fetchone()
    if row is None:
        raise Unauthorized(
            "登录已失效 (已退出或被店长结束), 请重新登录 (session ended or unknown)", field="token"
        )
    expires_at, created_at, code, name, role, active = row
    now = till.now()
    expires, created = dt.datetime.fromisoformat(expires_at), dt.datetime.fromisoformat(created_at)
    if expires < now or _absolute_end(till, created) < now:
        raise Unauthorized(_expired_message(till, created, now), field="token")
    if code is None or not active:
        raise Unauthorized("员工已停用 (staff disabled)", field="token")
    if touch:
        later = _expiry(till, created, now)
        if later - expires >= IDLE_STEP:
            with till.db.atomic():
                till.db.execute_sql(TOUCH_SQL, (later.isoformat(), token_hash, expires_at))
    return SignedIn(code, name, role)


def _expired_message(till: Till, created: dt.datetime, now: dt.datetime) -> str:
    cfg = till.config.till
    if _absolute_end(till, created) < now:
        return (
            f"登录已过期 (超过 {cfg.session_hours} 小时), 请重新登录"
            f" (session expired: {cfg.session_hours} hours since sign-in)"
        )
    return (
        f"登录已过期 ({cfg.session_idle_minutes} 分钟未操作), 请重新登录"
        f" (session expired: {cfg.session_idle_minutes} minutes without a request)"
    )


def sign_out(till: Till, token: str) -> None:
    with till.db.atomic():
        StaffSession.delete().where(StaffSession.token_hash == _token_hash(token)).execute()


def end_sessions(till: Till, staff_code: str | None = None) -> int:
    """End every staff session on this till, or only ``staff_code``'s; how many ended.
    (A manager's reply to a lost PIN, a screen left signed in, or a staff member leaving.)"""
    with till.db.atomic():
        if staff_code is not None:
            if not Staff.get_or_none(Staff.code == staff_code):
                raise NotFound(f"员工 {staff_code} 不存在", field="staff_code")
            return StaffSession.delete().where(StaffSession.staff_code == staff_code).execute()
        return StaffSession.delete().execute()


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
    # the PIN is checked whoever the code names, so no code is told apart by time
    if not _verify_pin(till, code, manager, pin, "manager") or manager.role != "manager":
        raise Forbidden(
            f"{action}需要店长授权: 店长编号或PIN错误 (wrong manager code or PIN)", field="manager"
        )
    return SignedIn(manager.code, manager.name, manager.role)
