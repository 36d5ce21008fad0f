"""The chain CA's records: every certificate issued goes in the ``Certificate`` table,
revocation marks it, and the CRL the broker reads is written from the table.

Functions use the bound models (``hq.models.bind``) and take the clock as ``now``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from core.errors import NotFound, ValidationError
from core.keyfiles import write_atomically
from core.protocol import STORE_CODE_RE
from hq.ca import ChainCA, common_name_of, serial_text
from hq.config import HqConfig
from hq.models import Certificate, utcnow

CRL_FILE = "crl.pem"
STORE_DAYS = 730
IDENTITY_DAYS = 730
KINDS = ("store", "hq", "broker")
HQ_COMMON_NAME = "hq"  # HQ's client identity; "hq" is never a store code (core.protocol)


def crl_path(config: HqConfig) -> Path:
    """The CRL HQ writes and the broker reads: ``<ca_dir>/crl.pem`` (the broker's
    ``crlfile``, and the path systemd/huiyuan-broker-crl.path watches)."""
    return (Path(config.ca_dir) / CRL_FILE).resolve()


def check_store_code(store_code: str) -> None:
    if not STORE_CODE_RE.match(store_code) or store_code == HQ_COMMON_NAME:
        raise ValidationError(
            f"bad store code {store_code!r}: 1-32 letters, digits, _ or -, and not 'hq'",
            field="store",
        )


def issue_store_certificate(
    ca: ChainCA,
    store_code: str,
    csr_pem: bytes,
    days: int = STORE_DAYS,
    now: dt.datetime | None = None,
) -> bytes:
    """Sign a store box's CSR (its CN must be the store code) and record the certificate."""
    check_store_code(store_code)
    cert_pem = ca.sign_csr(csr_pem, store_code, days)
    record_certificate(cert_pem, "store", now)
    return cert_pem


def issue_identity(
    ca: ChainCA,
    common_name: str,
    kind: str,
    days: int = IDENTITY_DAYS,
    server_names: Sequence[str] = (),
    now: dt.datetime | None = None,
) -> tuple[bytes, bytes]:
    """A key and certificate made here (HQ's client identity, the broker's server
    certificate with ``server_names``), recorded; returns (key PEM, cert PEM)."""
    if kind == "store":
        check_store_code(common_name)
    key_pem, cert_pem = ca.issue_identity(common_name, days, server_names)
    record_certificate(cert_pem, kind, now)
    return key_pem, cert_pem


def record_certificate(cert_pem: bytes, kind: str, now: dt.datetime | None = None) -> Certificate:
    if kind not in KINDS:
        raise ValidationError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}", field="kind")
    cert = x509.load_pem_x509_certificate(cert_pem)
    return Certificate.create(
        serial=serial_text(cert.serial_number),
        common_name=common_name_of(cert),
        kind=kind,
        not_before=cert.not_valid_before_utc.replace(tzinfo=None),
        not_after=cert.not_valid_after_utc.replace(tzinfo=None),
        issued_at=now or utcnow(),
    )


def revoke(common_name: str, reason: str, now: dt.datetime | None = None) -> int:
    """Revoke every live (unrevoked, unexpired) certificate of ``common_name``; returns
    how many. NotFound when it never had one; 0 when all were revoked or expired."""
    now = now or utcnow()
    reason = reason.strip()
    if not reason:
        raise ValidationError("a revocation needs a reason", field="reason")
    if len(reason) > 200:
        raise ValidationError("the reason is longer than 200 characters", field="reason")
    if not Certificate.select().where(Certificate.common_name == common_name).exists():
        raise NotFound(f"no certificate was ever issued to {common_name!r}", field="common_name")
    return (
        Certificate.update(revoked_at=now, revoke_reason=reason)
        .where(
            (Certificate.common_name == common_name)
            & Certificate.revoked_at.is_null()
            & (Certificate.not_after > now)
        )
        .execute()
    )


def revoked_serials(now: dt.datetime | None = None) -> list[tuple[int, dt.datetime]]:
    """(serial, revoked at) of every revoked certificate not yet expired (an expired
    one is refused anyway, so the CRL need not list it)."""
    now = now or utcnow()
    rows = (
        Certificate.select(Certificate.serial, Certificate.revoked_at)
        .where(Certificate.revoked_at.is_null(False) & (Certificate.not_after > now))
        .order_by(Certificate.revoked_at, Certificate.serial)
    )
    return [(int(r.serial, 16), r.revoked_at) for r in rows]


def write_crl(ca: ChainCA, path: Path, now: dt.datetime | None = None) -> int:
    """Write the CRL to ``path`` (PEM) atomically, so a broker reloading it never reads
    half a file; returns how many certificates it lists."""
    revoked = revoked_serials(now)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, ca.crl_pem(revoked), 0o644)  # the broker runs as its own user
    return len(revoked)


def rewrite_crl(config: HqConfig, now: dt.datetime | None = None) -> int:
    """Rewrite the CRL from the table with the CA of ``config`` (the scheduler's daily
    job; the CRL is valid for a year and a broker with an expired one admits nobody)."""
    return write_crl(ChainCA.load(Path(config.ca_dir)), crl_path(config), now)
