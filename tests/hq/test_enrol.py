"""Enrolment codes and ``POST /api/v1/enrol`` (hq/enrol.py) on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import NameOID

from edge.enrol import make_key_and_csr
from hq import enrol as e
from hq.api import create_app
from hq.ca import ChainCA
from hq.cli import main
from hq.config import HqConfig
from hq.models import Certificate, EnrolmentCode, bind

NOW = dt.datetime(2026, 12, 4, 10, 0)


@pytest.fixture
def ca(tmp_path) -> ChainCA:
    return ChainCA.create(tmp_path / "ca")


@pytest.fixture
def client(hq_db, hq_db_url, ca, tmp_path):
    config = HqConfig(
        database_url=hq_db_url,
        ca_dir=str(tmp_path / "ca"),
        store_broker_url="mqtts://broker.example:8883",
    )
    app = create_app(config, db=hq_db)
    app.testing = True
    return app.test_client()


def fresh_code(db, store: str = "S001", now: dt.datetime | None = None, hours: int = 24) -> str:
    code, _ = e.create_code(db, store, now or e.utcnow(), dt.timedelta(hours=hours), "tester")
    return code


def post(client, store: str, code: str, csr: str | None = None):
    if csr is None:
        csr = make_key_and_csr(store)[1].decode()
    return client.post("/api/v1/enrol", json={"store": store, "code": code, "csr": csr})


def refusal(res) -> str:
    """The reason of a 403 refusal."""
    assert res.status_code == 403, res.get_json()
    return res.get_json()["details"]["reason"]


def test_a_code_is_four_groups_of_four_from_an_unambiguous_alphabet_and_stored_only_hashed(
    hq_db,
):
    codes = [fresh_code(hq_db, f"S{n:03d}") for n in range(40)]
    for code in codes:
        assert re.fullmatch(r"[2-9A-HJ-NP-Z]{4}(-[2-9A-HJ-NP-Z]{4}){3}", code), code
    assert len(set(codes)) == 40
    stored = {r.code_hash for r in EnrolmentCode.select()}
    assert all(c.replace("-", "") not in h for c in codes for h in stored)
    assert e.code_hash(codes[0]) in stored
    # typed in lower case with spaces, it is the same code
    assert e.code_hash(codes[0].lower().replace("-", " ")) == e.code_hash(codes[0])


def test_enrol_returns_a_certificate_for_the_store_issued_by_the_chain_ca(client, hq_db, ca):
    code = fresh_code(hq_db)
    key_pem, csr_pem = make_key_and_csr("S001")
    res = post(client, "S001", code, csr_pem.decode())
    assert res.status_code == 201, res.get_json()
    body = res.get_json()
    cert = x509.load_pem_x509_certificate(body["certificate"].encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "S001"
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(body["ca"].encode()))
    assert body["ca"].encode() == ca.ca_pem
    assert body["broker"] == {"url": "mqtts://broker.example:8883"}
    row = Certificate.get(Certificate.common_name == "S001")
    assert (row.kind, row.revoked_at) == ("store", None)
    assert EnrolmentCode.get(EnrolmentCode.store == "S001").used_at is not None


def test_a_code_works_once(client, hq_db):
    code = fresh_code(hq_db)
    assert post(client, "S001", code).status_code == 201
    again = post(client, "S001", code)
    assert refusal(again) == "used"
    assert "已用过" in again.get_json()["message"]
    assert Certificate.select().count() == 1


def test_an_expired_code_is_refused(client, hq_db):
    code = fresh_code(hq_db, now=e.utcnow() - dt.timedelta(hours=3), hours=2)
    assert refusal(post(client, "S001", code)) == "expired"
    assert Certificate.select().count() == 0


def test_a_code_for_another_store_does_not_open_this_one(client, hq_db):
    code = fresh_code(hq_db, "S002")
    fresh_code(hq_db, "S001")
    assert refusal(post(client, "S001", code)) == "wrong_code"
    assert post(client, "S002", code).status_code == 201


def test_wrong_tries_void_the_code(client, hq_db):
    code = fresh_code(hq_db)
    other = fresh_code(hq_db, "S009")
    for _ in range(e.MAX_WRONG_TRIES):
        assert refusal(post(client, "S001", other)) == "wrong_code"
    assert refusal(post(client, "S001", code)) == "too_many_tries"
    # the other store's code was not affected by tries against S001
    assert post(client, "S009", other).status_code == 201


def test_a_new_code_voids_the_stores_earlier_one(client, hq_db):
    old = fresh_code(hq_db)
    new = fresh_code(hq_db)
    assert refusal(post(client, "S001", old)) == "expired"
    assert post(client, "S001", new).status_code == 201


def test_a_csr_for_another_store_is_refused_and_leaves_the_code_unspent(client, hq_db):
    code = fresh_code(hq_db)
    res = post(client, "S001", code, make_key_and_csr("S002")[1].decode())
    assert res.status_code == 400
    assert res.get_json()["field"] == "csr"
    assert "S002" in res.get_json()["message"]
    assert post(client, "S001", code).status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"code": "X", "csr": "X"}, "store"),
        ({"store": "S001", "csr": "X"}, "code"),
        ({"store": "S001", "code": "AAAA-AAAA-AAAA-AAAA"}, "csr"),
        ({"store": "S001", "code": 7, "csr": "X"}, "code"),
        ({"store": "hq", "code": "AAAA-AAAA-AAAA-AAAA", "csr": "X"}, "store"),
        ({"store": "S/1", "code": "AAAA-AAAA-AAAA-AAAA", "csr": "X"}, "store"),
        ({"store": "S001", "code": "AAAA-AAAA-AAAA-AAA", "csr": "X"}, "code"),
        ({"store": "S001", "code": "AAAA-AAAA-AAAA-AAA0", "csr": "X"}, "code"),
        ({"store": "S001", "code": "AAAA-AAAA-AAAA-AAAA", "csr": "not a pem"}, "csr"),
    ],
)
def test_bad_input_gets_a_400_naming_the_field(client, hq_db, body, field):
    fresh_code(hq_db)
    if body.get("csr") == "X":  # a well-formed request, so that the other field is at fault
        body = body | {"csr": make_key_and_csr("S001")[1].decode()}
    res = client.post("/api/v1/enrol", json=body)
    assert res.status_code == 400, res.get_json()
    assert res.get_json()["field"] == field


def test_a_malformed_pem_is_a_400_and_leaves_the_code_unspent(client, hq_db):
    code = fresh_code(hq_db)
    broken = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
    res = post(client, "S001", code, broken)
    assert res.status_code == 400
    assert res.get_json()["field"] == "csr"
    assert post(client, "S001", code).status_code == 201


def test_a_body_that_is_not_json_is_a_400(client):
    res = client.post("/api/v1/enrol", data=b"\xff", content_type="application/json")
    assert res.status_code == 400
    assert "JSON object" in res.get_json()["message"]


def test_cli_enrol_store_prints_a_code_that_enrols(client, hq_db, hq_db_url):
    runner = CliRunner()
    out = runner.invoke(main, ["--database-url", hq_db_url, "enrol-store", "S001", "--valid", "2h"])
    assert out.exit_code == 0, out.output
    code = out.stdout.strip()
    assert re.fullmatch(r"[A-Z2-9]{4}(-[A-Z2-9]{4}){3}", code)
    assert "huiyuan-edge enrol" in out.stderr
    bind(hq_db, create=False)  # the command bound the models to its own connection
    row = EnrolmentCode.get(EnrolmentCode.store == "S001")
    assert row.expires_at - row.created_at == dt.timedelta(hours=2)
    assert post(client, "S001", code).status_code == 201


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--valid", "2 weeks"], "30m, 24h or 7d"), (["--valid", "31d"], "30 days")],
)
def test_cli_enrol_store_refuses_a_bad_validity(hq_db, hq_db_url, args, message):
    out = CliRunner().invoke(main, ["--database-url", hq_db_url, "enrol-store", "S001", *args])
    assert out.exit_code != 0
    assert message in out.output
    bind(hq_db, create=False)
    assert EnrolmentCode.select().count() == 0


def test_making_a_code_is_audited_with_who_and_for_which_store(hq_db):
    from hq.models import AuditEntry

    e.create_code(hq_db, "S007", e.utcnow(), dt.timedelta(hours=1), "ops-li")
    entry = AuditEntry.get(AuditEntry.action == "enrol.create")
    assert (entry.actor, entry.target, entry.store) == ("ops-li", "store:S007", "S007")
