"""Finding members from the console's search box (``/members?q=``), fast at a chain's
million members: by name, pinyin (full or initials: ``zs`` finds 张三), phone (in full,
or its last four digits), card number or member id.

Each kind of query reads one index range. The name's pinyin and initials and the
phone's last four digits are columns of ``member`` (hq/models.py, ``# -- members``),
derived by ``search_keys`` with the tills' own pinyin rules (core/names.py) wherever
HQ writes a member's name or phone: registration (hq/members.py), a till's
member_update and an edit at HQ (hq/programme/upkeep.py), erasure (hq/privacy.py blanks
them with the name and phone). A merge changes neither the survivor's name nor its
phone; the merged record stays out of the results (its id still leads to the survivor).
Rows written before the columns existed have them null; ``huiyuan-hq init-db`` fills
them (``backfill_search_keys``, run by ``create_schema``) a batch at a time.

Prefixes are read as key ranges (``key >= 'zs' AND key < 'zt'``) on the ASCII keys, which
a plain b-tree index answers on SQLite and on PostgreSQL whatever the database's
collation (``LIKE 'zs%'`` needs ``text_pattern_ops`` there); each range is also checked
exactly (``substr(key, 1, n) = q``), so a collation can never add a wrong row.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import peewee as pw

from core.errors import NotFound, ValidationError
from core.ids import is_uuid
from core.names import pinyin_keys
from core.phone import normalise_phone
from hq.ledger import resolve_member
from hq.models import Card, Member, PhoneKey, is_postgres

MAX_QUERY = 64
MAX_RESULTS = 200  # a search shows at most this many members; more: narrow it down
PAGE_SIZE = 20
BACKFILL_BATCH = 1000

_ASCII_KEY = re.compile(r"^[a-z0-9]+$")
_ID_PREFIX = re.compile(r"^[0-9a-f][0-9a-f-]{7,35}$")
_CARD = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


@functools.lru_cache(maxsize=65536)
def _name_keys(name: str) -> tuple[str, str]:
    """pinyin_keys, remembered: names repeat (张伟), and a backfill meets each many times."""
    return pinyin_keys(name) if name.strip() else ("", "")


def search_keys(name: str | None, phone: str | None) -> dict[str, Any]:
    """The search columns for a member's name and phone (``Member(**keys)`` or an update)."""
    full, initials = _name_keys(name or "")
    digits = phone or ""
    return {
        "name_pinyin": full[:128],
        "name_initials": initials[:32],
        "phone_last4": digits[-4:] if len(digits) >= 4 else None,
    }


def backfill_search_keys(db: pw.Database, batch: int = BACKFILL_BATCH) -> int:
    """Fill the search keys of members that have none (rows older than the columns, or a
    row a tool wrote directly); returns how many. One UPDATE per ``batch`` rows, each its
    own transaction: stopped half way, the next run does the rest (rows with keys are
    never read again); two runs at once write the same values."""
    todo = Member.select(pw.fn.COUNT(Member.id)).where(Member.name_pinyin.is_null()).scalar()
    done = 0
    after = ""  # keyset: each batch starts past the last (never re-reads filled rows)
    for _ in range(todo // batch + 1):
        rows = list(
            Member.select(Member.id, Member.name, Member.phone)
            .where(Member.name_pinyin.is_null() & (Member.id > after))
            .order_by(Member.id)
            .limit(batch)
            .tuples()
        )
        if not rows:
            break
        after = rows[-1][0]
        values = []
        for member_id, name, phone in rows:
            keys = search_keys(name, phone)
            values.append(
                (keys["name_pinyin"], keys["name_initials"], keys["phone_last4"], member_id)
            )
        with db.atomic():
            _update_keys(db, values)
        done += len(rows)
    return done


def _update_keys(db: pw.Database, values: list[tuple[str, str, str | None, str]]) -> None:
    """(name_pinyin, name_initials, phone_last4, id) rows written in one statement."""
    table = Member._meta.table_name
    if not is_postgres(db):
        with pw.__exception_wrapper__:
            db.cursor().executemany(
                f'UPDATE "{table}" SET name_pinyin = ?, name_initials = ?, phone_last4 = ? '  # noqa: S608
                "WHERE id = ?",
                values,
            )
        return
    cursor = db.cursor()
    rows = b", ".join(cursor.mogrify("(%s, %s, %s, %s)", v) for v in values)
    sql = (
        (
            f'UPDATE "{table}" SET name_pinyin = v.py, name_initials = v.ini,'  # noqa: S608
            " phone_last4 = v.last4 FROM (VALUES "
        ).encode()
        + rows
        + f') AS v(py, ini, last4, id) WHERE "{table}".id = v.id'.encode()
    )
    with pw.__exception_wrapper__:
        cursor.execute(sql)  # the values are mogrified: no parameters left to bind


@dataclass(frozen=True)
class SearchPage:
    query: str
    members: list[Member]  # this page's, in the order found
    page: int
    pages: int  # pages of the results found (at most MAX_RESULTS members)
    found: int  # members found, at most MAX_RESULTS
    capped: bool  # more than MAX_RESULTS matched: the search should be narrowed
    exact: bool  # found by member id, card number or full phone


def clean_query(raw: str | None) -> str:
    q = unicodedata.normalize("NFKC", raw or "").strip()
    if len(q) > MAX_QUERY or "\x00" in q:
        raise ValidationError(
            f"搜索内容最多 {MAX_QUERY} 个字符 (at most {MAX_QUERY} characters, no NUL)", field="q"
        )
    return q


def _after(prefix: str) -> str:
    """The smallest text above every text starting with ``prefix`` (ASCII keys)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _prefix(field: pw.Field, prefix: str) -> pw.Expression:
    return (
        (field >= prefix)
        & (field < _after(prefix))
        & (pw.fn.SUBSTR(field, 1, len(prefix)) == prefix)
    )


def _exact(q: str) -> list[str]:
    """Member ids for a whole member id, card number or phone (merges followed)."""
    db = Member._meta.database
    ids: list[str] = []
    if is_uuid(q.lower()):
        try:
            ids.append(resolve_member(db, q.lower(), lock=False).id)
        except NotFound:
            pass  # an id nobody has: the prefix search below finds nothing either
    if _CARD.match(q):
        for card_no in dict.fromkeys((q, q.upper())):
            card = Card.get_or_none(Card.card_no == card_no)
            if card is not None:
                ids.append(resolve_member(db, card.member_id, lock=False).id)
    try:
        phone = normalise_phone(q)
    except ValidationError:
        phone = None
    if phone is not None:
        key = PhoneKey.get_or_none(PhoneKey.phone == phone)
        if key is not None:
            ids.append(resolve_member(db, key.member_id, lock=False).id)
    return list(dict.fromkeys(ids))


def _ranges(q: str) -> list[tuple[pw.Field, pw.Expression]]:
    """(the key to order by, the condition) for each index range the query may mean."""
    low = q.lower()
    digits = re.sub(r"[\s-]", "", q)
    out: list[tuple[pw.Field, pw.Expression]] = []
    if digits.isascii() and digits.isdigit():
        if len(digits) == 4:
            out.append((Member.phone_last4, Member.phone_last4 == digits))
        elif 5 <= len(digits) <= 10:
            out.append((Member.phone, _prefix(Member.phone, digits)))
    if _ASCII_KEY.match(low) and not low.isdigit():
        out.append((Member.name_initials, _prefix(Member.name_initials, low)))
        if len(low) >= 2:
            out.append((Member.name_pinyin, _prefix(Member.name_pinyin, low)))
    elif not low.isascii():
        typed = re.sub(r"\s+", "", q)  # 张 三: a name has no spaces
        full, _ = pinyin_keys(typed)
        if full:  # the characters typed, found through their pinyin's index range
            name_start = pw.fn.SUBSTR(Member.name, 1, len(typed)) == typed
            out.append((Member.name_pinyin, _prefix(Member.name_pinyin, full) & name_start))
    if _ID_PREFIX.match(low) and not is_uuid(low):
        out.append((Member.id, _prefix(Member.id, low)))
    return out


def search_members(
    raw: str | None,
    stores: frozenset[str] | None,
    page: int = 1,
    page_size: int = PAGE_SIZE,
) -> SearchPage:
    """Members matching ``raw``, exact matches (id, card, phone) first, then by name,
    pinyin, initials, phone digits or id prefix, in key order; only members registered at
    ``stores`` when given (a store or area manager's). At most ``MAX_RESULTS``."""
    q = clean_query(raw)
    if not q:
        return SearchPage(q, [], 1, 1, 0, False, False)
    if page < 1:
        raise ValidationError("页码须为正整数 (page must be 1 or more)", field="page")
    exact = _exact(q)
    ids = list(exact)
    for key, where in _ranges(q):
        query = (
            Member.select(Member.id)
            .where(where & (Member.status != "merged"))
            .order_by(key, Member.id)
            .limit(MAX_RESULTS + 1)
        )
        if stores is not None:
            query = query.where(Member.registered_store.in_(sorted(stores)))
        ids += [row[0] for row in query.tuples()]
    ids = list(dict.fromkeys(ids))
    if stores is not None and exact:
        allowed = {
            mid
            for (mid,) in Member.select(Member.id)
            .where(Member.id.in_(exact) & Member.registered_store.in_(sorted(stores)))
            .tuples()
        }
        ids = [mid for mid in ids if mid not in exact or mid in allowed]
        exact = [mid for mid in exact if mid in allowed]
    capped = len(ids) > MAX_RESULTS
    ids = ids[:MAX_RESULTS]
    pages = max(1, -(-len(ids) // page_size))
    if page > pages:
        page = pages
    shown = ids[(page - 1) * page_size : page * page_size]
    rows = {m.id: m for m in Member.select().where(Member.id.in_(shown))} if shown else {}
    return SearchPage(
        query=q,
        members=[rows[mid] for mid in shown if mid in rows],
        page=page,
        pages=pages,
        found=len(ids),
        capped=capped,
        exact=bool(exact),
    )


def cards_of(member_ids: list[str]) -> dict[str, list[Card]]:
    """Each member's cards, in one query."""
    out: dict[str, list[Card]] = {mid: [] for mid in member_ids}
    if member_ids:
        for card in Card.select().where(Card.member_id.in_(member_ids)).order_by(Card.card_no):
            out[card.member_id].append(card)
    return out
