"""Members at the till: identify (card, phone, name or pinyin), register, balances."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from peewee import BooleanField, fn

from core import tiers
from core.birthday import Birthday
from core.cards import sell as sell_card_period
from core.errors import Conflict, Forbidden, NotFound, ValidationError
from core.ids import uuid7
from core.money import format_yuan
from core.names import pinyin_keys
from core.phone import normalise_phone
from core.points import Lot, fen_for_points
from core.profile import AT_RISK_TAGS, at_risk, check_profile
from core.receipt import mask_name, mask_phone
from core.rules import Rules
from core.stored_value import topup_split
from edge import phones
from edge.key_rotation import writing_keys
from edge.models import Card, JSONField, Member, PointsLot
from edge.security import hash_secret
from edge.services import coupons as coupon_svc
from edge.services import maintainers
from edge.services.consent import consent_from_request
from edge.services.context import Till
from edge.services.fields import MAX_CODE_LEN, check_text
from edge.services.outbox import enqueue

SEARCH_LIMIT = 20
GENDERS = ("M", "F", "")


def check_code(value: str, field: str) -> str:
    """A card number, SKU or barcode as typed or scanned: refused if too long to be one
    (MAX_CODE_LEN), or not text (edge.services.fields), so no message repeats a whole
    pasted text back."""
    return check_text(value, field, MAX_CODE_LEN)


# Written-out statements for what every card swipe and checkout runs: building them
# through the query builder (a 22-column SELECT, the alias lookup) cost more than running
# them. Columns are named in the model's order, so a row becomes a Member as peewee's own
# SELECT * would make it. (Only the model's column names are formatted in; values are
# always bound.)
_MEMBER_FIELDS = tuple(Member._meta.sorted_fields)
_MEMBER_COLUMNS = ", ".join(f'm."{f.column_name}"' for f in _MEMBER_FIELDS)
_ALIAS_OR = 'COALESCE((SELECT "member_id" FROM "member_alias" WHERE "old_id" = {0}), {0})'
_RESOLVE_SQL = (
    f'SELECT {_MEMBER_COLUMNS} FROM "member" m '  # noqa: S608
    f'WHERE m."id" = {_ALIAS_OR.format("?")}'
)
_BY_CARD_SQL = (
    f'SELECT c."status", c."member_id", {_MEMBER_COLUMNS} FROM "card" c '  # noqa: S608
    'LEFT JOIN "member" m ON m."id" = '
    + _ALIAS_OR.format('c."member_id"')
    + ' WHERE c."card_no" = ?'
)
# A member's live lots: points left and not expired on the day (core.points.usable's rule,
# here in SQL). Spent and expired lots stay in the table as history; filtered out in SQLite,
# a regular with years of sales costs a checkout what a new member does.
_LIVE_LOTS_SQL = (
    'SELECT "lot_id", "earned_on", "expires_on", "remaining" FROM "points_lot" '
    'WHERE "member_id" = ? AND "remaining" > 0 AND "expires_on" >= ?'
)
_POINTS_BALANCE_SQL = (
    'SELECT COALESCE(SUM("remaining"), 0) FROM "points_lot" '
    'WHERE "member_id" = ? AND "remaining" > 0 AND "expires_on" >= ?'
)


_MEMBER_NAMES = tuple(f.name for f in _MEMBER_FIELDS)
# the only columns whose Python value differs from what sqlite3 returns (0/1 for a bool):
# text, integer and blob columns come back as peewee's python_value would make them
_MEMBER_BOOLS = tuple(f.name for f in _MEMBER_FIELDS if isinstance(f, BooleanField))
# the programme's JSON columns (preferences, tags, ...) come back as their JSON text
_MEMBER_JSON = tuple(f.name for f in _MEMBER_FIELDS if isinstance(f, JSONField))


def member_from_row(row: tuple[Any, ...]) -> Member:
    """A Member from a row of ``_MEMBER_COLUMNS``, converted as peewee converts its own."""
    member = Member(__no_default__=1)
    data = dict(zip(_MEMBER_NAMES, row, strict=True))
    for name in _MEMBER_BOOLS:
        if data[name] is not None:
            data[name] = bool(data[name])
    for name in _MEMBER_JSON:
        if data[name] is not None:
            data[name] = json.loads(data[name])
    member.__data__ = data
    return member


def resolve(member_id: str) -> Member:
    """The member row for an id, following a merge at HQ to the surviving member."""
    check_code(member_id, "member_id")
    row = Member._meta.database.execute_sql(_RESOLVE_SQL, (member_id, member_id)).fetchone()
    if row is None:
        raise NotFound(f"会员不存在: {member_id}", field="member_id")
    return member_from_row(row)


def by_card(card_no: str) -> Member:
    """The card's member (following a merge) in one statement: what a card swipe runs."""
    card_no = check_code(card_no.strip(), "card_no")
    row = Member._meta.database.execute_sql(_BY_CARD_SQL, (card_no,)).fetchone()
    if row is None:
        raise NotFound(f"卡号 {card_no} 未登记 (unknown card)", field="card_no")
    if row[0] != "active":
        raise Forbidden(f"卡号 {card_no} 已挂失或停用 (card blocked)", field="card_no")
    if row[2] is None:
        raise NotFound(f"会员不存在: {row[1]}", field="member_id")
    return member_from_row(row[2:])


def by_phone(till: Till, phone: str) -> Member:
    """The member answering to a phone, through its lookup hash (edge/phones.py): the
    store holds no other member's phone in clear."""
    member = phones.find_by_phone(till.keys, phone)
    if member is None:
        raise NotFound(f"手机号 {mask_phone(normalise_phone(phone))} 未登记", field="phone")
    return resolve(member.id)


def search(till: Till, query: str, limit: int = SEARCH_LIMIT) -> list[Member]:
    """What the cashier typed: a card number (letters too: ``C0001``, as typed or in
    capitals), a phone, a name, full pinyin or its initials. A card that matches comes
    first; letters may also be pinyin (``zs``), so a query can find both."""
    q = (query or "").strip()
    if not q:
        raise ValidationError("请输入卡号、手机号或姓名 (query is empty)", field="q")
    found: list[Member] = []
    if q.isdigit() and len(q) == 11 and q.startswith("1"):
        try:
            found.append(by_phone(till, q))
        except NotFound:
            pass  # not a phone we know: it may still be a card number
    if q.isascii() and q.isalnum() and len(q) <= MAX_CODE_LEN:
        for member in _by_card_number(q):
            if member.id not in {m.id for m in found}:
                found.append(member)
    if q.isdigit():
        return found
    seen = {m.id for m in found}
    return found + [m for m in _by_name(q, limit) if m.id not in seen][: limit - len(found)]


def _by_card_number(card_no: str) -> list[Member]:
    """The member of an active card numbered ``card_no`` as typed or in capitals (a
    cashier types ``c0001`` for the card printed ``C0001``)."""
    numbers = list(dict.fromkeys((card_no, card_no.upper())))
    cards = Card.select().where(Card.card_no.in_(numbers) & (Card.status == "active"))
    found = []
    for card in cards:
        try:
            found.append(resolve(card.member_id))
        except NotFound:
            continue  # a card whose member this store no longer holds finds nobody
    return found


def _by_name(q: str, limit: int) -> list[Member]:
    """Active members whose name, full pinyin or pinyin initials start with ``q``."""
    active = Member.status == "active"
    if not q.isascii():
        return list(
            Member.select()
            .where(active & (Member.name >= q) & (Member.name < q + "\U0010ffff"))
            .order_by(Member.name)
            .limit(limit)
        )
    key = q.lower().replace(" ", "")
    upper = key + "\x7f"
    rows = list(
        Member.select()
        .where(active & (Member.name_initials >= key) & (Member.name_initials < upper))
        .order_by(Member.name_initials)
        .limit(limit)
    )
    if len(rows) < limit:
        seen = {m.id for m in rows}
        rows += [
            m
            for m in Member.select()
            .where(active & (Member.name_pinyin >= key) & (Member.name_pinyin < upper))
            .order_by(Member.name_pinyin)
            .limit(limit)
            if m.id not in seen
        ][: limit - len(rows)]
    return rows


def live_lots(member_id: str, today: dt.date) -> list[Lot]:
    """The member's lots that still hold points usable on ``today``."""
    date = dt.date.fromisoformat
    return [
        Lot(lot_id, date(earned_on), date(expires_on), remaining)
        for lot_id, earned_on, expires_on, remaining in PointsLot._meta.database.execute_sql(
            _LIVE_LOTS_SQL, (member_id, today.isoformat())
        )
    ]


def points_balance(member_id: str, today: dt.date) -> int:
    """``core.points.balance`` of the member's lots, summed by SQLite."""
    row = PointsLot._meta.database.execute_sql(
        _POINTS_BALANCE_SQL, (member_id, today.isoformat())
    ).fetchone()
    return row[0]


# what a registration request may name; anything else is refused by name, not dropped
REGISTRATION_KEYS = frozenset(
    {
        "name",
        "phone",
        "gender",
        "birthday",
        "birthday_calendar",
        "birthday_leap_month",
        "card_no",
        "card_type",
        "staff_code",
        "password",
        "consent",
        # -- upkeep: the richer profile (core.profile) and who brought the member
        "occupation",
        "preferences",
        "anniversaries",
        "notes",
        "tags",
        "extra",
        "referrer",
    }
)


@dataclass(frozen=True)
class Registration:
    name: str
    phone: str
    gender: str = ""
    birthday: Birthday | None = None
    card_no: str | None = None
    card_type: str = "普通卡"
    staff_code: str | None = None
    password: str | None = None
    consent: dict[str, bool] | None = None  # marketing channels; None: no consent to any
    profile: dict[str, Any] = field(default_factory=dict)  # core.profile.PROFILE_FIELDS given
    referrer: str | None = None  # a member id, phone or card number (edge/services/upkeep.py)

    @classmethod
    def from_request(
        cls, data: dict[str, Any], card_types: set[str] | None = None, rules: Rules | None = None
    ) -> Registration:
        unknown = sorted(str(k)[:32] for k in data if k not in REGISTRATION_KEYS)
        if unknown:
            raise ValidationError(
                f"不认识的字段: {unknown} (unknown fields {unknown}; a registration takes "
                f"{sorted(REGISTRATION_KEYS)})",
                field=unknown[0],
            )
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("姓名不能为空 (name is required)", field="name")
        if len(name.strip()) > 32:
            raise ValidationError("姓名太长 (at most 32 characters)", field="name")
        phone = normalise_phone(data.get("phone"))  # type: ignore[arg-type]
        gender = data.get("gender") or ""
        if gender not in GENDERS:
            raise ValidationError(
                "性别须为 M、F 或留空 (gender must be M, F or empty)", field="gender"
            )
        for key in ("birthday", "birthday_calendar", "card_type"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise ValidationError(f"{key} 须为文字 ({key} must be a string)", field=key)
        birthday = None
        if data.get("birthday"):
            calendar = data.get("birthday_calendar") or "solar"
            birthday = Birthday.parse(
                str(data["birthday"]), calendar, bool(data.get("birthday_leap_month"))
            )
        card_no = data.get("card_no")
        if card_no is not None and (not isinstance(card_no, str) or not card_no.strip().isalnum()):
            raise ValidationError(
                "卡号只能包含字母和数字 (card number must be alphanumeric)", field="card_no"
            )
        card_type = data.get("card_type") or "普通卡"
        if card_types is not None and card_type not in card_types:
            raise ValidationError(
                f"未知卡类型 {card_type!r}, 可选: {sorted(card_types)}", field="card_type"
            )
        password = data.get("password")
        if password is not None and (
            not isinstance(password, str) or not password.isdigit() or not 6 <= len(password) <= 8
        ):
            raise ValidationError(
                "会员密码须为6到8位数字 (password must be 6-8 digits)", field="password"
            )
        staff_code = data.get("staff_code")
        if staff_code is not None and not isinstance(staff_code, str):
            raise ValidationError(
                "员工编号须为文字 (staff_code must be a string)", field="staff_code"
            )
        referrer = data.get("referrer")
        if referrer is not None and (not isinstance(referrer, str) or not referrer.strip()):
            raise ValidationError(
                "推荐人须为会员号、手机号或卡号 (referrer must be a member id, phone or card no)",
                field="referrer",
            )
        return cls(
            name.strip(),
            phone,
            gender,
            birthday,
            card_no.strip() if card_no else None,
            card_type,
            staff_code,
            password,
            consent_from_request(data.get("consent")),
            check_profile(data, rules or Rules(), registration=True),
            check_code(referrer.strip(), "referrer") if referrer else None,
        )


def register(till: Till, reg: Registration, cashier: str) -> Member:
    """A new member, usable at once, with one registration message in the outbox."""
    # these build on this module: imported here
    from edge.services import upkeep  # (resolve, by_phone, by_card)
    from edge.services.cards import refuse_card_product  # -- cards

    refuse_card_product(till, reg.card_type)
    maintainers.check_staff(reg.staff_code)  # -- staff: a known, active maintainer or none
    # the chain's parameters (core.protocol.SCRYPT_N): the hash is checked at every store
    password_hash = hash_secret(reg.password) if reg.password else None
    pinyin, initials = pinyin_keys(reg.name)
    now = till.now()
    member_id = uuid7()
    with till.db.atomic():
        referred_by = upkeep.resolve_referrer(till, reg.referrer) if reg.referrer else None
        # inside the write transaction: the sync agent may be installing the chain key
        phone_hash = phones.phone_hash(till.keys, reg.phone)
        if Member.get_or_none(Member.phone_hash == phone_hash):
            raise Conflict(
                f"手机号 {mask_phone(reg.phone)} 已是会员 (phone already registered)", field="phone"
            )
        if reg.card_no and Card.get_or_none(Card.card_no == reg.card_no):
            raise Conflict(f"卡号 {reg.card_no} 已被使用 (card already issued)", field="card_no")
        member = Member.create(
            id=member_id,
            name=reg.name,
            name_pinyin=pinyin,
            name_initials=initials,
            phone_hash=phone_hash,
            phone_enc=writing_keys(till.keys).encrypt(reg.phone, member_id),
            phone_tail=reg.phone[-4:],
            gender=reg.gender,
            birthday=reg.birthday.isoformat() if reg.birthday else None,
            birthday_calendar=reg.birthday.calendar if reg.birthday else "solar",
            birthday_leap_month=reg.birthday.leap_month if reg.birthday else False,
            card_type=reg.card_type,
            staff_code=reg.staff_code,
            password_hash=password_hash,
            registered_at=now.isoformat(timespec="seconds"),
            registered_store=till.store,
            updated_at=now.isoformat(timespec="seconds"),
            referred_by=referred_by,
            **reg.profile,
        )
        if reg.card_no:
            Card.create(
                card_no=reg.card_no,
                member_id=member_id,
                issued_at=now.isoformat(timespec="seconds"),
            )
        enqueue(
            till,
            "registration",
            {
                "member_id": member_id,
                "name": reg.name,
                "phone": reg.phone,
                "gender": reg.gender,
                "birthday": member.birthday,
                "birthday_calendar": member.birthday_calendar,
                "birthday_leap_month": member.birthday_leap_month,
                "card_no": reg.card_no,
                "card_type": reg.card_type,
                "staff_code": reg.staff_code,
                # the scrypt hash, never the password: the member pays with stored value
                # at every store of the chain with the same password
                "password_hash": password_hash,
                "cashier": cashier,
                "registered_at": member.registered_at,
                "consent": reg.consent or consent_from_request(None),
                # upkeep: the richer profile and the referrer, only when given (HQ
                # computes the completeness score itself)
                **reg.profile,
                **({"referred_by": referred_by} if referred_by else {}),
            },
            member.registered_at,
            till.rules().version,
        )
        coupon_svc.new_member_gift(till, member_id, cashier)  # coupons (issue 11): 新人券
    return member


def phone_of(till: Till, member: Member) -> str | None:
    return till.keys.decrypt(member.phone_enc, member.id) if member.phone_enc else None


def summary(till: Till, member: Member, today: dt.date | None = None) -> dict[str, Any]:
    """What the till screen shows: masked contacts, balances, birthday hint."""
    today = today or till.now().date()
    cards = [
        c.card_no
        for c in Card.select().where((Card.member_id == member.id) & (Card.status == "active"))
    ]
    points = points_balance(member.id, today) - member.points_debt
    birthday_today = False
    bday = None
    if member.birthday:
        bday = Birthday.parse(member.birthday, member.birthday_calendar, member.birthday_leap_month)
        birthday_today = bday.next_on_or_after(today) == today
    return (
        {
            "member_id": member.id,
            "name": member.name,
            "masked_name": mask_name(member.name),
            "phone": f"*******{member.phone_tail}" if member.phone_tail else "",
            "gender": member.gender,
            "card_type": member.card_type,
            "tier": member.tier,
            "cards": cards,
            "status": member.status,
            "staff_code": member.staff_code,
            "birthday": member.birthday,
            "birthday_calendar": member.birthday_calendar,
            "birthday_today": birthday_today,
            "has_password": bool(member.password_hash),
            "stored_value": {
                "principal": member.sv_principal,
                "bonus": member.sv_bonus,
                "total": member.sv_principal + member.sv_bonus,
            },
            "points": points,
            "points_debt": member.points_debt,
        }
        | _card_summary(till, member, today)
        | glance(till, member, today, bday, points)
    )


def glance(
    till: Till, member: Member, today: dt.date, birthday: Birthday | None, points: int
) -> dict[str, Any]:
    """-- members at the till: what the cashier sees at a glance beside the summary's
    balances (docs/till-screen.md, "The member"): what the points are worth in fen, the
    tier's progress, the birthday this month, the tags that need care, the card products
    on offer with the period each would give."""
    rules = till.rules()
    this_month = _birthday_this_month(birthday, today)
    return {
        "points_value": points_value(rules, points),
        "tier_progress": tiers.progress(rules.tiers, member.tier, member.growth),
        "birthday_this_month": this_month is not None,
        "birthday_this_month_on": this_month,
        "birthday_next": birthday.next_on_or_after(today).isoformat() if birthday else None,
        "tags": list(member.tags or []),
        "at_risk": at_risk(member.tags),
        "card_offers": card_offers(rules, member, today),
    }


def points_value(rules: Rules, points: int) -> int:
    """Fen the member's points pay at the till (``core.points.fen_for_points``); none
    when the balance is below zero."""
    if points <= 0 or rules.points_per_yuan_redeemed <= 0:
        return 0
    return fen_for_points(rules, points)


def _birthday_this_month(birthday: Birthday | None, today: dt.date) -> str | None:
    """The (solar) day of the birthday in ``today``'s month, passed or to come, or None:
    a lunar birthday moves through the solar months from year to year."""
    if birthday is None:
        return None
    first = today.replace(day=1)
    day = birthday.next_on_or_after(first)
    return day.isoformat() if day.replace(day=1) == first else None


def card_offers(rules: Rules, member: Member, today: dt.date) -> list[dict[str, Any]]:
    """The card products this member may buy today (core.cards.sell's rule): each with
    its price, whether it renews the member's card, and the period it would give."""
    from edge.services.cards import expires_on  # it builds on this module

    offers = []
    for product in rules.cards.products:
        try:
            period = sell_card_period(product, member.card_type, expires_on(member), today)
        except Conflict:
            continue  # the member's card, valid and not renewable before it lapses
        offers.append(
            {
                "card_type": product.card_type,
                "price": product.price,
                "renewal": period.renewal,
                "valid_from": period.valid_from.isoformat(),
                "valid_to": period.valid_to.isoformat(),
            }
        )
    return offers


def _card_summary(till: Till, member: Member, today: dt.date) -> dict[str, Any]:
    """-- cards: the card's last day, whether it has lapsed, the renewal on offer."""
    from edge.services.cards import card_summary  # it builds on this module

    return card_summary(till, member, today)


# -- members at the till: the registration form's choices and the top-up preview

# the marketing channels a member consents to (edge.services.consent), as the form names them
CONSENT_CHANNELS = (("sms", "短信"), ("wechat", "微信"), ("call", "电话"))


def form_options(till: Till) -> dict[str, Any]:
    """What the registration and edit dialogs offer: the card types a registration takes
    (the rules' card types but the card products, which are sold: ``sell_card``), the
    birthday's calendars, the consent channels and the card products on sale."""
    rules = till.rules()
    sold = {p.card_type for p in rules.cards.products}
    card_types = [t for t in rules.card_type_discount if t not in sold] or ["普通卡"]
    return {
        "card_types": card_types,
        "default_card_type": "普通卡" if "普通卡" in card_types else card_types[0],
        "genders": [
            {"value": "", "label": "未填"},
            {"value": "M", "label": "男"},
            {"value": "F", "label": "女"},
        ],
        "calendars": [{"value": "solar", "label": "公历"}, {"value": "lunar", "label": "农历"}],
        "consent": [{"channel": c, "label": label} for c, label in CONSENT_CHANNELS],
        "card_products": [p.to_dict() for p in rules.cards.products],
        "at_risk_tags": list(AT_RISK_TAGS),
    }


def topup_preview(till: Till, staff: Any, amount: int) -> dict[str, Any]:
    """A top-up of ``amount`` fen as ``sales.top_up`` would make it, before any money:
    the split by the rules (core.stored_value.topup_split, the function the top-up uses),
    the bonus tier above it, and why this cashier would need a manager (the top-up's own
    check), or None. Refused past ``till.topup_max`` as the top-up is."""
    from edge.services import sales  # it builds on this module

    cfg = till.config.till
    if amount > cfg.topup_max:
        raise ValidationError(
            f"单笔充值最多 {format_yuan(cfg.topup_max, '')} 元 (a top-up is at most "
            f"{cfg.topup_max} fen)",
            field="amount",
        )
    rules = till.rules()
    split = topup_split(rules, amount)
    tiers = sorted(rules.topup_bonuses, key=lambda t: t.threshold)
    above = next((t for t in tiers if t.threshold > amount and t.bonus > split.bonus), None)
    day = till.now().date().isoformat()
    action = sales.topup_needs_manager(till, staff, amount, day)
    return {
        "amount": amount,
        "principal": split.principal,
        "bonus": split.bonus,
        "total": split.total,
        "next_bonus": (
            {"threshold": above.threshold, "bonus": above.bonus, "more": above.threshold - amount}
            if above
            else None
        ),
        "bonus_tiers": [{"threshold": t.threshold, "bonus": t.bonus} for t in tiers],
        "needs_manager": f"{action}需要店长授权" if action else None,
        "cashier_topup_limit": cfg.cashier_topup_limit,
        "topup_max": cfg.topup_max,
    }


def member_count() -> int:
    return Member.select(fn.COUNT(Member.id)).scalar()
