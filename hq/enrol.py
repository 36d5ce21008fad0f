"""Enrolment of a store box and renewal of its certificate.

A technician gets a one-time code at HQ (``huiyuan-hq enrol-store S001``) and types it
on the box (``huiyuan-edge enrol``), which sends it with a CSR to ``POST /api/v1/enrol``.
The code is the only authentication of that route, so it is:

- short to type and hard to misread: 16 symbols from a 32-letter alphabet without
  0/O/1/I (80 bits), shown as four groups of four;
- kept only as its SHA-256 (a random 80-bit code needs no slow hash);
- single use (the UPDATE that spends it is conditional on it being unspent, in the
  transaction that records the certificate), expiring (24 h by default);
- void after ``MAX_WRONG_TRIES`` wrong codes for its store, and replaced by a newer one.

Renewal needs no code: the store asks over MQTT with the certificate it holds
(``hy/v1/{store}/up/certreq``), so the broker's certificate check and ACL are the
authentication, and HQ signs only for the store of the topic, and only while the
store holds a certificate that is neither expired nor revoked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peewee as pw
from cryptography import x509
from flask import Blueprint, current_app, jsonify, request

from core.errors import Forbidden, ProtocolError, ValidationError
from core.protocol import CertReply, CertRequest, decode_json, down_topic, validate_cert_request
from hq import audit
from hq.ca import ChainCA
from hq.models import Certificate, EnrolmentCode, utcnow
from hq.pki import check_store_code, issue_store_certificate

log = logging.getLogger("hq.enrol")

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # 32 symbols: no 0, O, 1 or I
GROUPS, GROUP_LEN = 4, 4
CODE_LEN = GROUPS * GROUP_LEN
MAX_WRONG_TRIES = 5  # per code: then it is void and HQ makes a new one
DEFAULT_VALID = dt.timedelta(hours=24)
MAX_VALID = dt.timedelta(days=30)
MAX_CSR_CHARS = 8192  # a P-256 CSR is about 500; an RSA-4096 one about 1,700


def new_code() -> str:
    """A fresh code, as shown to the technician: ``XXXX-XXXX-XXXX-XXXX``."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LEN))
    return "-".join(raw[i : i + GROUP_LEN] for i in range(0, CODE_LEN, GROUP_LEN))


def normalise_code(text: str) -> str:
    """What the technician typed, without dashes or spaces, upper case; ValidationError
    naming the problem when it cannot be a code."""
    raw = "".join(text.split()).replace("-", "").upper()
    if len(raw) != CODE_LEN:
        raise ValidationError(
            f"登记码应为 {CODE_LEN} 个字符, 收到 {len(raw)} 个"
            f" (the enrolment code has {CODE_LEN} characters, got {len(raw)})",
            field="code",
        )
    wrong = sorted({c for c in raw if c not in ALPHABET})
    if wrong:
        shown = "".join(wrong)[:8]
        raise ValidationError(
            f"登记码中不会出现这些字符: {shown!r} (没有 0/O/1/I)"
            f" (the enrolment code never holds {shown!r}: it has no 0, O, 1 or I)",
            field="code",
        )
    return raw


def code_hash(code: str) -> str:
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()


def create_code(
    db: pw.Database, store: str, now: dt.datetime, valid: dt.timedelta, created_by: str = ""
) -> tuple[str, EnrolmentCode]:
    """A new one-time code for ``store``; earlier unspent codes of the store stop working.
    Audited (``enrol.create``, by ``created_by``) in the same transaction."""
    check_store_code(store)
    if not dt.timedelta(minutes=1) <= valid <= MAX_VALID:
        raise ValidationError(f"valid must be 1 minute..{MAX_VALID.days} days", field="valid")
    code = new_code()
    with db.atomic():
        EnrolmentCode.update(expires_at=now).where(
            (EnrolmentCode.store == store)
            & EnrolmentCode.used_at.is_null()
            & (EnrolmentCode.expires_at > now)
        ).execute()
        row = EnrolmentCode.create(
            store=store,
            code_hash=code_hash(code),
            created_at=now,
            expires_at=now + valid,
            created_by=created_by[:64],
        )
        audit.record(
            db,
            created_by[:64] or "hq",
            "enrol.create",
            f"store:{store}",
            store=store,
            at=now,
            code_id=row.id,
            expires_at=row.expires_at.isoformat(timespec="seconds"),
        )
    log.info("enrolment code #%d for store %s, valid until %s", row.id, store, row.expires_at)
    return code, row


def _refused(message: str, reason: str) -> Forbidden:
    return Forbidden(message, field="code", reason=reason)


def check_code(db: pw.Database, store: str, code: str, now: dt.datetime) -> EnrolmentCode:
    """The live code ``code`` of ``store``, or Forbidden saying why it does not open the
    door. A wrong code counts against the store's live codes, committed at once (call this
    outside any transaction that the refusal would roll back)."""
    digest = code_hash(code)
    row = EnrolmentCode.get_or_none(
        (EnrolmentCode.store == store) & (EnrolmentCode.code_hash == digest)
    )
    if row is None:
        live = (EnrolmentCode.store == store) & EnrolmentCode.used_at.is_null()
        live &= (EnrolmentCode.expires_at > now) & (EnrolmentCode.attempts < MAX_WRONG_TRIES)
        with db.atomic():
            counted = (
                EnrolmentCode.update(attempts=EnrolmentCode.attempts + 1).where(live).execute()
            )
        log.warning("wrong enrolment code for store %s", store)
        if not counted:
            raise _refused(
                f"门店 {store} 没有有效的登记码, 请在总部重新生成"
                f" (no valid enrolment code for store {store}: make one with "
                f"`huiyuan-hq enrol-store {store}`)",
                "wrong_code",
            )
        raise _refused(
            f"登记码错误 (wrong enrolment code for store {store}); "
            f"错 {MAX_WRONG_TRIES} 次后作废 (void after {MAX_WRONG_TRIES} wrong tries)",
            "wrong_code",
        )
    if row.used_at is not None:
        raise _used(row.used_at)
    if row.attempts >= MAX_WRONG_TRIES:
        raise _refused(
            f"错误次数过多, 登记码已作废, 请重新生成 (too many wrong tries: this code is void, "
            f"make a new one with `huiyuan-hq enrol-store {store}`)",
            "too_many_tries",
        )
    if row.expires_at <= now:
        raise _refused(
            f"登记码已过期 ({row.expires_at:%Y-%m-%d %H:%M} UTC), 请重新生成"
            f" (this enrolment code expired at {row.expires_at:%Y-%m-%d %H:%M} UTC)",
            "expired",
        )
    return row


def _used(at: dt.datetime) -> Forbidden:
    return _refused(
        f"登记码已用过 ({at:%Y-%m-%d %H:%M} UTC), 请重新生成"
        f" (this enrolment code was already used at {at:%Y-%m-%d %H:%M} UTC)",
        "used",
    )


def spend_code(row: EnrolmentCode, now: dt.datetime) -> None:
    """Mark a checked code used, unless another request spent it since it was read."""
    spent = (
        EnrolmentCode.update(used_at=now)
        .where((EnrolmentCode.id == row.id) & EnrolmentCode.used_at.is_null())
        .execute()
    )
    if spent != 1:
        raise _used(now)


@dataclass(frozen=True)
class Enrolled:
    store: str
    certificate: bytes
    ca: bytes

    def to_dict(self, broker_url: str = "") -> dict[str, Any]:
        cert = x509.load_pem_x509_certificate(self.certificate)
        out: dict[str, Any] = {
            "store": self.store,
            "certificate": self.certificate.decode(),
            "ca": self.ca.decode(),
            "not_after": cert.not_valid_after_utc.isoformat(timespec="seconds"),
            "broker": {"url": broker_url} if broker_url else {},
        }
        return out


def enrol(
    db: pw.Database, ca: ChainCA, store: str, code: str, csr_pem: str, now: dt.datetime
) -> Enrolled:
    """Spend ``code`` and sign ``csr_pem`` for ``store`` (its CN must be the store code), in
    one transaction: a refused CSR leaves the code unspent."""
    check_store_code(store)
    _check_csr_text(csr_pem)
    row = check_code(db, store, code, now)
    with db.atomic():
        spend_code(row, now)
        cert = issue_store_certificate(ca, store, csr_pem.encode(), now=now)
    log.info("store %s enrolled", store)
    return Enrolled(store, cert, ca.ca_pem)


def _check_csr_text(csr: Any) -> str:
    if not isinstance(csr, str) or not csr.strip():
        raise ValidationError("csr (a PEM certificate request) is required", field="csr")
    if len(csr) > MAX_CSR_CHARS or "-----BEGIN CERTIFICATE REQUEST-----" not in csr:
        raise ValidationError(
            f"csr must be one PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----, "
            f"at most {MAX_CSR_CHARS} characters)",
            field="csr",
        )
    return csr


def check_cert_request(store: str, payload: bytes, now: dt.datetime) -> CertRequest:
    """A renewal asked on ``store``'s own topic, checked: ProtocolError (the worker
    dead-letters it) for a request naming another store, a malformed one, or a store
    that holds no live certificate (revoked, or expired)."""
    req = validate_cert_request(decode_json(payload, "certreq"))
    if req.store != store:
        raise ProtocolError(f"certificate request from {req.store!r} on {store!r}'s topic")
    live = Certificate.select().where(
        (Certificate.common_name == store)
        & (Certificate.kind == "store")
        & Certificate.revoked_at.is_null()
        & (Certificate.not_after > now)
    )
    if not live.exists():
        raise ProtocolError(
            f"store {store} holds no live certificate (revoked or expired): enrol it again"
        )
    return req


def renew(db: pw.Database, ca: ChainCA, req: CertRequest, now: dt.datetime) -> CertReply:
    """Sign a checked request's CSR for its store; ProtocolError when the CSR is refused."""
    try:
        with db.atomic():
            cert = issue_store_certificate(ca, req.store, req.csr.encode(), now=now)
    except ValidationError as exc:
        raise ProtocolError(f"certreq: {exc.message}", field="csr") from exc
    log.info("store %s renewed its certificate", req.store)
    return CertReply(req.store, cert.decode())


def handle_cert_request(
    db: pw.Database, ca_dir: str, store: str, payload: bytes, now: dt.datetime
) -> tuple[str, dict[str, Any]]:
    """The worker's handler for ``hy/v1/{store}/up/certreq``: (topic, answer). The CA is
    loaded only for a request worth signing."""
    req = check_cert_request(store, payload, now)
    reply = renew(db, ChainCA.load(Path(ca_dir)), req, now)
    return down_topic(store, "cert"), reply.to_dict()


# ---- HTTP ------------------------------------------------------------------------------

enrol_bp = Blueprint("enrol", __name__, url_prefix="/api/v1/enrol")


@enrol_bp.post("")
def enrol_route() -> Any:
    """``{store, code, csr}`` -> ``{store, certificate, ca, not_after, broker: {url?}}``.
    Authenticated by the one-time code alone (it is how a box without an identity gets one)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError("body must be a JSON object {store, code, csr}")
    for key in ("store", "code", "csr"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise ValidationError(f"{key} is required (a string)", field=key)
    config = current_app.config["HQ"]
    ca = ChainCA.load(Path(config.ca_dir))
    done = enrol(
        current_app.extensions["hq_db"], ca, body["store"], body["code"], body["csr"], utcnow()
    )
    return jsonify(done.to_dict(config.store_broker_url)), 201
