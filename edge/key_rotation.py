"""Member data key rotation while the till trades (issue 10, "Personal data").

``huiyuan-edge rotate-member-key``:

1. makes a new member key and stores it in the database wrapped (encrypted) under the
   current one (``setting`` ``member_key.next``). From that commit on, every process that
   writes a phone (``writing_keys``, read inside the write transaction) writes it under the
   new key, and reads either: each blob names its key (edge/security.py);
2. encrypts every held phone and the chain lookup key again under the new key, a few rows
   per transaction, so the till waits at most one short transaction;
3. writes the new key over the key file (a new file renamed over the old: atomic), then
   records the new key id as current (``member_key.current``) and drops the wrapped copy:
   the old key is retired, and nothing in the database decrypts with it any more.

A run that stops anywhere is finished by running it again. A process still holding only
the old key after the end reads the key file again when it meets the new key id; under
systemd its credential copy is the old file until it restarts, so restart the services
once at a quiet moment (docs/operations.md).
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from peewee import SqliteDatabase

from core.errors import ConfigError
from core.keyfiles import write_atomically
from edge.models import Setting
from edge.security import BLOB_MAGIC, KEY_BYTES, MemberKeys

log = logging.getLogger("edge.key_rotation")

NEXT_SETTING = "member_key.next"
CURRENT_SETTING = "member_key.current"
SETTINGS_ENCRYPTED = ("phones.lookup_key",)  # settings holding {"enc": base64 blob}


def learn_next_key(keys: MemberKeys, key_id: str | None = None) -> MemberKeys | None:
    """The key a rotation in progress writes with, learned from its wrapped copy (None when
    no rotation is in progress, or it is not ``key_id``)."""
    row = Setting.get_or_none(Setting.key == NEXT_SETTING)
    if row is None or (key_id is not None and row.value["id"] != key_id):
        return None
    found = keys.find(row.value["id"])
    if found is not None:
        return found
    wrapped = base64.b64decode(row.value["wrapped"])
    master = base64.b64decode(keys.decrypt(wrapped, NEXT_SETTING))
    new = MemberKeys.from_master(master)
    keys.learn(new)
    return new


def writing_keys(keys: MemberKeys) -> MemberKeys:
    """The key new blobs are written with now; call inside the write transaction."""
    new = learn_next_key(keys)
    if new is not None:
        return new
    row = Setting.get_or_none(Setting.key == CURRENT_SETTING)
    if row is None or row.value["id"] == keys.key_id:
        return keys
    current = keys.find(row.value["id"])
    if current is None:
        raise ConfigError(
            "会员数据密钥已更换, 请重启本服务 (the member key was rotated and this process "
            "cannot read the new key file: restart it)"
        )
    return current


@dataclass
class RotationReport:
    old_id: str
    new_id: str
    rows: int  # blobs encrypted again
    batches: int


def _held_not_under(db: SqliteDatabase, prefix: bytes, limit: int) -> list[tuple[str, bytes]]:
    return db.execute_sql(
        "SELECT id, phone_enc FROM member WHERE phone_enc IS NOT NULL "
        "AND substr(phone_enc, 1, ?) != ? LIMIT ?",
        (len(prefix), prefix, limit),
    ).fetchall()


def rotate_member_key(
    db: SqliteDatabase,
    keys: MemberKeys,
    key_path: Path,
    batch: int = 100,
    after_batch: Callable[[int], None] | None = None,
) -> RotationReport:
    """Rotate the member key (see the module's docstring). ``keys`` is the key in
    ``key_path``; ``after_batch(rows so far)`` is called between transactions."""
    key_path = Path(key_path)
    row = Setting.get_or_none(Setting.key == NEXT_SETTING)
    if row is None:
        master = os.urandom(KEY_BYTES)
        new = MemberKeys.from_master(master)
        wrapped = keys.encrypt(base64.b64encode(master).decode("ascii"), NEXT_SETTING)
        with db.atomic():
            Setting.insert(
                key=NEXT_SETTING,
                value={"id": new.key_id, "wrapped": base64.b64encode(wrapped).decode("ascii")},
            ).execute()
        log.info("member key rotation %s -> %s started", keys.key_id, new.key_id)
    elif row.value["id"] == keys.key_id:
        # a rotation that stopped after writing the key file: only the bookkeeping is left
        new, master = keys, b""
        log.info("member key rotation to %s resumed after its key file was written", new.key_id)
    else:
        # a rotation that stopped before: the same new key, from its wrapped copy
        wrapped = base64.b64decode(row.value["wrapped"])
        master = base64.b64decode(keys.decrypt(wrapped, NEXT_SETTING))
        new = MemberKeys.from_master(master)
        log.info("member key rotation %s -> %s resumed", keys.key_id, new.key_id)
    old_id = keys.key_id
    prefix = BLOB_MAGIC + bytes.fromhex(new.key_id)
    rows = batches = 0
    with db.atomic():
        for name in SETTINGS_ENCRYPTED:
            held = Setting.get_or_none(Setting.key == name)
            if held is not None and not base64.b64decode(held.value["enc"]).startswith(prefix):
                blob = base64.b64decode(held.value["enc"])
                again = new.encrypt(keys.decrypt(blob, name), name)
                value = dict(held.value) | {"enc": base64.b64encode(again).decode("ascii")}
                Setting.update(value=value).where(Setting.key == name).execute()
                rows += 1
    while True:
        with db.atomic():
            todo = _held_not_under(db, prefix, batch)
            for member_id, blob in todo:
                again = new.encrypt(keys.decrypt(blob, member_id), member_id)
                db.execute_sql(
                    "UPDATE member SET phone_enc = ? WHERE id = ? AND phone_enc = ?",
                    (again, member_id, blob),
                )
        if not todo:
            break
        rows += len(todo)
        batches += 1
        if after_batch is not None:
            after_batch(rows)
    if master:
        write_atomically(key_path, master, 0o600)  # the new key over the old file
    with db.atomic():
        Setting.insert(
            key=CURRENT_SETTING, value={"id": new.key_id}
        ).on_conflict_replace().execute()
        Setting.delete().where(Setting.key == NEXT_SETTING).execute()
    log.info(
        "member key rotated %s -> %s: %d blobs in %d batches; old key retired",
        old_id,
        new.key_id,
        rows,
        batches,
    )
    return RotationReport(old_id, new.key_id, rows, batches)
