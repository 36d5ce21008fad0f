"""Down-sync at the store: apply HQ's change records and snapshots, cursor in the same transaction.

Every record carries an entity's full current state, so applying one twice, or an
older snapshot and then a record, is harmless. Member balances are HQ's balances
plus the effect of this store's own outbox items HQ had not applied when it wrote
the record (``through[store]``): the cached balance never counts a local spend twice
and never loses one. Each adjustment of a cached balance is written to the ledger
(reason ``hq``) so that balances keep equalling the ledger.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from peewee import SqliteDatabase, fn

from core.errors import ProtocolError, ValidationError
from core.names import pinyin_keys
from core.protocol import (
    CHANGE_ENTITIES,
    MEMBER_PROGRAMME_FIELDS,
    Change,
    ChangePage,
    validate_change,
)
from edge.models import (
    Card,
    Ledger,
    Member,
    MemberAlias,
    MemberBase,
    Outbox,
    PointsLot,
    Product,
    Setting,
    SyncCoupon,
)
from edge.phones import install_lookup_key, member_phone_fields
from edge.security import MemberKeys
from edge.services.products import search_keys
from edge.sync.erase import erase_local_copies

log = logging.getLogger("edge.sync.apply")

DOWN_CURSOR = "sync.down_cursor"
SYNC_TABLES = (MemberBase, SyncCoupon)


OUTBOX_MEMBER = "json_extract(payload, '$.body.member_id')"


def ensure_sync_tables(db: SqliteDatabase) -> None:
    """Tables added by the sync agent after schema 1; created if an older database lacks them.

    Also an index on the member an outbox item concerns (an expression index: the
    outbox's columns stay as they are), so that a member's not-yet-reflected items
    are found without reading every pending item."""
    db.create_tables(SYNC_TABLES, safe=True)
    db.execute_sql(f"CREATE INDEX IF NOT EXISTS outbox_member ON outbox ({OUTBOX_MEMBER}, seq)")


def get_setting(key: str, default: Any = None) -> Any:
    row = Setting.get_or_none(Setting.key == key)
    return row.value if row is not None else default


def put_setting(key: str, value: Any) -> None:
    Setting.insert(key=key, value=value).on_conflict_replace().execute()


def down_cursor() -> int:
    return int(get_setting(DOWN_CURSOR, 0))


@dataclass
class Applier:
    """Applies change records for one store; call inside ``db.atomic()``."""

    store: str
    keys: MemberKeys
    now: str

    # ---- pages --------------------------------------------------------------------

    def apply_changes(self, changes: Iterable[Change]) -> int:
        """Apply records in seq order, then recompute every member they touched: first the
        ids merged away (sorted), whose cached balances move to their survivors, then the
        others (sorted), whose balances become HQ's figures plus this store's unreflected
        items. A survivor recomputed before its loser's hand-over would count the loser's
        balance twice, so the order depends on nothing but the records and the database
        (never on a set's iteration order)."""
        changes = sorted(changes, key=lambda c: c.seq)
        # merges first: a survivor's balance includes the local items of the ids merged into it
        for change in changes:
            if change.entity == "merge" and change.op == "upsert":
                self.apply_merge(change.data, change.seq)
            elif change.entity == "member" and change.data.get("status") == "merged":
                if change.data.get("merged_into"):
                    self._alias(change.key, change.data["merged_into"])
        touched: set[str] = set()
        for change in changes:
            self.apply_one(change, touched)
        ref = f"chg:{max(c.seq for c in changes)}"
        merged = merged_ids(touched)
        # a merged id's balance goes to its final survivor, which is then recomputed
        touched.update(alias_targets(merged))
        for member_id in [*sorted(merged), *sorted(touched - merged)]:
            self.recompute(member_id, ref)
        return len(changes)

    def apply_one(self, change: Change, touched: set[str]) -> None:
        if change.entity not in CHANGE_ENTITIES:
            # a newer HQ's entity: skipped, so the store keeps syncing (docs/protocol.md)
            log.warning("change %d: unknown entity %r, skipped", change.seq, change.entity)
            return
        getattr(self, f"_{change.entity}")(change, touched)

    # ---- entities -----------------------------------------------------------------

    def _rules(self, change: Change, touched: set[str]) -> None:
        """Taken only if this software can honour it; else refused and reported, and the
        rules in force stay (edge/sync/rules.py)."""
        if change.op != "upsert":
            return
        from edge.sync.rules import receive_rules

        receive_rules(self.store, change.data, self.now)

    def _offline_policy(self, change: Change, touched: set[str]) -> None:
        """The chain's policy (key ``kind``) and this store's overrides (``kind@store``);
        other stores' overrides are not ours. A delete drops the held policy."""
        from edge.services.offline import policy_setting

        kind, _, store = change.key.partition("@")
        if store and store != self.store:
            return
        setting = policy_setting(kind, store_override=bool(store))
        if change.op == "upsert":
            put_setting(setting, change.data)
        else:
            Setting.delete().where(Setting.key == setting).execute()

    def _named_map(self, setting: str, change: Change) -> None:
        current = dict(get_setting(setting, {}) or {})
        if change.op == "delete":
            current.pop(change.key, None)
        else:
            current[change.key] = change.data
        put_setting(setting, current)

    def _card_type(self, change: Change, touched: set[str]) -> None:
        self._named_map("card_types", change)

    def _tier(self, change: Change, touched: set[str]) -> None:
        self._named_map("tiers", change)

    def _product(self, change: Change, touched: set[str]) -> None:
        d = change.data
        if change.op == "delete":
            Product.update(active=False, updated_at=self.now).where(
                Product.sku == change.key
            ).execute()
            return
        barcode = d.get("barcode") or None
        if barcode:
            Product.update(barcode=None).where(
                (Product.barcode == barcode) & (Product.sku != change.key)
            ).execute()
        price = d.get("unit_price", d.get("price"))
        if isinstance(price, bool) or not isinstance(price, int):
            raise ProtocolError(f"product {change.key}: unit_price must be integer fen")
        cost = d.get("cost")
        if cost is not None and (isinstance(cost, bool) or not isinstance(cost, int)):
            raise ProtocolError(f"product {change.key}: cost must be integer fen or null")
        category = d.get("category") or ""
        if not isinstance(category, str):
            raise ProtocolError(f"product {change.key}: category must be a text")
        Product.insert(
            sku=change.key,
            barcode=barcode,
            name=d.get("name") or change.key,
            **search_keys(d.get("name") or change.key),
            price=price,
            promo_price=d.get("promo_price"),
            no_member_discount=bool(d.get("no_member_discount", False)),
            no_points=bool(d.get("no_points", False)),
            active=bool(d.get("active", True)),
            updated_at=self.now,
            category=category,
            cost=cost,
        ).on_conflict_replace().execute()

    def _card(self, change: Change, touched: set[str]) -> None:
        d = change.data
        if change.op == "delete":
            Card.delete().where(Card.card_no == change.key).execute()
            return
        existing = Card.get_or_none(Card.card_no == change.key)
        Card.insert(
            card_no=change.key,
            member_id=d["member_id"],
            status=d.get("status", "active"),
            issued_at=existing.issued_at if existing else (d.get("issued_at") or self.now),
        ).on_conflict_replace().execute()

    def _card_block(self, change: Change, touched: set[str]) -> None:
        blocked = bool(change.data.get("blocked", True)) and change.op == "upsert"
        updated = (
            Card.update(status="blocked" if blocked else "active")
            .where(Card.card_no == change.key)
            .execute()
        )
        if not updated:
            log.info("card_block %s for a card this store does not know", change.key)

    def _coupon(self, change: Change, touched: set[str]) -> None:
        if change.op == "delete":
            SyncCoupon.delete().where(SyncCoupon.code == change.key).execute()
            return
        d = change.data
        SyncCoupon.insert(
            code=change.key,
            member_id=d.get("member_id"),
            value=int(d.get("value") or 0),
            status=d.get("status", "issued"),
            expires_on=d.get("expires_on"),
            data=d,
        ).on_conflict_replace().execute()

    def _merge(self, change: Change, touched: set[str]) -> None:
        d = change.data
        touched.update({d["from_member_id"], d["to_member_id"]})

    def _member(self, change: Change, touched: set[str]) -> None:
        if change.op == "delete":
            Member.update(status="blocked", updated_at=self.now).where(
                Member.id == change.key
            ).execute()
            return
        self.upsert_member(change.key, change.data)
        if change.op == "erase" or change.data.get("status") == "erased":
            erase_local_copies(change.key)  # edge/sync/erase.py
        touched.add(change.key)
        if change.data.get("status") == "merged" and change.data.get("merged_into"):
            touched.add(change.data["merged_into"])

    # ---- the programme's entities (issue 11): one ``_<entity>`` handler per entity,
    # one block per part

    # -- tiers (tiers, growth value, member day)

    # -- cards (card types as products, card replacement)

    def keep_local_card_changes(self, member_ids: list[str], through: int) -> None:
        """A card sold here, or a 充值升级 made here, that HQ had not applied when it sent
        the member (seq > ``through``) stays: HQ's card type and last day are replaced by
        those of this store's latest such item, as the balances are by its other items."""
        marks = ", ".join("?" for _ in member_ids)
        row = _one(
            "SELECT kind, json_extract(payload, '$.body.card_type'), "  # noqa: S608
            "json_extract(payload, '$.body.valid_to') FROM outbox "
            f"WHERE {OUTBOX_MEMBER} IN ({marks}) AND seq > ? AND reject_code IS NULL "
            "AND (kind = 'card_sale' OR (kind = 'topup' "
            "AND json_extract(payload, '$.body.card_type') IS NOT NULL)) "
            "ORDER BY seq DESC LIMIT 1",
            (*member_ids, through),
        )
        if row is not None:
            Member.update(card_type=row[1], card_expires_on=row[2]).where(
                Member.id == member_ids[0]
            ).execute()

    # -- points (points rules, gifts, referral)
    def _gift(self, change: Change, touched: set[str]) -> None:
        """The gift catalogue (docs/programme/points.md): kept as sent; a delete or an
        inactive gift is no longer offered."""
        from edge.models import Gift

        d = change.data
        if change.op == "delete":
            Gift.update(active=False).where(Gift.gift_id == change.key).execute()
            return
        points = d.get("points")
        if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
            raise ProtocolError(f"gift {change.key}: points must be a positive integer")
        Gift.insert(
            gift_id=change.key,
            name=str(d.get("name") or change.key),
            points=points,
            kind=d.get("kind") or "goods",
            sku=d.get("sku"),
            coupon_template=d.get("coupon_template"),
            active=bool(d.get("active", True)),
            valid_from=d.get("valid_from"),
            valid_to=d.get("valid_to"),
        ).on_conflict_replace().execute()

    # -- coupons (coupons)

    def _coupon_template(self, change: Change, touched: set[str]) -> None:
        """A coupon template as HQ published it; one this software cannot read is kept
        inactive (its coupons cannot be priced here) rather than stopping the sync."""
        from core.coupons import CouponTemplate as Template
        from edge.models import CouponTemplate

        if change.op == "delete":
            CouponTemplate.update(active=False).where(CouponTemplate.id == change.key).execute()
            return
        data = {k: v for k, v in change.data.items() if k != "active"}
        try:
            data = Template.from_dict(data).to_dict()
            active = bool(change.data.get("active", True))
        except ValidationError as exc:
            log.warning("coupon template %s not usable here: %s", change.key, exc.message)
            active = False
        CouponTemplate.insert(
            id=change.key, data=data, active=active
        ).on_conflict_replace().execute()

    # -- upkeep (stored value, profile, password)

    def _upkeep_after_member(self, member_id: str, d: dict[str, Any]) -> None:
        """This store's profile edits and passwords HQ has not applied yet stay; HQ's
        cleared password (a reset at HQ) clears it here (edge/sync/upkeep.py)."""
        from edge.sync.upkeep import overlay_pending

        overlay_pending(member_id, d, self.store)

    # -- staff (maintainers, categories and cost)

    def _staff(self, change: Change, touched: set[str]) -> None:
        from edge.services.maintainers import apply_staff

        apply_staff(change.key, change.op, change.data, self.now)

    def _staff_transfer(self, change: Change, touched: set[str]) -> None:
        from edge.services.maintainers import apply_transfer

        apply_transfer(self.store, change.key, change.op, change.data, self.now)

    # -- follow-ups (issue 14)

    def _followup(self, change: Change, touched: set[str]) -> None:
        from edge.services.followups import apply_followup

        apply_followup(self.store, change.key, change.op, change.data, self.now)

    # ---- members --------------------------------------------------------------------

    def upsert_member(self, member_id: str, d: dict[str, Any]) -> None:
        existing = _one(SQL.member_phone, (member_id,))
        # a phone held here (this store's registration, not yet acknowledged) stays until
        # edge.phones.prune_phones drops it
        fields = member_fields(d, existing[1] if existing is not None else None, self.now)
        if fields["phone_hash"]:
            # HQ keeps one live member per phone: a local holder of the same phone is stale
            _run(SQL.release_phone, (fields["phone_hash"], member_id))
        if existing is None:
            Member.insert(id=member_id, **fields).execute()
        else:
            values = [SQL.DB_VALUE.get(name, _same)(v) for name, v in fields.items()]
            _run(SQL.update_member, (*values, member_id))
            self._upkeep_after_member(member_id, d)  # upkeep: pending edits, HQ's reset
        sv = d.get("stored_value") or {}
        _run(
            SQL.replace_base,
            (
                member_id,
                int(sv.get("principal", 0)),
                int(sv.get("bonus", 0)),
                int(d.get("points_debt", 0)),
                MemberBase.lots.db_value(d.get("points_lots") or []),
                MemberBase.through.db_value(d.get("through") or {}),
            ),
        )

    def _alias(self, old_id: str, survivor: str) -> None:
        onward = MemberAlias.get_or_none(MemberAlias.old_id == survivor)
        if onward is not None:  # the survivor was itself merged on (aliases stay one hop)
            survivor = onward.member_id
        if old_id == survivor:
            return
        MemberAlias.insert(old_id=old_id, member_id=survivor).on_conflict_replace().execute()
        # an id merged earlier into the one now merged follows it to the survivor
        MemberAlias.update(member_id=survivor).where(MemberAlias.member_id == old_id).execute()

    def apply_merge(self, d: dict[str, Any], seq: int) -> None:
        old, survivor = d["from_member_id"], d["to_member_id"]
        self._alias(old, survivor)
        Member.update(status="merged", phone_hash=None, updated_at=self.now).where(
            Member.id == old
        ).execute()
        Card.update(member_id=survivor).where(Card.member_id == old).execute()

    def recompute(self, member_id: str, ref: str) -> None:
        """Cached balances := HQ's + this store's unreflected items; the difference is ledgered."""
        member = _one(SQL.member_balances, (member_id,))
        if member is not None and member[0] == "merged":
            self.hand_over(Member.get_by_id(member_id), ref)
            return
        base = _one(SQL.base, (member_id,))
        if member is None or base is None:
            return
        _, member_principal, member_bonus, member_debt = member
        principal, bonus, debt = base[0], base[1], base[2]
        lots = {
            lot["lot_id"]: {
                "earned_on": lot["earned_on"],
                "expires_on": lot["expires_on"],
                "remaining": int(lot["remaining"]),
            }
            for lot in MemberBase.lots.python_value(base[3]) or []
        }
        through = int((MemberBase.through.python_value(base[4]) or {}).get(self.store, 0))
        ids = [member_id] + [old for (old,) in _all(SQL.aliases_of, (member_id,))]
        for item in unreflected_items(ids, through):
            principal, bonus, debt = replay(item, principal, bonus, debt, lots)
        self.keep_local_card_changes(ids, through)  # -- cards
        cached = [_Lot(*row) for row in _all(SQL.lots_of, (member_id,))]
        held_here = {lot.lot_id for lot in cached}
        elsewhere = [k for k in lots if k not in held_here]
        if elsewhere:
            by_id = f"{SQL.lots} WHERE lot_id IN ({SQL.marks(len(elsewhere))})"  # noqa: S608
            cached += [_Lot(*row) for row in _all(by_id, elsewhere)]
        old_points = (
            sum(lot.remaining for lot in cached if lot.member_id == member_id) - member_debt
        )
        new_points = sum(lot["remaining"] for lot in lots.values()) - debt
        rows = []
        for lot in cached:
            if lot.member_id != member_id and lot.remaining:
                # a lot HQ now lists for this member but cached under another (a merge whose
                # record has not reached us yet) changes hands here, in the ledger too
                rows.append(self._ledger_row(lot.member_id, "points", -lot.remaining, ref))
                rows.append(self._ledger_row(member_id, "points", lot.remaining, ref))
                old_points += lot.remaining
        for account, delta in (
            ("sv_principal", principal - member_principal),
            ("sv_bonus", bonus - member_bonus),
            ("points", new_points - old_points),
        ):
            if delta:
                rows.append(self._ledger_row(member_id, account, delta, ref))
        _insert_ledger(rows)
        if (principal, bonus, debt) != (member_principal, member_bonus, member_debt):
            _run(SQL.set_balances, (principal, bonus, debt, member_id))
        # write only the lots that differ: a member's lots are mostly unchanged
        current = {
            lot.lot_id: (lot.member_id, lot.earned_on, lot.expires_on, lot.remaining)
            for lot in cached
        }
        gone = [k for k, v in current.items() if v[0] == member_id and k not in lots]
        if gone:
            _run(f"DELETE FROM points_lot WHERE lot_id IN ({SQL.marks(len(gone))})", gone)  # noqa: S608
        changed = [
            (
                lot_id,
                member_id,
                lot["earned_on"],
                lot["expires_on"],
                lot["remaining"],
                lot.get("origin", "hq"),
            )
            for lot_id, lot in lots.items()
            if current.get(lot_id)
            != (member_id, lot["earned_on"], lot["expires_on"], lot["remaining"])
        ]
        if changed:
            Member._meta.database.cursor().executemany(SQL.replace_lot, changed)

    def hand_over(self, loser: Member, ref: str) -> None:
        """A member merged at HQ: its cached balances and lots move to the survivor here,
        in the ledger too (the survivor's own record then sets the final figures)."""
        alias = MemberAlias.get_or_none(MemberAlias.old_id == loser.id)
        survivor = Member.get_or_none(Member.id == alias.member_id) if alias else None
        points = _points_total(loser.id) - loser.points_debt
        moves = [
            ("sv_principal", loser.sv_principal),
            ("sv_bonus", loser.sv_bonus),
            ("points", points),
        ]
        rows = []
        for account, amount in moves:
            if not amount:
                continue
            rows.append(self._ledger_row(loser.id, account, -amount, ref))
            if survivor is not None:
                rows.append(self._ledger_row(survivor.id, account, amount, ref))
        _insert_ledger(rows)
        if survivor is not None:
            Member.update(
                sv_principal=Member.sv_principal + loser.sv_principal,
                sv_bonus=Member.sv_bonus + loser.sv_bonus,
                points_debt=Member.points_debt + loser.points_debt,
            ).where(Member.id == survivor.id).execute()
            PointsLot.update(member_id=survivor.id).where(PointsLot.member_id == loser.id).execute()
        else:
            PointsLot.delete().where(PointsLot.member_id == loser.id).execute()
        Member.update(sv_principal=0, sv_bonus=0, points_debt=0).where(
            Member.id == loser.id
        ).execute()

    def _ledger_row(self, member_id: str, account: str, delta: int, ref: str) -> dict[str, Any]:
        return {
            "member_id": member_id,
            "account": account,
            "delta": delta,
            "reason": "hq",
            "ref": ref,
            "occurred_at": self.now,
            "day": self.now[:10],
            "offline": False,
        }


@functools.lru_cache(maxsize=65536)
def cached_pinyin(name: str) -> tuple[str, str]:
    return pinyin_keys(name)


class _Lot(NamedTuple):
    lot_id: str
    member_id: str
    earned_on: str
    expires_on: str
    remaining: int


def _same(value: Any) -> Any:
    return value


class SQL:
    """What the applier runs for every member record, written out once: a page's time
    went mostly to the query builder, not to SQLite (tables and columns as in
    edge/models.py; values are bound parameters)."""

    # the ledger's columns, as BulkRows writes them (all but the row id)
    LEDGER_FIELDS = tuple(f.name for f in Ledger._meta.sorted_fields if f.name != "id")
    member_phone = "SELECT phone_hash, phone_enc FROM member WHERE id = ?"
    release_phone = "UPDATE member SET phone_hash = NULL WHERE phone_hash = ? AND id != ?"
    # in the order of the fields upsert_member builds
    update_member = (
        "UPDATE member SET name = ?, name_pinyin = ?, name_initials = ?, phone_hash = ?, "
        "phone_enc = ?, phone_tail = ?, gender = ?, birthday = ?, birthday_calendar = ?, "
        "birthday_leap_month = ?, card_type = ?, tier = ?, staff_code = ?, "
        "password_hash = COALESCE(?, password_hash), status = ?, "
        "registered_at = ?, registered_store = ?, updated_at = ?"
    )
    # then the programme's fields (column names from the code; values are bound)
    update_member += "".join(f", {name} = ?" for name in MEMBER_PROGRAMME_FIELDS)
    update_member += " WHERE id = ?"
    # the programme's member fields (core.protocol.MEMBER_PROGRAMME_FIELDS): their
    # defaults, and how each is written by raw SQL (JSON ones as text)
    PROGRAMME_DEFAULTS = {
        name: (lambda f: f.default() if callable(f.default) else f.default)(
            Member._meta.fields[name]
        )
        for name in MEMBER_PROGRAMME_FIELDS
    }
    DB_VALUE = {name: Member._meta.fields[name].db_value for name in MEMBER_PROGRAMME_FIELDS}
    # the member table's columns in order, each with the value a bulk row gets when it
    # does not name it (a column only the till keeps)
    MEMBER_COLUMNS = tuple(
        (f.column_name, f.db_value(f.default() if callable(f.default) else f.default))
        for f in Member._meta.sorted_fields
    )
    member_balances = "SELECT status, sv_principal, sv_bonus, points_debt FROM member WHERE id = ?"
    set_balances = "UPDATE member SET sv_principal = ?, sv_bonus = ?, points_debt = ? WHERE id = ?"
    replace_base = (
        "INSERT OR REPLACE INTO member_base "
        "(member_id, sv_principal, sv_bonus, points_debt, lots, through) "
        "VALUES (?, ?, ?, ?, ?, ?)"
    )
    base = (
        "SELECT sv_principal, sv_bonus, points_debt, lots, through FROM member_base "
        "WHERE member_id = ?"
    )
    aliases_of = "SELECT old_id FROM member_alias WHERE member_id = ?"
    lots = "SELECT lot_id, member_id, earned_on, expires_on, remaining FROM points_lot"
    lots_of = lots + " WHERE member_id = ?"
    replace_lot = (
        "INSERT OR REPLACE INTO points_lot "
        "(lot_id, member_id, earned_on, expires_on, remaining, origin) VALUES (?, ?, ?, ?, ?, ?)"
    )
    insert_ledger = (
        f"INSERT INTO ledger ({', '.join(LEDGER_FIELDS)}) "  # noqa: S608
        f"VALUES ({', '.join('?' for _ in LEDGER_FIELDS)})"
    )

    @staticmethod
    def marks(n: int) -> str:
        return ", ".join("?" for _ in range(n))


def _all(sql: str, params: Iterable[Any]) -> list[tuple[Any, ...]]:
    return Member._meta.database.execute_sql(sql, tuple(params)).fetchall()


def _one(sql: str, params: Iterable[Any]) -> tuple[Any, ...] | None:
    return Member._meta.database.execute_sql(sql, tuple(params)).fetchone()


def _run(sql: str, params: Iterable[Any]) -> None:
    Member._meta.database.execute_sql(sql, tuple(params))


def _insert_ledger(rows: list[dict[str, Any]]) -> None:
    if rows:
        Member._meta.database.cursor().executemany(
            SQL.insert_ledger, [tuple(r[f] for f in SQL.LEDGER_FIELDS) for r in rows]
        )


def _ids_where(select: str, member_ids: Iterable[str], chunk: int = 900) -> set[str]:
    """``select`` (ending in ``IN``) over these ids, a bounded number of parameters at a time."""
    ids = sorted(member_ids)
    out: set[str] = set()
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        out.update(row[0] for row in _all(f"{select} ({SQL.marks(len(part))})", part))
    return out


def merged_ids(member_ids: Iterable[str]) -> set[str]:
    """Those of these members that this store holds as merged into another."""
    return _ids_where("SELECT id FROM member WHERE status = 'merged' AND id IN", member_ids)


def alias_targets(member_ids: Iterable[str]) -> set[str]:
    """The survivors these (merged) ids resolve to."""
    return _ids_where("SELECT member_id FROM member_alias WHERE old_id IN", member_ids)


def _points_total(member_id: str) -> int:
    return int(
        PointsLot.select(fn.COALESCE(fn.SUM(PointsLot.remaining), 0))
        .where(PointsLot.member_id == member_id)
        .scalar()
    )


# what ``replay`` reads of an item: extracted by SQLite in one call per row (one parse
# of the payload in C), rather than loading every item's whole body in Python
REPLAY_BODY_KEYS = (
    "sale_id",
    "stored_value",
    "points_used",
    "points_lots_used",
    "points_earned",
    "points_lot",
    "principal",
    "bonus",
    "points_lots_restored",
    "points_reversed",
    "points_debt",
)
_REPLAY_PATHS = ", ".join(
    ["'$.kind'", "'$.occurred_at'"] + [f"'$.body.{key}'" for key in REPLAY_BODY_KEYS]
)


def unreflected_items(member_ids: list[str], through: int) -> list[dict[str, Any]]:
    """This store's items for these members that HQ had not applied (seq > through),
    with the body fields ``replay`` reads."""
    marks = ", ".join("?" for _ in member_ids)
    cursor = Outbox._meta.database.execute_sql(
        f"SELECT json_extract(payload, {_REPLAY_PATHS}) FROM outbox "  # noqa: S608
        f"WHERE {OUTBOX_MEMBER} IN ({marks}) AND seq > ? "
        "AND kind IN ('sale', 'return', 'topup', 'sv_refund', 'gift_redemption') "
        "AND reject_code IS NULL ORDER BY seq",
        (*member_ids, through),
    )
    items = []
    for (extracted,) in cursor:
        kind, occurred_at, *values = json.loads(extracted)
        body = {k: v for k, v in zip(REPLAY_BODY_KEYS, values, strict=True) if v is not None}
        items.append({"kind": kind, "occurred_at": occurred_at, "body": body})
    return items


def _take(lots: dict[str, dict[str, Any]], points: int, prefer: list[Any]) -> int:
    """Take points from the named lots, then soonest-expiring; return what no lot covered."""
    left = points
    for lot_id, wanted in prefer:
        lot = lots.get(str(lot_id))
        if lot is None or left <= 0:
            continue
        take = min(int(wanted), lot["remaining"], left)
        lot["remaining"] -= take
        left -= take
    for lot_id in sorted(lots, key=lambda k: (lots[k]["expires_on"], k)):
        if left <= 0:
            break
        take = min(lots[lot_id]["remaining"], left)
        lots[lot_id]["remaining"] -= take
        left -= take
    return left


def replay(
    item: dict[str, Any], principal: int, bonus: int, debt: int, lots: dict[str, dict[str, Any]]
) -> tuple[int, int, int]:
    """One local item's effect on a member's balances (lots changed in place)."""
    body, kind = item["body"], item["kind"]
    day = item["occurred_at"][:10]
    if kind == "topup":
        return principal + int(body["principal"]), bonus + int(body["bonus"]), debt
    if kind == "sv_refund":  # upkeep: principal refunded in cash, bonus forfeited
        return principal - int(body["principal"]), bonus - int(body["bonus"]), debt
    sv = body.get("stored_value") or {}
    if kind == "sale":
        principal -= int(sv.get("principal", 0))
        bonus -= int(sv.get("bonus", 0))
        used = int(body.get("points_used") or 0)
        if used:
            debt += _take(lots, used, body.get("points_lots_used") or [])
        earned = int(body.get("points_earned") or 0)
        if earned:
            pay = min(debt, earned)
            debt -= pay
            new = body.get("points_lot") or {}
            lot_id = new.get("lot_id") or f"{body['sale_id']}:earn"
            lot = lots.setdefault(
                lot_id,
                {
                    "earned_on": new.get("earned_on") or day,
                    "expires_on": new.get("expires_on") or day,
                    "remaining": 0,
                    "origin": body["sale_id"],
                },
            )
            lot["remaining"] += earned - pay
    elif kind == "gift_redemption":  # points (docs/programme/points.md)
        debt += _take(lots, int(body.get("points_used") or 0), body.get("points_lots_used") or [])
    elif kind == "return":
        principal += int(sv.get("principal", 0))
        bonus += int(sv.get("bonus", 0))
        for lot_id, n in body.get("points_lots_restored") or []:
            local = PointsLot.get_or_none(PointsLot.lot_id == str(lot_id))
            lot = lots.setdefault(
                str(lot_id),
                {
                    "earned_on": local.earned_on if local else day,
                    "expires_on": local.expires_on
                    if local
                    else (dt.date.fromisoformat(day) + dt.timedelta(days=365)).isoformat(),
                    "remaining": 0,
                    "origin": "restored",
                },
            )
            lot["remaining"] += int(n)
        reversed_pts = int(body.get("points_reversed") or 0)
        new_debt = int(body.get("points_debt") or 0)
        if reversed_pts - new_debt > 0:
            debt += _take(lots, reversed_pts - new_debt, [])
        debt += new_debt
    return principal, bonus, debt


# ---- pages, cursor, snapshots -------------------------------------------------------


def apply_page(
    db: SqliteDatabase, store: str, keys: MemberKeys, page: ChangePage, now: str
) -> tuple[int, int]:
    """Apply the records after our cursor and save the new cursor in one transaction.

    Returns (records applied, cursor after). A page that starts after cursor + 1 is a
    gap: nothing is applied and the caller asks for the changes after the cursor."""
    with db.atomic():
        cursor = down_cursor()
        if page.from_seq > cursor + 1:
            return 0, cursor
        fresh = [c for c in page.changes if c.seq > cursor]
        applied = Applier(store, keys, now).apply_changes(fresh) if fresh else 0
        new_cursor = max(cursor, page.to_seq)
        if new_cursor != cursor:
            put_setting(DOWN_CURSOR, new_cursor)
        return applied, new_cursor


class BulkRows:
    """Rows of a fresh store's snapshot, written with one prepared statement per table.

    The ORM's per-row overhead would dominate a million-member load; the rows are the
    same ones ``Applier`` writes, in the models' own column order."""

    TABLES = (Member, Card, PointsLot, Ledger)

    def __init__(self, db: SqliteDatabase, chunk: int = 20000) -> None:
        self.db = db
        self.chunk = chunk
        self.columns = {
            m: [
                f.column_name for f in m._meta.sorted_fields if not (m is Ledger and f.name == "id")
            ]
            for m in self.TABLES
        }
        self.rows: dict[Any, list[tuple[Any, ...]]] = {m: [] for m in self.TABLES}
        self.sql = {
            # identifiers come from the models, values are bound parameters
            m: 'INSERT OR REPLACE INTO "{}" ({}) VALUES ({})'.format(  # noqa: S608
                m._meta.table_name,
                ", ".join(f'"{c}"' for c in cols),
                ", ".join("?" for _ in cols),
            )
            for m, cols in self.columns.items()
        }

    def add(self, model: Any, row: tuple[Any, ...]) -> None:
        rows = self.rows[model]
        rows.append(row)
        if len(rows) >= self.chunk:
            self.flush(model)

    def flush(self, model: Any = None) -> None:
        for m in [model] if model is not None else self.TABLES:
            if self.rows[m]:
                self.db.cursor().executemany(self.sql[m], self.rows[m])
                self.rows[m].clear()


def member_fields(d: dict[str, Any], phone_enc: bytes | None, now: str) -> dict[str, Any]:
    """The till's member columns (balances aside) from HQ's member record ``d``, as Python
    values: by a change (``Applier.upsert_member``) and by a snapshot alike. HQ sends the
    chain's lookup hash and the last four digits, never the phone (``phone_enc`` is the
    phone this store holds, if any)."""
    phone_hash, phone_tail = member_phone_fields(d)
    name = d.get("name") or ""
    pinyin, initials = cached_pinyin(name)
    return {
        "name": name,
        "name_pinyin": pinyin,
        "name_initials": initials,
        "phone_hash": phone_hash,
        "phone_enc": phone_enc,
        "phone_tail": phone_tail,
        "gender": d.get("gender") or "",
        "birthday": d.get("birthday"),
        "birthday_calendar": d.get("birthday_calendar") or "solar",
        "birthday_leap_month": bool(d.get("birthday_leap_month")),
        "card_type": d.get("card_type") or "普通卡",
        "tier": d.get("tier") or "",
        "staff_code": d.get("staff_code"),
        # HQ's hash when it has one; else the one set here stays (HQ may not have
        # ingested this store's registration yet)
        "password_hash": d.get("password_hash"),
        "status": d.get("status") or "active",
        "registered_at": d.get("registered_at") or now,
        "registered_store": d.get("registered_store") or "",
        "updated_at": now,
    } | {name: d.get(name, SQL.PROGRAMME_DEFAULTS[name]) for name in MEMBER_PROGRAMME_FIELDS}


def member_snapshot_rows(
    member_id: str, d: dict[str, Any], now: str
) -> list[tuple[Any, tuple[Any, ...]]]:
    """The rows a fresh store holds for one snapshot member: (model, values in column order)."""
    # a fresh store holds no phone in clear: it has registered no one yet
    row = member_fields(d, None, now)
    sv = d.get("stored_value") or {}
    principal, bonus = int(sv.get("principal", 0)), int(sv.get("bonus", 0))
    debt = int(d.get("points_debt", 0))
    lots = d.get("points_lots") or []
    if row["status"] == "merged":
        principal = bonus = debt = 0
        lots = []
    row |= {"id": member_id, "sv_principal": principal, "sv_bonus": bonus, "points_debt": debt}
    for name in MEMBER_PROGRAMME_FIELDS:
        row[name] = SQL.DB_VALUE[name](row[name])
    out: list[tuple[Any, tuple[Any, ...]]] = [
        (Member, tuple(row.get(c, default) for c, default in SQL.MEMBER_COLUMNS))
    ]
    points = -debt
    for lot in lots:
        remaining = int(lot["remaining"])
        out.append(
            (
                PointsLot,
                (lot["lot_id"], member_id, lot["earned_on"], lot["expires_on"], remaining, "hq"),
            )
        )
        points += remaining
    for account, delta in (("sv_principal", principal), ("sv_bonus", bonus), ("points", points)):
        if delta:
            out.append(
                (Ledger, (member_id, account, delta, "hq", "snapshot", now, now[:10], False))
            )
    return out


def card_snapshot_row(d: dict[str, Any], now: str) -> tuple[Any, ...]:
    return (d["card_no"], d["member_id"], d.get("status", "active"), d.get("issued_at") or now)


def load_snapshot(
    db: SqliteDatabase,
    store: str,
    keys: MemberKeys,
    records: Iterable[dict[str, Any]],
    cursor: int,
    now: str,
    chunk: int = 20000,
    lookup_key: dict[str, str] | None = None,
    keep_since: str = "",
) -> int:
    """Load a snapshot's records and set the down cursor to ``cursor``, in one transaction.

    A store without members takes the bulk path for members and cards; otherwise
    every record goes through the same code as a change page. (A member needs no
    ``MemberBase`` row until HQ sends a change for it: the snapshot balances are the
    cached balances, and the till moves them with every local fact.)"""
    applier = Applier(store, keys, now)
    count = 0
    with db.atomic():
        if lookup_key is not None:
            # before the records: the store's own phones are hashed as HQ's records are
            install_lookup_key(db, keys, lookup_key, keep_since or now)
        fresh_store = not Member.select().exists()
        bulk = BulkRows(db, chunk)
        others: list[Change] = []
        for raw in records:
            count += 1
            entity = raw.get("entity")
            if fresh_store and raw.get("op") == "upsert" and entity in ("member", "card"):
                if entity == "member":
                    for model, row in member_snapshot_rows(raw["key"], raw["data"], now):
                        bulk.add(model, row)
                else:
                    bulk.add(Card, card_snapshot_row(raw["data"], now))
                continue
            others.append(validate_change(raw, "snapshot record"))
            if len(others) >= chunk:
                bulk.flush()
                applier.apply_changes(others)
                others.clear()
        bulk.flush()
        if others:
            applier.apply_changes(others)
        put_setting(DOWN_CURSOR, cursor)
    return count
