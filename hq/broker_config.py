"""The Mosquitto configuration HQ needs, as text: one generator for ``huiyuan-hq
broker-config`` and for the test broker (tests/broker.py), so the documented setup is
the tested one.

The secure broker has one TLS listener that requires a client certificate issued by
the chain CA and takes its CN as the MQTT user name (``use_identity_as_username``);
the ACL then lets each store (user = its code) publish only under
``hy/v1/{code}/up/`` and read only ``hy/v1/{code}/down/`` and HQ's broadcasts
``hy/v1/hq/``, and lets HQ (user ``hq``, a code no store may have) read and write
everything under ``hy/v1/``. A CRL written by HQ refuses revoked certificates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.protocol import INGEST_SUBSCRIPTION, TOPIC_ROOT

CONF_FILE = "mosquitto.conf"
ACL_FILE = "acl"
CA_FILE = "ca.pem"
CERT_FILE = "broker.pem"
KEY_FILE = "broker.key"
DEFAULT_PORT = 8883
HQ_USER = "hq"

# What every HQ broker gets: room for a chain's backlog of QoS 1 messages, and no
# Nagle delay (else Nagle meets delayed ACKs: 40 ms a leg).
TUNING = [
    "max_queued_messages 100000",
    "max_inflight_messages 100",
    "set_tcp_nodelay true",
]


@dataclass(frozen=True)
class BrokerFiles:
    """Where the broker finds its files (paths as seen on the broker's machine)."""

    directory: Path
    crl: Path

    @property
    def conf(self) -> Path:
        return self.directory / CONF_FILE

    @property
    def acl(self) -> Path:
        return self.directory / ACL_FILE

    @property
    def ca(self) -> Path:
        return self.directory / CA_FILE

    @property
    def cert(self) -> Path:
        return self.directory / CERT_FILE

    @property
    def key(self) -> Path:
        return self.directory / KEY_FILE


def acl_text() -> str:
    """The ACL file: ``pattern`` lines apply to every user (``%u`` is the user name,
    i.e. the certificate's CN); a store has no ``user`` section of its own."""
    root = TOPIC_ROOT
    return "\n".join(
        [
            "# Written by `huiyuan-hq broker-config`. The user name is the client",
            "# certificate's CN (use_identity_as_username): a store's code, or hq.",
            "",
            "# Every store: publish only its own up topics, read only its own down",
            "# topics and HQ's broadcasts. Nothing else, so a store cannot write",
            f"# {root}/hq/# nor speak or listen as another store.",
            f"pattern write {root}/%u/up/#",
            f"pattern read {root}/%u/down/#",
            f"pattern read {root}/hq/#",
            "",
            "# HQ (ingest workers, the CLI): everything under the root, including the",
            "# ingest workers' shared subscription.",
            f"user {HQ_USER}",
            f"topic readwrite {root}/#",
            f"topic read {INGEST_SUBSCRIPTION}",
            "",
        ]
    )


def secure_conf(
    files: BrokerFiles,
    port: int = DEFAULT_PORT,
    bind_address: str | None = None,
    persistence_dir: str | None = "/var/lib/mosquitto/",
    extra: list[str] | None = None,
) -> str:
    """mosquitto.conf for the chain: TLS with client certificates, the ACL, the CRL."""
    lines = [
        "# Written by `huiyuan-hq broker-config`; see docs/operations.md, Transport security.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"acl_file {files.acl}",
        *TUNING,
    ]
    if persistence_dir:
        lines += ["persistence true", f"persistence_location {persistence_dir.rstrip('/')}/"]
    lines += [
        "",
        f"listener {port}{' ' + bind_address if bind_address else ''}",
        "protocol mqtt",
        "tls_version tlsv1.2",
        f"cafile {files.ca}",
        f"certfile {files.cert}",
        f"keyfile {files.key}",
        f"crlfile {files.crl}",
        "require_certificate true",
        "use_identity_as_username true",
        *(extra or []),
    ]
    return "\n".join(lines) + "\n"


def insecure_anonymous_conf(
    port: int = 1883,
    bind_address: str = "127.0.0.1",
    persistence_dir: str | None = None,
    extra: list[str] | None = None,
) -> str:
    """A plaintext broker anyone may use as anyone: for a laptop, never a chain.
    Bound to localhost unless told otherwise."""
    lines = [
        "# INSECURE: no TLS, no client certificates, no ACL. Any client can act as any",
        "# store or as HQ. For a demo on one laptop only.",
        f"listener {port} {bind_address}",
        "allow_anonymous true",
        *TUNING,
    ]
    if persistence_dir:
        lines += ["persistence true", f"persistence_location {persistence_dir.rstrip('/')}/"]
    return "\n".join([*lines, *(extra or [])]) + "\n"


def write_secure_broker(
    out: Path,
    *,
    ca_pem: bytes,
    cert_pem: bytes,
    key_pem: bytes,
    crl: Path,
    port: int = DEFAULT_PORT,
    bind_address: str | None = None,
    persistence_dir: str | None = "/var/lib/mosquitto/",
    extra: list[str] | None = None,
    key_group: str | None = None,
) -> BrokerFiles:
    """Write the broker's directory: mosquitto.conf, acl, ca.pem, broker.pem and
    broker.key (0600, or 0640 for ``key_group``, the group the broker runs as). The
    CRL at ``crl`` is HQ's to write (hq.pki.write_crl); the conf only names it."""
    import shutil

    from hq.ca import write_private

    files = BrokerFiles(Path(out).resolve(), Path(crl).resolve())
    files.directory.mkdir(parents=True, exist_ok=True)
    files.ca.write_bytes(ca_pem)
    files.cert.write_bytes(cert_pem)
    write_private(files.key, key_pem)
    if key_group:
        shutil.chown(files.key, group=key_group)
        files.key.chmod(0o640)
    files.acl.write_text(acl_text())
    files.conf.write_text(secure_conf(files, port, bind_address, persistence_dir, extra))
    return files
