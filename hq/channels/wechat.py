"""The WeChat channel: official-account template messages through the chain's adapter,
and the member ↔ openid binding they are addressed by (``MemberWechat``).

A send is one POST of WeChat's own template-message body

    {"touser": openid, "template_id": config.wechat_template_id,
     "url": the first http(s) link in the text (the member page), or "",
     "data": {"content": {"value": text}}, "client_msg_id": idempotency key}

to ``wechat_api_url`` with ``Authorization: Bearer <credential>`` (read from
``wechat_credentials_file``) and ``Idempotency-Key``. The URL is the chain's adapter (a
relay holding the official account's access token), not api.weixin.qq.com itself: the
access token expires every two hours and is shared by everything using the account, so
one relay keeps it. The answer is WeChat's ``{"errcode", "errmsg", "msgid"}``: errcode 0
is accepted (``msgid`` the gateway id); a nonzero errcode is ``refused`` (43004: the user
unfollowed the account; 40003: not an openid of this account; 43101: the user declined
the template) except -1 (WeChat busy: ``failed``, try again); a 4xx is refused, a 5xx or
an answer without ``msgid`` failed, no answer timeout, no connection unreachable.

Delivery reports: WeChat pushes a ``TEMPLATESENDJOBFINISH`` event per message to the
account's server; the adapter keeps them and answers the status URL with the one wire
every channel uses (hq.channels.poll_statuses): ``success`` → delivered, any failure →
failed. The template needs one keyword named ``content``.

An openid is the member's only on this official account; it is not a secret, but logs
name it by its first six characters.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import peewee as pw

from core.errors import Conflict, HuiyuanError, NotFound, ValidationError
from core.phone import normalise_phone
from core.receipt import mask_phone
from hq import audit
from hq.channels import (
    ChannelSendFailed,
    PollsStatuses,
    Sent,
    check_http,
    exchange,
    read_gateway_credential,
)
from hq.ledger import resolve_member
from hq.models import MemberWechat

log = logging.getLogger("hq.channels.wechat")

MAX_TEXT = 500
OPENID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
LINK = re.compile(r"https?://[^\s，。；、]+")
RETRY_ERRCODES = frozenset({-1})  # WeChat's "system busy": the same send may pass later
SOURCES = ("import", "portal")


class WechatSendFailed(ChannelSendFailed):
    """The adapter or WeChat did not take the template message (kinds as
    ``ChannelSendFailed``); ``errcode``: WeChat's code when it gave one, else 0."""

    label = "微信消息"
    channel = "WeChat"

    def __init__(self, kind: str, detail: str, errcode: int = 0) -> None:
        super().__init__(kind, detail)
        self.errcode = errcode


def _who(openid: str) -> str:
    return f"openid {openid[:6]}…"


@dataclass(frozen=True)
class WechatChannel(PollsStatuses):
    url: str
    credential: str
    template_id: str
    timeout: float = 5.0
    status_url: str = ""  # empty: the send URL's sibling ``status``
    name: ClassVar[str] = "wechat"
    error: ClassVar[type[ChannelSendFailed]] = WechatSendFailed

    def send(self, to: str, text: str, idempotency_key: str) -> Sent:
        """Send ``text`` to the openid ``to``; raises WechatSendFailed."""
        if not OPENID.match(to or ""):
            raise WechatSendFailed("refused", "not an openid")
        if not text or len(text) > MAX_TEXT:
            raise WechatSendFailed("refused", f"text must be 1..{MAX_TEXT} characters")
        link = LINK.search(text)
        what = f"wechat to {_who(to)} (key {idempotency_key})"
        status, answer = exchange(
            self.url,
            {
                "touser": to,
                "template_id": self.template_id,
                "url": link.group(0) if link else "",
                "data": {"content": {"value": text}},
                "client_msg_id": idempotency_key,
            },
            {"Authorization": f"Bearer {self.credential}", "Idempotency-Key": idempotency_key},
            self.timeout,
            WechatSendFailed,
            what,
        )
        check_http(status, WechatSendFailed, what)
        answer = answer if isinstance(answer, dict) else {}
        errcode = answer.get("errcode", 0)
        if not isinstance(errcode, int):
            raise WechatSendFailed("failed", "errcode is not a number")
        if errcode != 0:
            kind = "failed" if errcode in RETRY_ERRCODES else "refused"
            log.warning("%s %s: errcode %s", what, kind, errcode)
            raise WechatSendFailed(kind, f"errcode {errcode} {answer.get('errmsg', '')}", errcode)
        if answer.get("msgid") in (None, ""):
            raise WechatSendFailed("failed", "answer without msgid")
        gateway_id = str(answer["msgid"])
        log.info("%s sent (gateway id %s)", what, gateway_id)
        return Sent(idempotency_key, gateway_id)


def wechat_channel(config: Any) -> WechatChannel | None:
    """The channel an ``HqConfig`` names, or None when ``wechat_api_url`` is not set."""
    if not config.wechat_api_url:
        return None
    return WechatChannel(
        config.wechat_api_url,
        read_gateway_credential(config.wechat_credentials_path(), "wechat_credentials_file"),
        config.wechat_template_id,
        config.wechat_timeout,
        config.wechat_status_url,
    )


# ---- the binding ----------------------------------------------------------------------


def bind_openid(
    db: pw.Database,
    member_id: str,
    openid: str,
    source: str,
    now: dt.datetime,
    by: str = "system",
) -> MemberWechat:
    """Bind ``openid`` to the member (the survivor, if ``member_id`` was merged), replacing
    the member's previous openid; audited. The same pair again changes nothing. Raises
    ValidationError (not an openid, unknown source), NotFound, Conflict (the openid is
    another member's, or the member's personal data were erased)."""
    openid = (openid or "").strip()
    if not OPENID.match(openid):
        raise ValidationError(
            "openid 格式不正确 (openid: 1-64 letters, digits, _ or -)", field="openid"
        )
    if source not in SOURCES:
        raise ValidationError(f"unknown binding source {source!r}", field="source")
    with db.atomic():
        member = resolve_member(db, member_id)
        if member.status == "erased":
            raise Conflict(f"会员 {member.id} 的个人信息已删除", field="member_id")
        holder = MemberWechat.get_or_none(MemberWechat.openid == openid)
        if holder is not None and holder.member_id != member.id:
            raise Conflict(
                "该 openid 已绑定其他会员 (openid is bound to another member)", field="openid"
            )
        if holder is not None:
            return holder
        MemberWechat.delete().where(MemberWechat.member_id == member.id).execute()
        row = MemberWechat.create(member_id=member.id, openid=openid, bound_at=now, source=source)
        audit.record(db, by, "wechat.bind", member.id, at=now, source=source, openid=openid[:6])
    log.info("member %s bound to %s (%s)", member.id, _who(openid), source)
    return row


def unbind_openid(db: pw.Database, member_id: str, by: str, now: dt.datetime) -> bool:
    """Forget the member's openid (the survivor's); audited. False when none was bound."""
    with db.atomic():
        member = resolve_member(db, member_id)
        gone = MemberWechat.delete().where(MemberWechat.member_id == member.id).execute()
        if gone:
            audit.record(db, by, "wechat.unbind", member.id, at=now)
    log.info("member %s: openid %s", member.id, "unbound" if gone else "was not bound")
    return bool(gone)


def openid_of(member_id: str) -> str | None:
    """The openid a template message to the member is addressed to, if bound."""
    row = MemberWechat.get_or_none(MemberWechat.member_id == member_id)
    return row.openid if row is not None else None


def openids_of(member_ids: list[str]) -> dict[str, str]:
    """The openids of those of ``member_ids`` that have one (one query a thousand ids):
    what a send batch addresses its WeChat messages to."""
    out: dict[str, str] = {}
    ids = list(dict.fromkeys(member_ids))
    for start in range(0, len(ids), 1000):
        rows = MemberWechat.select(MemberWechat.member_id, MemberWechat.openid).where(
            MemberWechat.member_id.in_(ids[start : start + 1000])
        )
        out.update(rows.tuples())
    return out


# the CSV's column names (case and spaces ignored), English or as an export from the OA
COLUMNS = {
    "phone": "phone",
    "手机号": "phone",
    "手机": "phone",
    "member_id": "member_id",
    "member": "member_id",
    "会员id": "member_id",
    "会员编号": "member_id",
    "openid": "openid",
}


@dataclass
class ImportResult:
    loaded: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (CSV line, message)


def _member_of_row(row: dict[str, str]) -> str:
    phone, member_id = row.get("phone", "").strip(), row.get("member_id", "").strip()
    if bool(phone) == bool(member_id):
        raise ValidationError("须填写手机号或会员编号其中之一 (give a phone or a member id)")
    if member_id:
        return resolve_member(MemberWechat._meta.database, member_id, lock=False).id
    from hq.services import find_member

    try:
        return find_member(normalise_phone(phone)).id
    except (NotFound, ValidationError):
        # the message must not repeat the number: the masked form only
        raise NotFound(f"手机号 {mask_phone(phone)} 无此会员 (no member with this phone)") from None


def import_openids(
    db: pw.Database, text: str, by: str, now: dt.datetime, source: str = "import"
) -> ImportResult:
    """Bind the openids a CSV lists (a header row naming ``openid`` and ``phone`` or
    ``member_id``). Each good row is bound in its own transaction; a bad row is reported
    with its line number and does not stop the others. No phone appears in a message."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if header is None:
        raise ValidationError("文件为空 (the CSV is empty)", field="file")
    names = [COLUMNS.get(h.strip().lower().replace(" ", "")) for h in header]
    if "openid" not in names or not {"phone", "member_id"} & set(names):
        raise ValidationError(
            "第1行须有 openid 列和 phone 或 member_id 列 (header: openid and phone or member_id)",
            field="file",
        )
    result = ImportResult()
    for line, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        row = {n: c for n, c in zip(names, cells, strict=False) if n}
        try:
            member_id = _member_of_row(row)
            before = openid_of(member_id)
            bind_openid(db, member_id, row.get("openid", ""), source, now, by=by)
        except HuiyuanError as exc:
            result.errors.append((line, exc.message))
            continue
        if before == row.get("openid", "").strip():
            result.unchanged += 1
        else:
            result.loaded += 1
    log.info(
        "wechat import by %s: %s bound, %s unchanged, %s rows refused",
        by,
        result.loaded,
        result.unchanged,
        len(result.errors),
    )
    return result


def import_openids_file(db: pw.Database, path: str, by: str, now: dt.datetime) -> ImportResult:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"无法读取文件 (cannot read {path}: {exc})", field="file") from None
    return import_openids(db, text, by, now)
