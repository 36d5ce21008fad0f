"""Binding a phone on the member's page: a 6-digit code sent by SMS, then a signed cookie.

Rules (docs/member-page.md): a code lives ``CODE_MINUTES``; it is kept only as an HMAC
under the code key (hq/portal/keys.py), the phone only as its lookup hash. A member gets
a code at most every ``RESEND_SECONDS`` and ``PER_HOUR`` an hour; a phone number gets
``PER_HOUR`` an hour across members. ``MAX_TRIES`` wrong codes lock the member's binding
for ``LOCK_MINUTES``.

A typed phone that is not the member's (compared as lookup hashes, as HQ compares phones
for stores) gets the same answer as the right one and no SMS: the page says "if this is
the member's number, a code is on its way", so an edited form learns nothing. Its row is
kept (with the hash of a code nobody was told) so the limits count it.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import secrets
import time

import peewee as pw

from core.errors import Forbidden, HuiyuanError, ValidationError
from core.phone import normalise_phone
from hq.channels.sms import SmsGateway
from hq.models import Member, MemberPageCode
from hq.portal.keys import PortalKeys

log = logging.getLogger("hq.portal")

CODE_MINUTES = 5
RESEND_SECONDS = 60
PER_HOUR = 5
MAX_TRIES = 5
LOCK_MINUTES = 30
SESSION_DAYS = 180


class TooManyCodes(HuiyuanError):
    code = 31
    http_status = 429


class BindLocked(Forbidden):
    pass


def _code_hash(keys: PortalKeys, row_member: str, code: str) -> str:
    return keys.mac(keys.code, row_member, code)


def _locked(member_id: str, now: dt.datetime) -> bool:
    return (
        MemberPageCode.select()
        .where((MemberPageCode.member_id == member_id) & (MemberPageCode.locked_until > now))
        .exists()
    )


def _refuse_if_locked(member_id: str, now: dt.datetime) -> None:
    if _locked(member_id, now):
        raise BindLocked(
            f"验证码错误次数过多, 请{LOCK_MINUTES}分钟后再试 (binding locked after {MAX_TRIES} wrong codes)"
        )


def request_code(
    db: pw.Database,
    keys: PortalKeys,
    gateway: SmsGateway | None,
    member: Member,
    typed_phone: str,
    now: dt.datetime,
) -> None:
    """Send a code to ``typed_phone`` if it is ``member``'s phone (else send nothing, say
    the same). Raises ValidationError (not a phone), BindLocked, TooManyCodes, or
    hq.channels.sms.SmsSendFailed."""
    phone = normalise_phone(typed_phone)
    if gateway is None:
        raise HuiyuanError("短信服务未开通, 请到门店办理 (no SMS gateway is configured)")
    _refuse_if_locked(member.id, now)
    phone_hash = keys.phone_hash(phone)
    hour_ago = now - dt.timedelta(hours=1)
    recent = MemberPageCode.select().where(MemberPageCode.created_at > hour_ago)
    mine = recent.where(MemberPageCode.member_id == member.id)
    newest = mine.order_by(MemberPageCode.created_at.desc()).first()
    if newest is not None and (now - newest.created_at).total_seconds() < RESEND_SECONDS:
        raise TooManyCodes(
            f"验证码已发送, 请{RESEND_SECONDS}秒后再获取 (one code per {RESEND_SECONDS} s)"
        )
    if (
        mine.count() >= PER_HOUR
        or recent.where(MemberPageCode.phone_hash == phone_hash).count() >= PER_HOUR
    ):
        raise TooManyCodes(f"获取验证码过于频繁, 请一小时后再试 (at most {PER_HOUR} codes an hour)")
    matches = bool(member.phone) and hmac.compare_digest(
        keys.phone_hash(normalise_phone(member.phone)), phone_hash
    )
    code = f"{secrets.randbelow(1_000_000):06d}"
    with db.atomic():
        row = MemberPageCode.create(
            member_id=member.id,
            phone_hash=phone_hash,
            code_hash=_code_hash(keys, member.id, code if matches else secrets.token_hex(16)),
            created_at=now,
            expires_at=now + dt.timedelta(minutes=CODE_MINUTES),
        )
    if not matches:
        log.info("member page code for %s: phone does not match, nothing sent", member.id)
        return
    text = f"【慧员】您的会员验证码是 {code}, {CODE_MINUTES}分钟内有效。如非本人操作请忽略。"
    try:
        gateway.send(phone, text, idempotency_key=f"member-page-{row.id}-{int(time.time())}")
    except HuiyuanError:
        # the code never arrived: it cannot be used, but the attempt still counts
        MemberPageCode.update(used=True).where(MemberPageCode.id == row.id).execute()
        raise
    log.info("member page code for %s sent", member.id)


def check_code(
    db: pw.Database, keys: PortalKeys, member: Member, typed: str, now: dt.datetime
) -> None:
    """Accept ``typed`` as the member's newest live code (it is used up), or raise:
    ValidationError (wrong or expired code), BindLocked (the fifth wrong try, or locked)."""
    _refuse_if_locked(member.id, now)
    code = (typed or "").strip()
    row = (
        MemberPageCode.select()
        .where(
            (MemberPageCode.member_id == member.id)
            & (MemberPageCode.used == False)  # noqa: E712 - peewee's comparison
            & (MemberPageCode.expires_at > now)
        )
        .order_by(MemberPageCode.created_at.desc())
        .first()
    )
    if row is None:
        raise ValidationError(
            "验证码已过期, 请重新获取 (no live code: ask for a new one)", field="code"
        )
    if (
        len(code) == 6
        and code.isdigit()
        and hmac.compare_digest(row.code_hash, _code_hash(keys, member.id, code))
    ):
        MemberPageCode.update(used=True).where(MemberPageCode.id == row.id).execute()
        return
    with db.atomic():
        tries = row.tries + 1
        locked_until = now + dt.timedelta(minutes=LOCK_MINUTES) if tries >= MAX_TRIES else None
        MemberPageCode.update(
            tries=tries, locked_until=locked_until, used=tries >= MAX_TRIES
        ).where(MemberPageCode.id == row.id).execute()
    if locked_until is not None:
        log.info("member page binding for %s locked after %s wrong codes", member.id, tries)
        _refuse_if_locked(member.id, now)
    raise ValidationError(
        f"验证码不正确, 还可以再试{MAX_TRIES - tries}次 (wrong code, {MAX_TRIES - tries} tries left)",
        field="code",
    )


def session_cookie(keys: PortalKeys, member_id: str, now: dt.datetime) -> str:
    """The cookie value that says this browser bound ``member_id``'s phone."""
    expires = int((now + dt.timedelta(days=SESSION_DAYS)).replace(tzinfo=dt.UTC).timestamp())
    return f"{member_id}.{expires}.{keys.mac(keys.session, member_id, str(expires))}"


def session_member(keys: PortalKeys, value: str | None, now: dt.datetime) -> str | None:
    """The member id a session cookie was signed for, if it is genuine and live."""
    if not value or len(value) > 200:
        return None
    parts = value.rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    member_id, expires, mac = parts
    if not hmac.compare_digest(mac, keys.mac(keys.session, member_id, expires)):
        return None
    if int(expires) <= now.replace(tzinfo=dt.UTC).timestamp():
        return None
    return member_id
