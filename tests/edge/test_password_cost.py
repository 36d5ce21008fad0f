"""Issue 9 defect 7 at the till: a hash with other scrypt parameters than the chain's is
never computed: verify_secret answers False at once (one such hash took 6.3 s a try)."""

from __future__ import annotations

import hashlib
import time

import pytest

from core import protocol as p
from edge import security
from edge.models import Member

SALT, DIGEST = "mpOvquO9GQMJIvpFRfJs8w==", "5U9Kt5ZN31nxipQk6pM6lheaECMdztfuXIcvTR2PoX0="


@pytest.fixture
def scrypt_calls(monkeypatch):
    calls: list[int] = []
    real = hashlib.scrypt

    def counting(*args, **kwargs):
        calls.append(kwargs.get("n"))
        return real(*args, **kwargs)

    monkeypatch.setattr(security.hashlib, "scrypt", counting)
    return calls


def test_a_member_password_is_hashed_with_the_chain_parameters(demo_till):
    stored = Member.get(Member.name == "张三").password_hash
    assert p.validate_password_hash(stored) == stored
    assert stored.startswith(f"scrypt${p.SCRYPT_N}${p.SCRYPT_R}${p.SCRYPT_P}$")
    assert security.verify_secret("123456", stored)
    assert not security.verify_secret("654321", stored)


@pytest.mark.parametrize(
    "stored",
    [
        f"scrypt$131072$8$20${SALT}${DIGEST}",
        f"scrypt$1048576$8$1${SALT}${DIGEST}",
        f"scrypt$16384$8$64${SALT}${DIGEST}",
        f"scrypt$1024$8$1${SALT}${DIGEST}",
    ],
)
def test_a_hash_with_other_parameters_is_false_fast_and_never_computed(scrypt_calls, stored):
    started = time.perf_counter()
    assert security.verify_secret("123456", stored) is False
    assert time.perf_counter() - started < 0.05
    assert scrypt_calls == []


def test_a_costly_hash_synced_to_the_store_cannot_slow_a_stored_value_sale(
    client, cashier, scrypt_calls
):
    member = Member.get(Member.name == "张三")
    Member.update(password_hash=f"scrypt$131072$8$20${SALT}${DIGEST}").where(
        Member.id == member.id
    ).execute()
    client.post(
        "/api/v1/topups", headers=cashier, json={"member": {"card_no": "C0001"}, "amount": 5000}
    )
    res = client.post(
        "/api/v1/sales",
        headers=cashier,
        json={
            "member": {"card_no": "C0001"},
            "lines": [{"sku": "P0002"}],
            "tenders": [{"kind": "stored_value", "amount": 4990}],
            "member_password": "123456",
        },
    )
    assert res.status_code == 403, res.json
    assert res.json["field"] == "member_password"
    assert 131072 not in scrypt_calls
