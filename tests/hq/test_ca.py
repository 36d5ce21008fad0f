"""The chain CA (hq/ca.py) and its records (hq/pki.py): what it signs and what it refuses."""

from __future__ import annotations

import datetime as dt
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.errors import ConfigError, NotFound, ValidationError
from hq import pki
from hq.ca import ChainCA, new_key, serial_text
from hq.models import Certificate, bind, open_database


def csr_for(common_name: str, key=None) -> bytes:
    key = key or new_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def tampered_csr(common_name: str, forged_name: str) -> bytes:
    """A CSR signed for ``common_name`` whose subject was then rewritten: the signature
    no longer covers what it says (same length, so the DER stays well formed)."""
    assert len(common_name) == len(forged_name)
    der = bytearray(
        x509.load_pem_x509_csr(csr_for(common_name)).public_bytes(serialization.Encoding.DER)
    )
    at = der.find(common_name.encode())
    der[at : at + len(common_name)] = forged_name.encode()
    return x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> ChainCA:
    return ChainCA.create(tmp_path_factory.mktemp("ca"))


def test_create_writes_the_key_owner_only_and_load_reads_it_back(tmp_path):
    made = ChainCA.create(tmp_path / "ca", name="Test chain CA")
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600
    loaded = ChainCA.load(tmp_path / "ca", credentials="")
    assert loaded.ca_pem == made.ca_pem == (tmp_path / "ca" / "ca.pem").read_bytes()
    subject = x509.load_pem_x509_certificate(loaded.ca_pem).subject
    assert subject.rfc4514_string() == "CN=Test chain CA"
    with pytest.raises(ConfigError, match="already has a CA"):
        ChainCA.create(tmp_path / "ca")


def test_load_names_the_missing_file(tmp_path):
    ChainCA.create(tmp_path / "ca")
    (tmp_path / "ca" / "ca.key").unlink()
    with pytest.raises(ConfigError, match=r"CA file missing: .*ca\.key"):
        ChainCA.load(tmp_path / "ca", credentials="")
    with pytest.raises(ConfigError, match=r"CA file missing: .*nowhere/ca\.pem"):
        ChainCA.load(tmp_path / "nowhere", credentials="")


def test_load_takes_the_key_from_the_systemd_credentials_directory(tmp_path):
    """Under systemd ca_dir holds only ca.pem; the key comes as the credential ca.key."""
    made = ChainCA.create(tmp_path / "ca")
    creds = tmp_path / "credentials"
    creds.mkdir()
    (tmp_path / "ca" / "ca.key").rename(creds / "ca.key")
    loaded = ChainCA.load(tmp_path / "ca", credentials=str(creds))
    assert loaded.ca_pem == made.ca_pem
    ChainCA.create(tmp_path / "other")
    (tmp_path / "other" / "ca.key").replace(creds / "ca.key")  # another CA's key handed over
    with pytest.raises(ConfigError, match="is not the key of"):
        ChainCA.load(tmp_path / "ca", credentials=str(creds))


def test_sign_csr_gives_a_client_certificate_for_that_key_and_name(ca):
    key = new_key()
    cert = x509.load_pem_x509_certificate(ca.sign_csr(csr_for("S001", key), "S001", 30))
    assert cert.subject.rfc4514_string() == "CN=S001"
    assert cert.issuer == x509.load_pem_x509_certificate(ca.ca_pem).subject
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=30) <= lifetime <= dt.timedelta(days=30, minutes=10)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.ca_pem))


@pytest.mark.parametrize(
    ("csr", "name", "message"),
    [
        (lambda: csr_for("S002"), "S001", "request is for 'S002', not 'S001'"),
        (lambda: tampered_csr("S001", "S002"), "S002", "signature does not verify"),
        (lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", "S001", "not a PEM"),
        (lambda: b"", "S001", "not a PEM"),
    ],
)
def test_sign_csr_refuses_a_request_that_is_not_what_it_claims(ca, csr, name, message):
    with pytest.raises(ValidationError, match=message):
        ca.sign_csr(csr(), name, 30)


def test_issue_identity_for_a_server_carries_its_names(ca):
    key_pem, cert_pem = ca.issue_identity("broker", 30, server_names=["mq.example", "127.0.0.1"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mq.example"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]


@pytest.mark.parametrize(("name", "days"), [("S001", 0), ("", 30), ("x" * 65, 30)])
def test_issue_refuses_bad_days_and_names(ca, name, days):
    with pytest.raises(ValidationError):
        ca.issue_identity(name, days)


def test_crl_lists_the_revoked_serials_signed_by_the_ca(ca):
    at = dt.datetime(2026, 12, 1, 8, 0)
    crl = x509.load_pem_x509_crl(ca.crl_pem([(0xABC, at), (17, at)]))
    assert crl.is_signature_valid(x509.load_pem_x509_certificate(ca.ca_pem).public_key())
    assert sorted(r.serial_number for r in crl) == [17, 0xABC]
    assert crl.get_revoked_certificate_by_serial_number(17).revocation_date_utc == at.replace(
        tzinfo=dt.UTC
    )
    assert crl.next_update_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=300)


@pytest.fixture
def db(tmp_path):
    database = bind(open_database(f"sqlite:///{tmp_path / 'hq.sqlite3'}"))
    yield database
    database.close()


def test_issued_certificates_are_recorded_and_revoke_lists_them_in_the_crl(ca, db, tmp_path):
    now = dt.datetime(2026, 12, 4, 12, 0)
    first = x509.load_pem_x509_certificate(
        pki.issue_store_certificate(ca, "S001", csr_for("S001"), now=now)
    )
    second = x509.load_pem_x509_certificate(
        pki.issue_store_certificate(ca, "S001", csr_for("S001"), now=now)
    )
    other = x509.load_pem_x509_certificate(
        pki.issue_store_certificate(ca, "S002", csr_for("S002"), now=now)
    )
    pki.issue_identity(ca, "hq", "hq", now=now)
    row = Certificate.get_by_id(serial_text(first.serial_number))
    assert (row.common_name, row.kind, row.issued_at, row.revoked_at) == (
        "S001",
        "store",
        now,
        None,
    )
    assert row.not_after == first.not_valid_after_utc.replace(tzinfo=None)

    assert pki.write_crl(ca, tmp_path / "crl.pem") == 0
    assert pki.revoke("S001", "box stolen", now=now) == 2
    assert pki.revoke("S001", "again", now=now) == 0  # nothing live is left
    assert pki.write_crl(ca, tmp_path / "crl.pem") == 2
    crl = x509.load_pem_x509_crl((tmp_path / "crl.pem").read_bytes())
    listed = {r.serial_number for r in crl}
    assert listed == {first.serial_number, second.serial_number}
    assert other.serial_number not in listed
    assert Certificate.get_by_id(serial_text(first.serial_number)).revoke_reason == "box stolen"


def test_revoke_refuses_an_unknown_name_and_an_empty_reason(ca, db):
    with pytest.raises(NotFound, match="S404"):
        pki.revoke("S404", "retired")
    pki.issue_store_certificate(ca, "S001", csr_for("S001"))
    with pytest.raises(ValidationError, match="reason"):
        pki.revoke("S001", "  ")


@pytest.mark.parametrize("code", ["hq", "S 01", "", "x" * 33])
def test_a_store_certificate_needs_a_store_code(ca, db, code):
    with pytest.raises(ValidationError, match="bad store code"):
        pki.issue_store_certificate(ca, code, csr_for(code or "x"))
    assert Certificate.select().count() == 0


def test_ca_dir_comes_from_the_environment(monkeypatch, tmp_path):
    from hq.config import HqConfig

    monkeypatch.setenv("HY_HQ_CA_DIR", str(tmp_path / "ca"))
    assert HqConfig.from_env().ca_dir == str(tmp_path / "ca")
    assert HqConfig.from_env(ca_dir=str(tmp_path / "x")).ca_dir == str(tmp_path / "x")


def test_the_schedulers_crl_job_rewrites_the_crl_from_the_table(tmp_path, db):
    """The CRL is valid for a year: the scheduler rewrites it daily, so it never lapses
    (a broker with an expired CRL admits nobody) and lists what was revoked since."""
    from hq.config import HqConfig
    from hq.scheduler import JOBS, JobContext, rewrite_crl

    config = HqConfig(database_url="sqlite:///unused", ca_dir=str(tmp_path / "ca"))
    ca = ChainCA.create(tmp_path / "ca")
    cert = x509.load_pem_x509_certificate(pki.issue_store_certificate(ca, "S001", csr_for("S001")))
    pki.revoke("S001", "retired")
    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1)
    rewrite_crl(JobContext(db, config, lambda: later))
    crl = x509.load_pem_x509_crl((tmp_path / "ca" / "crl.pem").read_bytes())
    assert [r.serial_number for r in crl] == [cert.serial_number]
    assert crl.next_update_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=300)
    assert [j.every for j in JOBS if j.run is rewrite_crl] == [dt.timedelta(days=1)]
