"""Issue 9 defect 7 at HQ: a password hash's cost never comes from the wire. A registration
whose hash names other scrypt parameters than the chain's (core.protocol.SCRYPT_N, _R, _P)
is refused, so it never reaches a store."""

from __future__ import annotations

import datetime as dt

import pytest

from core import protocol as p
from core.errors import ProtocolError
from core.ids import uuid7
from hq.ingest import ingest_batch
from hq.models import ChangeRecord, DeadLetter, Member
from tests.hq.edge_sim import Items

NOW = dt.datetime(2026, 11, 23, 2, 0)
SALT, DIGEST = "mpOvquO9GQMJIvpFRfJs8w==", "5U9Kt5ZN31nxipQk6pM6lheaECMdztfuXIcvTR2PoX0="
CHAIN = f"scrypt${p.SCRYPT_N}${p.SCRYPT_R}${p.SCRYPT_P}${SALT}${DIGEST}"
COSTLY = [
    f"scrypt$131072$8$20${SALT}${DIGEST}",  # the hash seen in the field: 6.3 s per try
    f"scrypt$1024$8$1${SALT}${DIGEST}",  # cheaper is refused too: one set of parameters
    f"scrypt${p.SCRYPT_N}$16$1${SALT}${DIGEST}",
    f"scrypt${p.SCRYPT_N}$8$2${SALT}${DIGEST}",
    f"scrypt$0{p.SCRYPT_N}$8$1${SALT}${DIGEST}",
]


def test_the_chain_parameters_are_those_the_tills_hash_with():
    assert (p.SCRYPT_N, p.SCRYPT_R, p.SCRYPT_P) == (2**14, 8, 1)
    assert p.validate_password_hash(CHAIN) == CHAIN


@pytest.mark.parametrize("value", COSTLY)
def test_other_parameters_are_refused_by_the_validator(value):
    with pytest.raises(ProtocolError) as err:
        p.validate_password_hash(value)
    assert err.value.field == "password_hash"


@pytest.mark.parametrize("value", COSTLY[:2])
def test_a_registration_with_a_costly_hash_is_refused_and_never_sent_down(hq_db, value):
    items = Items("S001")
    good, costly = uuid7(), uuid7()
    batch = p.make_batch(
        "S001",
        1,
        [
            items.registration(costly, "13100000017", password_hash=value),
            items.registration(good, "13100000018", password_hash=CHAIN),
        ],
    )
    ingest_batch(hq_db, "hy/v1/S001/up/tx", "S001", batch, NOW)
    assert Member.get_or_none(Member.id == costly) is None
    assert Member.get_by_id(good).password_hash == CHAIN
    assert DeadLetter.select().where(DeadLetter.reason.contains("password_hash")).count() == 1
    keys = {r.key for r in ChangeRecord.select().where(ChangeRecord.entity == "member")}
    assert costly not in keys
