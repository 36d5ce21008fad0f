"""HQ staff accounts: created on the CLI for the first admin, then on the users page.

Passwords are hashed with scrypt (core.passwords; N = 2**15, r = 8, p = 1: 32 MiB and
about 0.1 s a check), never logged, never returned. After ``MAX_FAILURES`` wrong
passwords in a row an account is locked for ``LOCK_FOR``; the lock and every role
change, reset and deactivation are written to the audit log.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets

import peewee as pw

from core.errors import NotFound, ValidationError
from core.passwords import hash_secret, verify_secret
from hq import audit
from hq.access.roles import check_scope, role_named
from hq.models import HqSession, HqUser, utcnow

PASSWORD_N = 2**15
MIN_PASSWORD = 10
MAX_PASSWORD = 128
MAX_FAILURES = 5
LOCK_FOR = dt.timedelta(minutes=15)
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,31}$")

# a wrong username costs the same scrypt as a wrong password: the timing does not tell
# which usernames exist
_DUMMY_HASH: list[str] = []


class SignInRefused(ValidationError):
    """Wrong username or password, or a locked or inactive account: one message for all."""

    http_status = 401
    slug = "sign_in_refused"


def check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValidationError(
            f"密码须为 {MIN_PASSWORD}-{MAX_PASSWORD} 个字符"
            f" (password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters)",
            field="password",
        )
    if password.isdigit() or len(set(password)) < 4:
        raise ValidationError(
            "密码太简单 (password too simple: not only digits, at least 4 different characters)",
            field="password",
        )
    return password


def check_username(username: str) -> str:
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        raise ValidationError(
            "用户名须为 2-32 位字母、数字或 . _ - (username: 2-32 letters, digits, . _ -)",
            field="username",
        )
    return username


def generate_password() -> str:
    """A password to hand over once (the demo's admin, reset-password without one)."""
    return secrets.token_urlsafe(12)


def get_user(username: str) -> HqUser:
    user = HqUser.get_or_none(HqUser.username == username)
    if user is None:
        raise NotFound(f"账号不存在: {username}", field="username")
    return user


def add_user(
    db: pw.Database,
    username: str,
    password: str,
    role: str,
    *,
    scope: str | None = None,
    display_name: str = "",
    by: str,
    now: dt.datetime | None = None,
) -> HqUser:
    now = now or utcnow()
    check_username(username)
    the_role = role_named(role)
    scope = check_scope(the_role, scope)
    password_hash = hash_secret(check_password(password), PASSWORD_N)
    with db.atomic():
        if HqUser.get_or_none(HqUser.username == username) is not None:
            raise ValidationError(f"账号已存在: {username}", field="username")
        user = HqUser.create(
            username=username,
            display_name=display_name[:64],
            role=the_role.name,
            scope=scope,
            password_hash=password_hash,
            created_at=now,
            updated_at=now,
            password_changed_at=now,
        )
        audit.record(db, by, "user.add", username, at=now, role=the_role.name, scope=scope)
    return user


def set_role(
    db: pw.Database,
    username: str,
    role: str,
    *,
    scope: str | None = None,
    by: str,
    now: dt.datetime | None = None,
) -> HqUser:
    now = now or utcnow()
    the_role = role_named(role)
    scope = check_scope(the_role, scope)
    with db.atomic():
        user = get_user(username)
        before = (user.role, user.scope)
        user.role, user.scope, user.updated_at = the_role.name, scope, now
        user.save()
        audit.record(
            db,
            by,
            "user.set_role",
            username,
            at=now,
            role=the_role.name,
            scope=scope,
            was_role=before[0],
            was_scope=before[1],
        )
    return user


def reset_password(
    db: pw.Database, username: str, password: str, *, by: str, now: dt.datetime | None = None
) -> HqUser:
    """A new password; the account is unlocked and every session it had is ended."""
    now = now or utcnow()
    password_hash = hash_secret(check_password(password), PASSWORD_N)
    with db.atomic():
        user = get_user(username)
        user.password_hash = password_hash
        user.failed_logins, user.locked_until = 0, None
        user.password_changed_at = user.updated_at = now
        user.save()
        end_sessions_of(username, now)
        audit.record(db, by, "user.reset_password", username, at=now)
    return user


def set_active(
    db: pw.Database, username: str, active: bool, *, by: str, now: dt.datetime | None = None
) -> HqUser:
    now = now or utcnow()
    with db.atomic():
        user = get_user(username)
        user.active, user.updated_at = active, now
        user.save()
        if not active:
            end_sessions_of(username, now)
        audit.record(db, by, "user.activate" if active else "user.deactivate", username, at=now)
    return user


def end_sessions_of(username: str, now: dt.datetime) -> int:
    return (
        HqSession.update(ended_at=now)
        .where((HqSession.username == username) & HqSession.ended_at.is_null())
        .execute()
    )


def authenticate(
    db: pw.Database, username: str, password: str, now: dt.datetime | None = None
) -> HqUser:
    """The account, if the password is right and it is active and not locked; otherwise
    ``SignInRefused`` with one message, whatever was wrong. The ``MAX_FAILURES``-th wrong
    password in a row locks the account for ``LOCK_FOR`` (audited)."""
    now = now or utcnow()
    refused = SignInRefused("用户名或密码错误, 或账号已锁定 (wrong username or password)")
    user = HqUser.get_or_none(HqUser.username == username) if isinstance(username, str) else None
    if user is None or not isinstance(password, str) or len(password) > MAX_PASSWORD:
        if not _DUMMY_HASH:
            _DUMMY_HASH.append(hash_secret(generate_password(), PASSWORD_N))
        verify_secret(str(password)[:MAX_PASSWORD], _DUMMY_HASH[0], PASSWORD_N)
        raise refused
    locked = user.locked_until is not None and user.locked_until > now
    good = verify_secret(password, user.password_hash, PASSWORD_N)
    with db.atomic():
        if good and user.active and not locked:
            HqUser.update(failed_logins=0, locked_until=None, last_login_at=now).where(
                HqUser.username == user.username
            ).execute()
            return user
        if not good and not locked:
            failures = user.failed_logins + 1
            lock = now + LOCK_FOR if failures >= MAX_FAILURES else None
            HqUser.update(failed_logins=0 if lock else failures, locked_until=lock).where(
                HqUser.username == user.username
            ).execute()
            if lock is not None:
                audit.record(
                    db,
                    "hq",
                    "user.locked",
                    user.username,
                    at=now,
                    failures=failures,
                    until=lock.isoformat(timespec="seconds"),
                )
    raise refused
