"""Console sessions and integration tokens, and the ``Principal`` each one acts as.

A session cookie carries 32 random bytes; the database keeps only their SHA-256, with
the session's CSRF token, its last use and its expiry (``IDLE`` after the last request,
at most ``LONGEST`` after sign-in). A bearer token reads ``hyt_<id>_<secret>``: the id
names it in lists and the audit log, only the secret's SHA-256 is stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets

import peewee as pw

from core.errors import NotFound, ValidationError
from hq import audit
from hq.access.roles import ROLES, Principal, check_scope, role_named
from hq.models import ApiToken, HqSession, HqUser, Store, utcnow

IDLE = dt.timedelta(hours=2)
LONGEST = dt.timedelta(hours=12)
TOUCH_EVERY = dt.timedelta(minutes=1)  # last_seen is written at most this often
TOKEN_RE = re.compile(r"^hyt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def principal_for(
    name: str, role_name: str, scope: str | None, kind: str, display_name: str = "", csrf: str = ""
) -> Principal:
    role = ROLES[role_name]
    stores: frozenset[str] | None = None
    if role.scoped == "store":
        stores = frozenset({scope}) if scope else frozenset()
    elif role.scoped == "area":
        stores = frozenset(s.code for s in Store.select(Store.code).where(Store.area == scope))
    return Principal(
        name=name,
        role=role,
        scope=scope,
        stores=stores,
        kind=kind,
        display_name=display_name or name,
        csrf=csrf,
    )


# ---- sessions


def start_session(user: HqUser, now: dt.datetime | None = None) -> tuple[str, HqSession]:
    """A new session for a user who has just signed in: (cookie value, row)."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    row = HqSession.create(
        token_hash=_digest(token),
        username=user.username,
        csrf=secrets.token_urlsafe(24),
        created_at=now,
        last_seen=now,
        expires_at=now + IDLE,  # pushed on by each request, up to created_at + LONGEST
    )
    return token, row


def session_principal(token: str | None, now: dt.datetime | None = None) -> Principal | None:
    """The principal of a live session cookie, its idle expiry pushed on; else None."""
    if not token or len(token) > 128:
        return None
    now = now or utcnow()
    row = HqSession.get_or_none(HqSession.token_hash == _digest(token))
    if row is None or row.ended_at is not None or row.expires_at <= now:
        return None
    user = HqUser.get_or_none(HqUser.username == row.username)
    if user is None or not user.active or user.role not in ROLES:
        return None
    if now - row.last_seen >= TOUCH_EVERY:
        HqSession.update(last_seen=now, expires_at=min(now + IDLE, row.created_at + LONGEST)).where(
            HqSession.token_hash == row.token_hash
        ).execute()
    return principal_for(
        user.username, user.role, user.scope, "session", user.display_name, row.csrf
    )


def end_session(token: str | None, now: dt.datetime | None = None) -> None:
    if token and len(token) <= 128:
        HqSession.update(ended_at=now or utcnow()).where(
            (HqSession.token_hash == _digest(token)) & HqSession.ended_at.is_null()
        ).execute()


def csrf_matches(principal: Principal, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(principal.csrf.encode(), str(sent).encode())


# ---- integration tokens


def issue_token(
    db: pw.Database,
    name: str,
    role: str,
    *,
    scope: str | None = None,
    days: int | None = None,
    by: str,
    now: dt.datetime | None = None,
) -> tuple[str, ApiToken]:
    """A new bearer token: (the token, shown this once; its row)."""
    now = now or utcnow()
    the_role = role_named(role)
    scope = check_scope(the_role, scope)
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise ValidationError("a token needs a name of 1-64 characters", field="name")
    if days is not None and not 1 <= days <= 3650:
        raise ValidationError("days must be 1..3650", field="days")
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    with db.atomic():
        row = ApiToken.create(
            token_id=token_id,
            name=name,
            token_hash=_digest(secret),
            role=the_role.name,
            scope=scope,
            created_by=by,
            created_at=now,
            expires_at=now + dt.timedelta(days=days) if days else None,
        )
        audit.record(db, by, "token.issue", f"token:{token_id}", at=now, role=role, scope=scope)
    return f"hyt_{token_id}_{secret}", row


def revoke_token(
    db: pw.Database, token_id: str, *, by: str, now: dt.datetime | None = None
) -> ApiToken:
    now = now or utcnow()
    with db.atomic():
        row = ApiToken.get_or_none(ApiToken.token_id == token_id)
        if row is None:
            raise NotFound(f"令牌不存在: {token_id}", field="token_id")
        if row.revoked_at is None:
            row.revoked_at = now
            row.save()
            audit.record(db, by, "token.revoke", f"token:{token_id}", at=now)
    return row


def token_principal(header: str | None, now: dt.datetime | None = None) -> Principal | None:
    """The principal of ``Authorization: Bearer hyt_...``, if the token is live."""
    if not header or not header.startswith("Bearer "):
        return None
    match = TOKEN_RE.match(header[len("Bearer ") :].strip())
    if match is None:
        return None
    now = now or utcnow()
    row = ApiToken.get_or_none(ApiToken.token_id == match.group(1))
    if row is None or not hmac.compare_digest(row.token_hash, _digest(match.group(2))):
        return None
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    if row.role not in ROLES:
        return None
    if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
        ApiToken.update(last_used_at=now).where(ApiToken.token_id == row.token_id).execute()
    return principal_for(f"token:{row.token_id}", row.role, row.scope, "token", row.name)


def list_tokens() -> list[ApiToken]:
    return list(ApiToken.select().order_by(ApiToken.created_at.desc()))
