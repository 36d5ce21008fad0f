"""Unsubscribing (docs/member-page.md "Unsubscribing"): the member turns marketing off,
per channel or all at once, without signing in.

- The page ``/m/<token>/unsubscribe``: the link every campaign message carries
  (hq/portal/links.py ``unsubscribe_url``). GET shows the channels (短信, 微信, 电话)
  with the answer in force; POST (the page's CSRF token, as the bind forms) turns one
  channel or all of them off. An edited, foreign or expired link gets the portal's one
  refusal page, so a link cannot unsubscribe anyone but the member it was signed for.
- ``apply_sms_reply``: a reply "TD", "T" or "退订" to a campaign SMS turns SMS off. The
  gateway's inbound callback would call it; HQ exposes no route for it (each gateway
  signs its callbacks its own way, and an unsigned route would let anyone unsubscribe
  any phone), so it runs from ``huiyuan-hq sms-reply`` or an integration's own relay.

Each change is a consent row with source "member" (the history is kept: the newest row
is in force) and an audit row ``consent.unsubscribe``, in one transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import unicodedata
from collections.abc import Iterable
from typing import Any

import peewee as pw
from flask import current_app, request

from core.errors import HuiyuanError, NotFound, ValidationError
from core.phone import normalise_phone
from core.protocol import CONSENT_CHANNELS
from hq import audit, privacy
from hq.models import Member, utcnow
from hq.portal.pages import _csrf_ok, _member_of, _refused, _render, bp

log = logging.getLogger("hq.portal")

CHANNEL_NAMES = {"sms": "短信", "wechat": "微信公众号消息", "call": "电话回访与优惠来电"}
REPLY_WORDS = frozenset({"TD", "T", "退订"})


def unsubscribe(
    db: pw.Database, member_id: str, channels: Iterable[str], via: str, now: dt.datetime
) -> list[str]:
    """Turn ``channels`` off for the member (the survivor of a merge); the channels that
    were on and are now off (none: nothing written). ``via``: page | sms-reply."""
    wanted = list(dict.fromkeys(channels))
    unknown = [c for c in wanted if c not in CONSENT_CHANNELS]
    if unknown or not wanted:
        raise ValidationError(f"unknown channel {unknown[:1] or wanted}", field="channel")
    with db.atomic():
        state = privacy.consent_state(member_id)
        on = [c for c in wanted if state[c]["granted"]]
        if not on:
            return []
        privacy.set_consent(
            db, member_id, dict.fromkeys(on, False), f"member:{via}", now, privacy.MEMBER_SOURCE
        )
        audit.record(
            db,
            f"member:{member_id}",
            "consent.unsubscribe",
            member_id,
            at=now,
            channels=on,
            via=via,
        )
    log.info("member %s unsubscribed from %s (%s)", member_id, on, via)
    return on


def is_unsubscribe_reply(text: str) -> bool:
    """Whether an SMS reply says 退订 (TD, T, 退订; case, spaces and full-width ignored)."""
    word = unicodedata.normalize("NFKC", text or "").strip().strip("。.!！ ").upper()
    return word in REPLY_WORDS


def apply_sms_reply(db: pw.Database, phone: str, text: str, now: dt.datetime) -> bool:
    """An SMS reply from ``phone``: when it says 退订, the member with that phone gets SMS
    turned off. True when it did; False for any other text, an unknown number or a
    member already off. The phone never reaches a log."""
    if not is_unsubscribe_reply(text):
        return False
    from hq.services import find_member

    try:
        member = find_member(normalise_phone(phone))
    except (NotFound, ValidationError):
        log.info("an unsubscribe reply from a number that is no member's: ignored")
        return False
    return bool(unsubscribe(db, member.id, ["sms"], "sms-reply", now))


# ---- the page -------------------------------------------------------------------------


def _unsubscribe_page(token: str, member: Member, status: int = 200, **notice: Any) -> Any:
    state = privacy.consent_state(member.id)
    channels = [
        {"key": c, "name": CHANNEL_NAMES[c], "on": bool(state[c]["granted"])}
        for c in CONSENT_CHANNELS
    ]
    return _render(
        "portal/unsubscribe.html",
        token,
        status,
        channels=channels,
        any_on=any(c["on"] for c in channels),
        **notice,
    )


@bp.get("/m/<token>/unsubscribe")
def unsubscribe_page(token: str) -> Any:
    member, _reason = _member_of(token, unsubscribing=True)
    if member is None:
        return _refused()
    return _unsubscribe_page(token, member)


@bp.post("/m/<token>/unsubscribe")
def unsubscribe_route(token: str) -> Any:
    member, _reason = _member_of(token, unsubscribing=True)
    if member is None:
        return _refused()
    if not _csrf_ok(token):
        return _unsubscribe_page(
            token, member, 403, error="页面已过期, 请刷新后重试 (CSRF check failed)"
        )
    choice = request.form.get("channel", "")
    if choice != "all" and choice not in CONSENT_CHANNELS:
        return _unsubscribe_page(token, member, 400, error="请选择要退订的渠道 (channel)")
    channels = list(CONSENT_CHANNELS) if choice == "all" else [choice]
    try:
        done = unsubscribe(current_app.extensions["hq_db"], member.id, channels, "page", utcnow())
    except HuiyuanError as exc:
        status = exc.http_status if 400 <= exc.http_status < 500 else 409
        return _unsubscribe_page(token, member, status, error=exc.message)
    names = "、".join(CHANNEL_NAMES[c] for c in done) or "所选渠道"
    which = "该" if len(done) <= 1 else "这些"
    return _unsubscribe_page(
        token, member, notice=f"已退订{names}, 今后不会再通过{which}渠道向您发送营销信息。"
    )
