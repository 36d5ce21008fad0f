"""Member upkeep at the till (docs/programme/upkeep.md): profile edits, the member's
payment password, stored value refunds (储值退款) and the stored value statement.

Each change writes the member's row, its ledger rows (a refund) and ONE outbox item in
one SQLite transaction (invariant 1). A refund takes money out of a balance HQ keeps, so
it is authorized online first (action ``refund``); offline it is refused.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from core.birthday import Birthday
from core.days import parse_day
from core.errors import Conflict, Forbidden, InsufficientFunds, NotFound, ValidationError
from core.ids import is_uuid, uuid7
from core.names import pinyin_keys
from core.phone import normalise_phone
from core.profile import PROFILE_FIELDS, at_risk, check_profile, completeness
from core.protocol import MEMBER_UPDATE_FIELDS
from core.receipt import Receipt, ReceiptLine, ReceiptTender
from core.rules import Rules
from core.stored_value import Split, refund_forfeit
from edge.models import Ledger, Member, SvRefund
from edge.security import hash_secret
from edge.services import members as member_svc
from edge.services import receipts
from edge.services.context import SpendRequest, Till
from edge.services.outbox import enqueue
from edge.services.staff import SignedIn, verify_counted

MAX_REASON = 200

# ---- registration: the richer profile and who brought the member ---------------------


def profile_score(member: Member, rules: Rules) -> int:
    """core.profile.completeness of the till's row (the phone is there when registered):
    what the screen shows; HQ keeps its own figure (the ``profile_score`` column)."""
    return completeness(
        {
            "name": member.name,
            "phone_tail": member.phone_tail,
            "gender": member.gender,
            "birthday": member.birthday,
            **{name: getattr(member, name) for name in PROFILE_FIELDS},
        },
        rules,
    )


def resolve_referrer(till: Till, text: str) -> str:
    """The member id a registration's ``referrer`` names: a member id, a phone or a card
    number, resolved at this till (following merges); unknown is a clear 400."""
    text = text.strip()
    try:
        if is_uuid(text):
            member = member_svc.resolve(text)
        elif len(text) == 11 and text.isdigit() and text.startswith("1"):
            member = member_svc.by_phone(till, normalise_phone(text))
        else:
            member = member_svc.by_card(text)
    except (NotFound, Forbidden):
        raise ValidationError(
            f"推荐人 {text} 不是本店已知的会员 (referrer: no member with this id, phone or "
            "card is known at this till)",
            field="referrer",
        ) from None
    if member.status != "active":
        raise ValidationError(
            f"推荐人会员状态为 {member.status} (referrer is not an active member)",
            field="referrer",
        )
    return member.id


# ---- editing the profile ---------------------------------------------------------------

# what PUT/PATCH /api/v1/members/{id} takes: the member_update fields, with the birthday
# written as at registration (birthday, birthday_calendar, birthday_leap_month)
EDIT_KEYS = (*MEMBER_UPDATE_FIELDS, "birthday_calendar", "birthday_leap_month", "phone")


def parse_edit(data: dict[str, Any], member: Member, rules: Rules) -> dict[str, Any]:
    """The fields a request changes, checked, as a member_update item names them (only
    those whose value differs from the member's)."""
    unknown = sorted(str(k)[:32] for k in data if k not in EDIT_KEYS)
    if unknown:
        raise ValidationError(
            f"不能修改或不认识的字段: {unknown} (unknown fields; editable: {sorted(EDIT_KEYS)})",
            field=unknown[0],
        )
    if "phone" in data:
        raise ValidationError(
            "手机号是会员在全连锁的唯一标识, 门店不能修改; 请联系总部用 edit-member 修改 "
            "(the phone is the member's key across the chain: HQ changes it, "
            "huiyuan-hq edit-member --set phone=...)",
            field="phone",
        )
    if not data:
        raise ValidationError("请至少修改一项资料 (name at least one field)", field="body")
    changes: dict[str, Any] = {}
    if "name" in data:
        name = data["name"]
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("姓名不能为空 (name is required)", field="name")
        if len(name.strip()) > 32:
            raise ValidationError("姓名太长 (at most 32 characters)", field="name")
        changes["name"] = name.strip()
    if "gender" in data:
        gender = data["gender"] if data["gender"] is not None else ""
        if gender not in member_svc.GENDERS:
            raise ValidationError(
                "性别须为 M、F 或留空 (gender must be M, F or empty)", field="gender"
            )
        changes["gender"] = gender
    birthday_keys = ("birthday", "birthday_calendar", "birthday_leap_month")
    if any(k in data for k in birthday_keys):
        changes["birthday"] = _birthday_change(data, member)
    changes.update(check_profile(data, rules))
    current = {
        "name": member.name,
        "gender": member.gender,
        "birthday": _birthday_of(member),
        **{name: getattr(member, name) for name in PROFILE_FIELDS},
    }
    return {k: v for k, v in changes.items() if _empty(v) != _empty(current.get(k))}


def _empty(value: Any) -> Any:
    """ "" and [] and {} and None are one "not set"."""
    return None if value in ("", [], {}, None) else value


def _birthday_of(member: Member) -> dict[str, Any] | None:
    if not member.birthday:
        return None
    return {
        "date": member.birthday,
        "calendar": member.birthday_calendar,
        "leap_month": bool(member.birthday_leap_month),
    }


def _birthday_change(data: dict[str, Any], member: Member) -> dict[str, Any] | None:
    text = data.get("birthday", member.birthday)
    calendar = data.get("birthday_calendar") or member.birthday_calendar or "solar"
    leap = data.get("birthday_leap_month", member.birthday_leap_month)
    if text is not None and not isinstance(text, str):
        raise ValidationError("birthday 须为文字 (birthday must be a string)", field="birthday")
    if not isinstance(calendar, str):
        raise ValidationError("birthday_calendar must be a string", field="birthday_calendar")
    if not isinstance(leap, bool):
        raise ValidationError("birthday_leap_month must be a boolean", field="birthday_leap_month")
    if not text:
        return None
    day = Birthday.parse(text, calendar, leap)
    return {"date": day.isoformat(), "calendar": day.calendar, "leap_month": day.leap_month}


def apply_changes(member: Member, changes: dict[str, Any]) -> None:
    """Set a member_update's fields on the till's row (the pinyin keys follow the name)."""
    for name, value in changes.items():
        if name == "name":
            member.name = value
            member.name_pinyin, member.name_initials = pinyin_keys(value)
        elif name == "birthday":
            member.birthday = value["date"] if value else None
            member.birthday_calendar = value["calendar"] if value else "solar"
            member.birthday_leap_month = bool(value and value.get("leap_month"))
        elif name in ("occupation", "notes", "gender"):
            setattr(member, name, value or "")
        else:
            setattr(member, name, value if value not in ([], {}) else None)


def update_member(
    till: Till, member_id: str, data: dict[str, Any], staff: SignedIn
) -> dict[str, Any]:
    """The member's profile edited at the till: the row and one ``member_update`` item
    with only the fields changed and when; nothing changed writes nothing."""
    rules = till.rules()
    now = till.now()
    at = now.isoformat(timespec="milliseconds")
    with till.db.atomic():
        member = member_svc.resolve(member_id)
        if member.status != "active":
            raise Forbidden(
                f"会员状态为 {member.status}, 不能修改 (member not active)", field="member_id"
            )
        changes = parse_edit(data, member, rules)
        seq = None
        if changes:
            apply_changes(member, changes)
            member.updated_at = at
            member.save()
            item = enqueue(
                till,
                "member_update",
                {
                    "member_id": member.id,
                    "changes": changes,
                    "changed_at": at,
                    "cashier": staff.code,
                },
                at,
                rules.version,
            )
            seq = item.seq
    return {
        "member": member_view(till, member),
        "changed": sorted(changes),
        "changed_at": at if changes else None,
        "seq": seq,
    }


def member_view(till: Till, member: Member) -> dict[str, Any]:
    """The till's summary with the richer profile (no contact in clear). The completeness
    score is computed from the row as it is now, with the function HQ uses: the
    ``profile_score`` column is HQ's figure as last sent down."""
    return member_svc.summary(till, member) | {
        "occupation": member.occupation,
        "preferences": member.preferences or [],
        "anniversaries": member.anniversaries or [],
        "notes": member.notes,
        "tags": member.tags or [],
        "at_risk": at_risk(member.tags),
        "extra": member.extra or {},
        "profile_score": profile_score(member, till.rules()),
        "referred_by": member.referred_by,
    }


# ---- the member's payment password ---------------------------------------------------


def check_password(value: Any, field: str = "password") -> str:
    if not isinstance(value, str) or not value.isdigit() or not 6 <= len(value) <= 8:
        raise ValidationError("会员密码须为6到8位数字 (password must be 6-8 digits)", field=field)
    return value


def _store_password(
    till: Till, member: Member, password: str, action: str, staff: SignedIn, approver: str | None
) -> dict[str, Any]:
    """Hash at the till (edge.security.hash_secret, the chain's parameters), keep it, and
    send the hash up in one ``member_password`` item, in one transaction."""
    password_hash = hash_secret(password)
    rules = till.rules()
    now = till.now()
    at = now.isoformat(timespec="milliseconds")
    with till.db.atomic():
        fresh = member_svc.resolve(member.id)
        if action == "set" and fresh.password_hash:
            raise Conflict(
                "会员已设置密码; 修改需要原密码, 忘记密码请店长重置 "
                "(a password is set: change it with the old one, or a manager resets it)",
                field="password",
            )
        fresh.password_hash = password_hash
        fresh.updated_at = at
        fresh.save()
        body: dict[str, Any] = {
            "member_id": fresh.id,
            "password_hash": password_hash,
            "action": action,
            "changed_at": at,
            "cashier": staff.code,
        }
        if approver:
            body["approved_by"] = approver
        item = enqueue(till, "member_password", body, at, rules.version)
    return {"member_id": fresh.id, "action": action, "changed_at": at, "seq": item.seq}


def set_password(till: Till, member_id: str, password: Any, staff: SignedIn) -> dict[str, Any]:
    """A password for a member who has none (topped up without one: now it can be spent)."""
    password = check_password(password)
    member = _active(member_id)
    if member.password_hash:
        raise Conflict(
            "会员已设置密码; 修改需要原密码, 忘记密码请店长重置 "
            "(a password is set: change it with the old one, or a manager resets it)",
            field="password",
        )
    return _store_password(till, member, password, "set", staff, None)


def change_password(
    till: Till, member_id: str, old: Any, new: Any, staff: SignedIn
) -> dict[str, Any]:
    """A new password, given the old one (wrong ones counted as at checkout)."""
    if not isinstance(old, str) or not old:
        raise ValidationError("请输入原密码 (old_password is required)", field="old_password")
    new = check_password(new)
    member = _active(member_id)
    if not member.password_hash:
        raise Conflict(
            "会员尚未设置密码, 请先设置 (no password yet: set one)", field="old_password"
        )
    if not verify_counted(
        till,
        f"password_failures:{member.id}",
        "会员密码",
        old,
        member.password_hash,
        "old_password",
    ):
        raise Forbidden("原密码错误 (wrong old password)", field="old_password")
    return _store_password(till, member, new, "change", staff, None)


def reset_password(
    till: Till, member_id: str, new: Any, staff: SignedIn, approver: SignedIn
) -> dict[str, Any]:
    """A manager resets a forgotten password: the member types a new one."""
    new = check_password(new)
    member = _active(member_id)
    return _store_password(till, member, new, "reset", staff, approver.code)


def _active(member_id: str) -> Member:
    member = member_svc.resolve(member_id)
    if member.status != "active":
        raise Forbidden(f"会员状态为 {member.status} (member not active)", field="member_id")
    return member


# ---- stored value refund (储值退款) ---------------------------------------------------


def check_reason(value: Any) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise ValidationError("请填写退款原因 (reason is required)", field="reason")
    if len(text) > MAX_REASON:
        raise ValidationError(f"原因最多 {MAX_REASON} 个字 (reason too long)", field="reason")
    return text


def refund_stored_value(
    till: Till,
    staff: SignedIn,
    approver: SignedIn,
    member_id: str,
    amount: Any,
    reason: Any,
    refund_id: str | None = None,
) -> dict[str, Any]:
    """Refund ``amount`` fen of the member's unspent principal in cash; the bonus goes as
    HQ's authorization says (the rules' ``sv_refund_bonus``). HQ must answer: offline,
    or HQ not knowing the member yet, the refund is refused."""
    reason = check_reason(reason)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValidationError("退款金额须为正整数 (amount: fen, at least 1)", field="amount")
    if refund_id is not None and not is_uuid(refund_id):
        raise ValidationError("refund_id must be a UUID", field="refund_id")
    if refund_id:
        done = SvRefund.get_or_none(SvRefund.id == refund_id)
        if done is not None:
            return _replayed_refund(done, member_id, amount)
    member = _active(member_id)
    rules = till.rules()
    # the till's own figures first: a refund above the principal it shows is refused here
    local = refund_forfeit(
        Split(member.sv_principal, member.sv_bonus), amount, rules.sv_refund_bonus
    )
    refund_id = refund_id or uuid7()
    now = till.now()
    at, day = now.isoformat(timespec="milliseconds"), now.date().isoformat()
    decision = till.authorizer.authorize(
        SpendRequest(refund_id, member.id, amount, 0, day, action="refund")
    )
    if not decision.online:
        raise Forbidden(
            "储值退款需要总部在线授权, 当前无法连接总部, 请稍后再试 "
            f"(a stored value refund needs HQ online: {decision.reason})",
            field="amount",
            policy="online_only",
        )
    if not decision.approved:
        raise InsufficientFunds(f"总部拒绝退款: {decision.reason}", field="amount")
    split = decision.stored_value_split or {"principal": local.principal, "bonus": local.bonus}
    principal, bonus = int(split["principal"]), int(split["bonus"])
    with till.db.atomic():
        done = SvRefund.get_or_none(SvRefund.id == refund_id)
        if done is not None:
            return _replayed_refund(done, member_id, amount)
        member = member_svc.resolve(member.id)
        rows = [
            {
                "member_id": member.id,
                "account": account,
                "delta": -delta,
                "reason": "sv_refund",
                "ref": refund_id,
                "occurred_at": at,
                "day": day,
                "offline": False,
            }
            for account, delta in (("sv_principal", principal), ("sv_bonus", bonus))
            if delta
        ]
        Ledger.insert_many(rows).execute()
        member.sv_principal -= principal
        member.sv_bonus -= bonus
        member.updated_at = at
        member.save()
        body = {
            "refund_id": refund_id,
            "member_id": member.id,
            "principal": principal,
            "bonus": bonus,
            "tender": "cash",
            "authorization_id": decision.authorization_id or "",
            "cashier": staff.code,
            "approved_by": approver.code,
            "reason": reason,
        }
        enqueue(till, "sv_refund", body, at, rules.version)
        receipt = refund_receipt(till, body, member, staff, at, now.date())
        SvRefund.create(
            id=refund_id,
            member_id=member.id,
            principal=principal,
            bonus=bonus,
            cashier=staff.code,
            approved_by=approver.code,
            reason=reason,
            authorization_id=body["authorization_id"],
            occurred_at=at,
            receipt=receipt.to_dict(),
        )
    return {
        "refund_id": refund_id,
        "replayed": False,
        "principal": principal,
        "bonus_forfeited": bonus,
        "cash": principal,
        "receipt": receipt.to_dict(),
    }


def _replayed_refund(done: SvRefund, member_id: str, amount: int) -> dict[str, Any]:
    same_member = member_svc.resolve(member_id).id == member_svc.resolve(done.member_id).id
    if not same_member or done.principal != amount:
        raise Conflict(
            f"退款单号 {done.id} 已用于另一笔退款 (refund_id already used for another refund)",
            field="refund_id",
        )
    return {
        "refund_id": done.id,
        "replayed": True,
        "principal": done.principal,
        "bonus_forfeited": done.bonus,
        "cash": done.principal,
        "receipt": done.receipt,
    }


def refund_receipt(
    till: Till, body: dict[str, Any], member: Member, staff: SignedIn, at: str, today: dt.date
) -> Receipt:
    lines = [
        ReceiptLine(
            name="储值退款(本金)", qty=1, unit_price=body["principal"], amount=body["principal"]
        )
    ]
    if body["bonus"]:
        lines.append(
            ReceiptLine(
                name="赠送金额作废",
                qty=1,
                unit_price=body["bonus"],
                amount=0,
                note="赠送金额不退现",
            )
        )
    return Receipt(
        kind="sv_refund",
        title="储值退款凭证",
        store_name=till.config.store.name,
        store_code=till.store,
        document_no=body["refund_id"],
        occurred_at=receipts.local_time(at),
        cashier=staff.name,
        lines=tuple(lines),
        subtotal=body["principal"],
        total=body["principal"],
        tenders=(ReceiptTender("cash", "现金退款", body["principal"]),),
        member=receipts._member(till, member, 0, today),
        footer=(f"退款原因: {body['reason']}", f"店长: {body['approved_by']}"),
        opens_drawer=True,
    )


# ---- stored value statement -----------------------------------------------------------

REASON_LABELS = {
    "topup": "充值",
    "sale": "消费",
    "return": "退货退回",
    "sv_refund": "储值退款",
    "sv_clear": "储值清零",
    "hq": "总部同步",
}


def statement(
    till: Till, member_id: str, date_from: str | None = None, date_to: str | None = None
) -> dict[str, Any]:
    """The member's stored value movements from the till's own ledger: the opening balance
    before ``date_from``, each movement (principal and bonus, with its reason and
    document), the closing balance after ``date_to``; opening + movements = closing."""
    start, end = parse_day(date_from, "from"), parse_day(date_to, "to")
    if start and end and start > end:
        raise ValidationError("from 不能晚于 to (from is after to)", field="from")
    member = member_svc.resolve(member_id)
    ids = [member.id] + [
        row[0]
        for row in till.db.execute_sql(
            'SELECT "old_id" FROM "member_alias" WHERE "member_id" = ?', (member.id,)
        )
    ]
    rows = (
        Ledger.select()
        .where(Ledger.member_id.in_(ids) & Ledger.account.in_(("sv_principal", "sv_bonus")))
        .order_by(Ledger.occurred_at, Ledger.id)
    )
    opening = {"principal": 0, "bonus": 0}
    movements: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        part = "principal" if row.account == "sv_principal" else "bonus"
        day = dt.date.fromisoformat(row.day)
        if start and day < start:
            opening[part] += row.delta
            continue
        if end and day > end:
            continue
        key = (row.occurred_at, row.reason, row.ref)
        move = movements.setdefault(
            key,
            {
                "at": row.occurred_at,
                "store": till.store if row.reason != "hq" else None,
                "reason": row.reason,
                "label": REASON_LABELS.get(row.reason, row.reason),
                "ref": row.ref,
                "principal": 0,
                "bonus": 0,
            },
        )
        move[part] += row.delta
    closing = dict(opening)
    for move in movements.values():
        closing["principal"] += move["principal"]
        closing["bonus"] += move["bonus"]
    return {
        "member_id": member.id,
        "from": start.isoformat() if start else None,
        "to": end.isoformat() if end else None,
        "opening": opening | {"total": opening["principal"] + opening["bonus"]},
        "movements": list(movements.values()),
        "closing": closing | {"total": closing["principal"] + closing["bonus"]},
        "balance": {
            "principal": member.sv_principal,
            "bonus": member.sv_bonus,
            "total": member.sv_principal + member.sv_bonus,
        },
    }
