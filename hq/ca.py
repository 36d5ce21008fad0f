"""The chain's certificate authority: crypto only (no database, no files but its own).

HQ signs every MQTT identity of the chain with one CA: each store's client
certificate (CN = store code, from the box's CSR at enrolment), HQ's own client
identity (CN ``hq``) and the broker's server certificate (CN and SAN = the broker's
host name). The broker trusts this CA alone and takes the CN as the MQTT user name
(``use_identity_as_username``), so a certificate's CN is what the ACL checks.

Files in the CA directory (``HqConfig.ca_dir``)::

    ca.pem   the CA certificate: public, handed to every box and to the broker
    ca.key   the CA private key (PEM, mode 0600)

Under systemd the key is not read from ``ca_dir``: the unit hands it over with
``LoadCredential=ca.key:/etc/huiyuan/hq/ca.key`` and ``load`` reads
``$CREDENTIALS_DIRECTORY/ca.key`` when that file exists (see docs/operations.md,
"Transport security"). Keys are ECDSA P-256: small, fast to make on a Raspberry Pi,
and what OpenSSL and Mosquitto accept everywhere.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.credentials import credential_path
from core.errors import ConfigError, ValidationError

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
CA_DAYS = 20 * 365
# A CRL past its next update makes OpenSSL refuse every client, so the CRL is written
# for long and rewritten at every revocation (and by `huiyuan-hq write-crl`).
CRL_DAYS = 365
# Certificates start a little in the past: a box whose clock is slightly behind
# HQ's would otherwise find its brand-new certificate "not yet valid".
CLOCK_SKEW = dt.timedelta(minutes=5)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def serial_text(serial: int) -> str:
    """How a serial number is written in the database and in messages: lower-case hex,
    as ``openssl x509 -serial`` and Mosquitto's logs show it."""
    return format(serial, "x")


def common_name_of(cert: x509.Certificate | x509.CertificateSigningRequest) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise ValidationError(
            f"the subject must hold exactly one common name, it holds {len(names)}",
            field="common_name",
        )
    value = names[0].value
    return value if isinstance(value, str) else value.decode()


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file only its owner may read (0600 from the start, never
    briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


class ChainCA:
    """The CA's key and certificate, and what it signs."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert
        self.ca_pem: bytes = cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def create(cls, directory: Path, name: str = "Huiyuan chain CA") -> ChainCA:
        """Make a new CA in ``directory`` (ca.key 0600, ca.pem); refuses to overwrite one."""
        directory = Path(directory)
        for file in (CA_CERT_FILE, CA_KEY_FILE):
            if (directory / file).exists():
                raise ConfigError(
                    f"{directory / file} exists: the chain already has a CA "
                    "(a new one would orphan every certificate it issued)",
                    field="ca_dir",
                )
        key = new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(signs_certificates=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        write_private(directory / CA_KEY_FILE, key_pem(key))
        ca = cls(key, cert)
        (directory / CA_CERT_FILE).write_bytes(ca.ca_pem)
        return ca

    @classmethod
    def load(cls, directory: Path, credentials: str | None = None) -> ChainCA:
        """Load the CA from ``directory``; the key from ``credentials``/ca.key when that
        file exists (``credentials`` defaults to $CREDENTIALS_DIRECTORY), else from
        ``directory``/ca.key."""
        directory = Path(directory)
        handed = credential_path(
            CA_KEY_FILE, None if credentials is None else {"CREDENTIALS_DIRECTORY": credentials}
        )
        key_path = Path(handed) if handed else directory / CA_KEY_FILE
        cert_path = directory / CA_CERT_FILE
        for path in (cert_path, key_path):
            if not path.is_file():
                raise ConfigError(
                    f"CA file missing: {path} (run `huiyuan-hq init-ca` once, or set "
                    "HY_HQ_CA_DIR to the CA's directory)",
                    field="ca_dir",
                )
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except ValueError as exc:
            raise ConfigError(f"CA files in {directory} unreadable: {exc}", field="ca_dir") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or (
            key.public_key().public_numbers() != cert.public_key().public_numbers()
        ):
            raise ConfigError(f"{key_path} is not the key of {cert_path}", field="ca_dir")
        return cls(key, cert)

    def sign_csr(self, csr_pem: bytes, common_name: str, days: int) -> bytes:
        """A client certificate (PEM) for the key in ``csr_pem``. Refuses a CSR that is
        not PEM, whose signature does not verify (the requester does not hold the key)
        or whose subject CN is not ``common_name``."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise ValidationError(f"not a PEM certificate request: {exc}", field="csr") from exc
        try:
            valid = csr.is_signature_valid
        except InvalidSignature:
            valid = False
        if not valid:
            raise ValidationError(
                "the certificate request's signature does not verify", field="csr"
            )
        requested = common_name_of(csr)
        if requested != common_name:
            raise ValidationError(
                f"the certificate request is for {requested!r}, not {common_name!r}",
                field="csr",
            )
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise ValidationError("the certificate request's key must be ECDSA or RSA", field="csr")
        return self._issue(public_key, common_name, days, server_names=())

    def issue_identity(
        self, common_name: str, days: int, server_names: Sequence[str] = ()
    ) -> tuple[bytes, bytes]:
        """A new key and its certificate (key PEM, cert PEM): HQ's own client identity,
        tests' identities, or with ``server_names`` (DNS names or IP addresses, put in
        the subjectAltName) the broker's server certificate."""
        key = new_key()
        return key_pem(key), self._issue(key.public_key(), common_name, days, server_names)

    def _issue(
        self,
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        common_name: str,
        days: int,
        server_names: Sequence[str],
    ) -> bytes:
        if not 1 <= days <= CA_DAYS:
            raise ValidationError(f"days must be 1..{CA_DAYS}, got {days}", field="days")
        if not common_name or len(common_name) > 64:
            raise ValidationError(
                f"common name must be 1..64 characters, got {common_name!r}", field="common_name"
            )
        now = _now()
        usage = (
            [ExtendedKeyUsageOID.SERVER_AUTH] if server_names else [ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(min(now + dt.timedelta(days=days), self.cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(signs_certificates=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
            .add_extension(self._authority_key_id(), critical=False)
        )
        if server_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in server_names]),
                critical=False,
            )
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def crl_pem(self, revoked: list[tuple[int, dt.datetime]], days: int = CRL_DAYS) -> bytes:
        """The certificate revocation list (PEM) of ``revoked`` (serial, when), valid for
        ``days``: the broker refuses every client once it is past its next update."""
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - CLOCK_SKEW)
            .next_update(now + dt.timedelta(days=days))
            .add_extension(self._authority_key_id(), critical=False)
        )
        for serial, when in revoked:
            at = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(at).build()
            )
        crl = builder.sign(self.key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.PEM)

    def _authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())


def _key_usage(signs_certificates: bool) -> x509.KeyUsage:
    """The CA signs certificates and CRLs; an identity signs (ECDSA) and agrees keys (ECDHE)."""
    return x509.KeyUsage(
        digital_signature=not signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not signs_certificates,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)
