"""Member change records written by one INSERT ... SELECT, for jobs that change many
members at once (the nightly tier evaluation; any set-based job).

``hq.changes.member_state`` builds a member's record in Python, one member at a time;
for hundreds of thousands of members that is most of a nightly job's time. Here the
same record is built by the database (``json_build_object`` on PostgreSQL,
``json_object`` on SQLite) for every member a subquery names, and the change log's
seqs are taken once for all of them. tests/hq/test_bulk_changes.py holds the two to
the same records, including every programme field (``MEMBER_PROGRAMME_FIELDS``), so a
field another part adds is sent the same way by both.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import peewee as pw

from core.protocol import MEMBER_PROGRAMME_FIELDS
from hq.changes import _take_change_seqs
from hq.models import JSONText, Member, is_postgres

# member_state's keys other than the programme fields, each from its column
_PLAIN = (
    ("member_id", "id"),
    ("name", "name"),
    ("phone", "phone"),
    ("gender", "gender"),
    ("birthday", "birthday"),
    ("birthday_calendar", "birthday_calendar"),
    ("birthday_leap_month", "birthday_leap_month"),
    ("card_type", "card_type"),
    ("tier", "tier"),
    ("staff_code", "staff_code"),
    ("password_hash", "password_hash"),
    ("registered_at", "registered_at"),
    ("registered_store", "registered_store"),
    ("status", "status"),
    ("merged_into", "merged_into"),
    ("points", "points"),
)
MAX_PAIRS = 50  # json_build_object takes at most 100 arguments


def _value(postgres: bool, field: pw.Field, ref: str) -> str:
    """A member column as the JSON value member_state gives it."""
    if isinstance(field, JSONText):
        return f"CAST({ref} AS json)" if postgres else f"json({ref})"
    if isinstance(field, pw.BooleanField) and not postgres:
        return f"json(CASE WHEN {ref} THEN 'true' ELSE 'false' END)"
    if isinstance(field, pw.DateTimeField):
        # member_state writes isoformat(): 'T' between date and time
        return (
            f"to_char({ref}, 'YYYY-MM-DD\"T\"HH24:MI:SS')"
            if postgres
            else f"replace({ref}, ' ', 'T')"
        )
    return ref


def member_state_sql(db: pw.Database, alias: str = "m") -> str:
    """A SQL expression (JSON) of ``hq.changes.member_state`` for the member row ``alias``."""
    postgres = is_postgres(db)
    fields = Member._meta.fields
    obj = "json_build_object" if postgres else "json_object"
    pairs = [(key, _value(postgres, fields[col], f"{alias}.{col}")) for key, col in _PLAIN]
    pairs.append(("points_debt", f"CASE WHEN {alias}.points < 0 THEN -{alias}.points ELSE 0 END"))
    pairs.append(
        ("stored_value", f"{obj}('principal', {alias}.sv_principal, 'bonus', {alias}.sv_bonus)")
    )
    lot = f"{obj}('lot_id', l.lot_id, 'earned_on', l.earned_on, 'expires_on', l.expires_on, 'remaining', l.remaining)"  # noqa: E501
    order = "l.expires_on, l.earned_on, l.lot_id"
    live = f"FROM points_lot l WHERE l.member_id = {alias}.id AND l.remaining > 0"
    if postgres:
        # json_agg of rows (the column names are the keys) is the quickest PostgreSQL has
        lots = (
            f"COALESCE((SELECT json_agg(x ORDER BY x.expires_on, x.earned_on, x.lot_id) FROM "  # noqa: S608
            f"(SELECT l.lot_id, l.earned_on, l.expires_on, l.remaining {live}) x), '[]'::json)"
        )
    else:
        lots = (
            f"(SELECT json_group_array(json(o)) FROM (SELECT {lot} AS o {live} ORDER BY {order}))"  # noqa: S608
        )
    pairs.append(("points_lots", lots))
    pairs.append(("through", _value(postgres, fields["through"], f"{alias}.through")))
    for name in MEMBER_PROGRAMME_FIELDS:
        pairs.append((name, _value(postgres, fields[name], f"{alias}.{fields[name].column_name}")))
    if len(pairs) > MAX_PAIRS:
        raise ValueError(f"member state has {len(pairs)} keys, more than {MAX_PAIRS} in one object")
    # keys are the fixed names above and column names from the model
    return f"{obj}(" + ", ".join(f"'{key}', {value}" for key, value in pairs) + ")"


def timestamp_param(db: pw.Database, at: dt.datetime) -> Any:
    """A naive UTC time as a bound parameter of raw SQL: as peewee keeps a DateTimeField
    on SQLite (text), as is on PostgreSQL."""
    return at if is_postgres(db) else str(at)


def log_member_changes(
    db: pw.Database, members_sql: str, params: list[Any], now: dt.datetime
) -> int:
    """Write a member change record (its full state, as ``flush_changes`` does) for every
    member id ``members_sql`` selects (one column, no duplicates), in member id order;
    inside the caller's transaction. Returns how many."""
    count = db.execute_sql(f"SELECT COUNT(*) FROM ({members_sql}) ids", params).fetchone()[0]  # noqa: S608
    if not count:
        return 0
    first = _take_change_seqs(db, count)
    p = db.param
    state = member_state_sql(db, "m")
    data = f"CAST({state} AS text)" if is_postgres(db) else state
    db.execute_sql(
        # identifiers and JSON keys are fixed; values are bound parameters
        "INSERT INTO change_record (seq, entity, key, op, data, created_at) "  # noqa: S608
        f"SELECT {p} + ROW_NUMBER() OVER (ORDER BY m.id) - 1, 'member', m.id, 'upsert', "
        f"{data}, {p} FROM member m WHERE m.id IN ({members_sql})",
        [first, timestamp_param(db, now) if isinstance(now, dt.datetime) else now, *params],
    )
    return count


def log_changes_of(db: pw.Database, member_ids: list[str], now: dt.datetime) -> int:
    """``log_member_changes`` for the members named (ids; duplicates are ignored): one
    array parameter on PostgreSQL, one JSON text on SQLite, however many there are."""
    if not member_ids:
        return 0
    ids = sorted(set(member_ids))
    if is_postgres(db):
        return log_member_changes(db, "SELECT unnest(%s::varchar[])", [ids], now)
    return log_member_changes(db, "SELECT value FROM json_each(?)", [json.dumps(ids)], now)
