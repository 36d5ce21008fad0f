"""A private Mosquitto for tests: its own port, config and persistence.

It runs the configuration ``huiyuan-hq broker-config`` writes (hq/broker_config.py):
TLS, a client certificate from the test CA required, the certificate's CN as user
name, the chain's ACL and a CRL. Identities are issued on demand
(``broker.identity("S001")``) and the helpers build what each client takes
(``sync_config``, ``hq_settings``, ``cli_args``, ``paho_tls``, ``publish``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography import x509

from hq.broker_config import write_secure_broker
from hq.ca import ChainCA

BROKER_NAMES = ("127.0.0.1", "localhost")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if not found:
        raise RuntimeError(
            "mosquitto is not installed: run `make setup` (apt-get install mosquitto)"
        )
    return found


@dataclass(frozen=True)
class Identity:
    """The three files an MQTT client over TLS needs, as paths."""

    common_name: str
    ca: str
    cert: str
    key: str
    serial: int


class TestPki:
    """A chain CA for a test session (or a test), with identities issued on demand and
    a CRL the brokers using it read."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.ca = ChainCA.create(self.directory / "ca")
        self.ca_path = str(self.directory / "ca" / "ca.pem")
        self.crl = self.directory / "crl.pem"
        self._identities: dict[str, Identity] = {}
        self._revoked: list[tuple[int, dt.datetime]] = []
        self.crl.write_bytes(self.ca.crl_pem([]))

    def identity(self, common_name: str) -> Identity:
        """The client identity for ``common_name`` (a store code, or ``hq``), made once."""
        if common_name not in self._identities:
            self._identities[common_name] = self.issue(common_name)
        return self._identities[common_name]

    def issue(self, common_name: str, server_names: tuple[str, ...] = ()) -> Identity:
        """A new key and certificate for ``common_name`` (another one each call)."""
        key_pem, cert_pem = self.ca.issue_identity(common_name, 30, server_names)
        serial = x509.load_pem_x509_certificate(cert_pem).serial_number
        folder = self.directory / "identities" / f"{common_name}-{serial:x}"
        folder.mkdir(parents=True)
        (folder / "cert.pem").write_bytes(cert_pem)
        (folder / "key.pem").write_bytes(key_pem)
        (folder / "key.pem").chmod(0o600)
        return Identity(
            common_name, self.ca_path, str(folder / "cert.pem"), str(folder / "key.pem"), serial
        )

    def revoke(self, identity: Identity) -> None:
        """List ``identity`` in the CRL (brokers see it once reloaded)."""
        self._revoked.append((identity.serial, dt.datetime.now(dt.UTC)))
        self.crl.write_bytes(self.ca.crl_pem(self._revoked))
        self._identities = {
            cn: i for cn, i in self._identities.items() if i.serial != identity.serial
        }


@contextlib.contextmanager
def running(workdir: Path, pki: TestPki) -> Iterator[Mosquitto]:
    """A secure test broker, started, stopped at the end."""
    broker = Mosquitto(workdir, pki)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class Mosquitto:
    """A real broker on 127.0.0.1:<free port>; stop/start keep the same port. It runs
    what ``huiyuan-hq broker-config`` writes, with ``pki``'s CA and CRL, or (``conf``)
    a configuration written elsewhere, on ``port``."""

    def __init__(
        self,
        workdir: Path,
        pki: TestPki | None,
        port: int | None = None,
        persistence: bool = True,
        conf: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.pki = pki
        self.proc: subprocess.Popen[bytes] | None = None
        self._procs: list[subprocess.Popen[bytes]] = []
        if conf is not None:
            self.conf = Path(conf)
            return
        if pki is None:
            raise ValueError("a test broker needs a TestPki (or a configuration to run)")
        server = pki.issue("broker", BROKER_NAMES)
        persistence_lines = ["autosave_interval 1"] if persistence else []
        # the test runs the broker as whoever runs the tests (as root, Mosquitto would
        # drop to the mosquitto user, which cannot read pytest's tmp dirs)
        files = write_secure_broker(
            self.workdir,
            ca_pem=pki.ca.ca_pem,
            cert_pem=Path(server.cert).read_bytes(),
            key_pem=Path(server.key).read_bytes(),
            crl=pki.crl,
            port=self.port,
            bind_address="127.0.0.1",
            persistence_dir=str(self.workdir) if persistence else None,
            extra=[
                f"user {getpass.getuser()}",
                f"log_dest file {self.workdir / 'mosquitto.log'}",
                *persistence_lines,
            ],
        )
        self.conf = files.conf

    @property
    def url(self) -> str:
        """The broker's URL; a client also needs an identity's files (``tls_args``)."""
        return f"mqtts://{self.host}:{self.port}"

    # ---- what clients take (secure mode) ---------------------------------------------

    def identity(self, common_name: str) -> Identity:
        if self.pki is None:
            raise RuntimeError("this broker runs a configuration of its own: no TestPki")
        return self.pki.identity(common_name)

    def tls_args(self, common_name: str) -> dict[str, str]:
        """``ca``, ``cert``, ``key`` for ``common_name``: the keyword arguments
        SyncConfig and MqttSettings take."""
        who = self.identity(common_name)
        return {"ca": who.ca, "cert": who.cert, "key": who.key}

    def sync_config(self, code: str, **extra: Any):  # noqa: ANN201
        """A store's SyncConfig for this broker, as ``code``."""
        from edge.sync.config import SyncConfig

        return replace(SyncConfig(broker_url=self.url), **self.tls_args(code), **extra)

    def hq_settings(self, client_id: str, **extra: Any):  # noqa: ANN201
        """HQ's MqttSettings for this broker, as the identity ``hq``."""
        from hq.config import MqttSettings

        return MqttSettings(url=self.url, client_id=client_id, **self.tls_args("hq"), **extra)

    def cli_args(self, common_name: str = "hq") -> list[str]:
        """``--mqtt-url`` and the TLS options for ``huiyuan-hq`` as ``common_name``."""
        args = ["--mqtt-url", self.url]
        for name, path in self.tls_args(common_name).items():
            args += [f"--mqtt-{name}", path]
        return args

    def paho_tls(self, client: Any, common_name: str) -> None:
        """Set up a raw paho client to connect as ``common_name``."""
        who = self.identity(common_name)
        client.tls_set(ca_certs=who.ca, certfile=who.cert, keyfile=who.key)

    def publish(self, common_name: str, topic: str, payload: bytes, retain: bool = False) -> None:
        """One QoS 1 message, sent as ``common_name`` (paho's single: connect, publish,
        wait for the PUBACK, disconnect)."""
        from paho.mqtt import publish
        from paho.mqtt.client import MQTTv5

        who = self.identity(common_name)
        tls = {"ca_certs": who.ca, "certfile": who.cert, "keyfile": who.key}
        publish.single(
            topic,
            payload,
            qos=1,
            retain=retain,
            hostname=self.host,
            port=self.port,
            protocol=MQTTv5,
            tls=tls,
        )

    # ---- the process -----------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._procs.append(self.proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self._close_pipes()
                raise RuntimeError(f"mosquitto exited at start: {err}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout}s")

    def reload(self) -> None:
        """SIGHUP: Mosquitto 2.0 re-reads its configuration, certificates and the CRL
        (in its main loop, soon after: poll for the effect); open connections stay."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError("the broker is not running")
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        self._close_pipes()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None
        self._close_pipes()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _close_pipes(self) -> None:
        """A stopped broker's stderr pipe, left open, is an unraisable ResourceWarning."""
        for proc in self._procs:
            if proc.poll() is not None and proc.stderr and not proc.stderr.closed:
                proc.stderr.close()
