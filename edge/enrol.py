"""``huiyuan-edge enrol``: give this box its store identity, in one command.

The box makes its own key pair (ECDSA P-256; the private key never leaves it) and a
certificate request with CN = the store code, sends the request with the one-time code
from HQ (``huiyuan-hq enrol-store``) to ``POST {hq}/api/v1/enrol``, checks what comes
back (a certificate for its own key and store, issued by the CA that came with it) and
writes the three files systemd's ``LoadCredential=`` hands to the services
(systemd/huiyuan-edge*.service)::

    /etc/huiyuan/credentials/store.key   this box's private key (0600)
    /etc/huiyuan/credentials/store.pem   its certificate
    /etc/huiyuan/credentials/ca.pem      the chain CA (to check the broker)

Each file is written beside its final name and renamed over it, so a reader sees the
old file or the new one, never half of one. A box that already holds a working identity
(a valid certificate for its key) keeps it unless ``--force`` is given. The sync agent
renews the certificate over MQTT before it expires (edge/sync/renewal.py), with the same
helpers.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.errors import ConfigError, HuiyuanError, ValidationError
from core.keyfiles import write_atomically
from core.protocol import STORE_CODE_RE

DEFAULT_CREDENTIALS_DIR = "/etc/huiyuan/credentials"
KEY_FILE, CERT_FILE, CA_FILE = "store.key", "store.pem", "ca.pem"


class EnrolError(HuiyuanError):
    """HQ refused the enrolment, or what it sent back does not fit this box."""

    code = 14
    slug = "enrol"


def make_key_and_csr(store: str) -> tuple[bytes, bytes]:
    """A new P-256 private key (PEM, PKCS#8) and a CSR for it with CN = ``store``."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, store)]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Identity:
    store: str
    not_after: dt.datetime  # aware, UTC


def check_identity(key_pem: bytes, cert_pem: bytes, ca_pem: bytes, store: str) -> Identity:
    """That ``cert_pem`` is for the key in ``key_pem`` and for ``store``, and was issued by
    ``ca_pem``; ValidationError naming what does not fit."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as exc:
        raise ValidationError(f"证书文件无法读取 (unreadable PEM: {exc})") from exc
    if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
        raise ValidationError("证书与本机私钥不匹配 (the certificate is not for this key)")
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [n.value for n in names] != [store]:
        raise ValidationError(
            f"证书不属于门店 {store} (the certificate is for {[n.value for n in names]}, "
            f"not {store!r})"
        )
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ValidationError(
            f"证书不是由所附 CA 签发的 (the certificate was not issued by the CA sent with it: {exc})"
        ) from exc
    return Identity(store, cert.not_valid_after_utc)


def cert_not_after(cert_pem: bytes) -> dt.datetime:
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


def working_identity(directory: Path, now: dt.datetime) -> Identity | None:
    """The identity in ``directory`` if its three files are there, fit together and the
    certificate is still valid at ``now``; else None (nothing there worth keeping)."""
    try:
        key, cert, ca = ((directory / f).read_bytes() for f in (KEY_FILE, CERT_FILE, CA_FILE))
        parsed = x509.load_pem_x509_certificate(cert)
        store = parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        identity = check_identity(key, cert, ca, str(store))
    except (OSError, ValueError, IndexError, HuiyuanError):
        return None
    return identity if identity.not_after > now else None


def write_identity(directory: Path, key_pem: bytes, cert_pem: bytes, ca_pem: bytes | None) -> None:
    """The key first (0600), then the certificate, then the CA: an interruption leaves a
    key without its certificate, which ``working_identity`` does not count as working."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomically(directory / KEY_FILE, key_pem, 0o600)
    write_atomically(directory / CERT_FILE, cert_pem, 0o644)
    if ca_pem is not None:
        write_atomically(directory / CA_FILE, ca_pem, 0o644)


def enrol_url(hq: str) -> str:
    base = hq.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ConfigError(f"--hq must be http(s)://host[:port], got {hq!r}", field="hq")
    return base.removesuffix("/api") + "/api/v1/enrol"


def post_enrolment(
    hq: str, store: str, code: str, csr_pem: bytes, cafile: str | None = None, timeout: float = 30
) -> dict[str, Any]:
    """POST the request; HQ's answer, or EnrolError with HQ's own message."""
    body = json.dumps({"store": store, "code": code, "csr": csr_pem.decode()}).encode()
    req = urllib.request.Request(  # noqa: S310 (the scheme is checked by enrol_url)
        enrol_url(hq), data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as res:  # noqa: S310
            answer = json.loads(res.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("message") or exc.reason
        except (ValueError, AttributeError):
            message = exc.reason
        raise EnrolError(f"总部拒绝登记 (HQ refused, HTTP {exc.code}): {message}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise EnrolError(f"无法连接总部 {hq} (cannot reach HQ: {exc})") from exc
    except ValueError as exc:
        raise EnrolError(f"总部的回答不是 JSON (HQ's answer is not JSON: {exc})") from exc
    if not isinstance(answer, dict) or not all(
        isinstance(answer.get(k), str) for k in ("certificate", "ca")
    ):
        raise EnrolError("总部的回答缺少证书 (HQ's answer lacks certificate and ca)")
    return answer


def enrol_box(
    hq: str,
    store: str,
    code: str,
    directory: Path,
    *,
    force: bool = False,
    cafile: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[Identity, dict[str, Any]]:
    """The whole enrolment; returns the new identity and HQ's answer."""
    if not STORE_CODE_RE.match(store) or store == "hq":
        raise ValidationError(
            f"门店编码无效: {store!r} (the store code is 1-32 of A-Z a-z 0-9 _ -, not 'hq')",
            field="store",
        )
    now = now or dt.datetime.now(dt.UTC)
    existing = working_identity(directory, now)
    if existing is not None and not force:
        raise EnrolError(
            f"本机已有门店 {existing.store} 的有效证书 (至 {existing.not_after:%Y-%m-%d}), 未覆盖;"
            f" 确需重新登记请加 --force (this box already holds a working identity for store "
            f"{existing.store}, valid until {existing.not_after:%Y-%m-%d}: add --force to replace it)"
        )
    key_pem, csr_pem = make_key_and_csr(store)
    answer = post_enrolment(hq, store, code, csr_pem, cafile)
    cert_pem, ca_pem = answer["certificate"].encode(), answer["ca"].encode()
    try:
        identity = check_identity(key_pem, cert_pem, ca_pem, store)
    except ValidationError as exc:
        raise EnrolError(
            f"总部发回的证书不可用 (HQ's certificate does not fit: {exc.message})"
        ) from exc
    write_identity(directory, key_pem, cert_pem, ca_pem)
    return identity, answer


@click.command("enrol")
@click.option("--hq", "hq", required=True, help="HQ API address, e.g. https://hq.example.com")
@click.option("--store", required=True, help="this box's store code, e.g. S001")
@click.option("--code", required=True, help="the one-time code from `huiyuan-hq enrol-store`")
@click.option(
    "--credentials-dir",
    default=DEFAULT_CREDENTIALS_DIR,
    show_default=True,
    type=click.Path(file_okay=False),
    help="where systemd's LoadCredential= reads store.key, store.pem and ca.pem",
)
@click.option(
    "--hq-ca",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="CA file to check HQ's HTTPS certificate with (default: the system's)",
)
@click.option("--force", is_flag=True, help="replace a working identity")
def enrol(
    hq: str, store: str, code: str, credentials_dir: str, hq_ca: str | None, force: bool
) -> None:
    """登记本机: 生成密钥, 向总部申请门店证书 (enrol this box with HQ)."""
    directory = Path(credentials_dir)
    try:
        identity, answer = enrol_box(hq, store, code, directory, force=force, cafile=hq_ca)
    except HuiyuanError as exc:
        click.echo(exc.message, err=True)
        sys.exit(exc.code)
    except OSError as exc:
        click.echo(f"无法写入 {directory} (cannot write the credentials: {exc})", err=True)
        sys.exit(EnrolError.code)
    click.echo(
        f"登记成功: 门店 {identity.store}, 证书有效期至 {identity.not_after:%Y-%m-%d}"
        f" (enrolled store {identity.store}; certificate valid until "
        f"{identity.not_after:%Y-%m-%d})"
    )
    click.echo(f"  {directory / KEY_FILE}  {directory / CERT_FILE}  {directory / CA_FILE}")
    broker = (answer.get("broker") or {}).get("url")
    if isinstance(broker, str) and broker:
        click.echo(f'  edge.toml [sync] broker_url = "{broker}"')
    click.echo(
        "请重启服务以使用新证书 (restart the services to use it): "
        "systemctl restart huiyuan-edge-sync huiyuan-edge"
    )
