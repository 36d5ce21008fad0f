"""The documented commands, in order: init-ca, issue-identity, broker-config, then a real
Mosquitto run from the written configuration, and revoke-store + reload refusing the
revoked store while HQ and the other stores stay in."""

from __future__ import annotations

import getpass
import stat
from pathlib import Path

from click.testing import CliRunner
from cryptography import x509

from hq.cli import main
from tests.broker import Identity, Mosquitto, free_port
from tests.sync.helpers import wait_until
from tests.sync.test_broker_acl import NOT_AUTHORIZED, probe, refused


def hq_cli(tmp_path: Path, *args: str) -> str:
    result = CliRunner().invoke(
        main,
        ["--database-url", f"sqlite:///{tmp_path / 'hq.sqlite3'}", *args],
        env={"HY_HQ_CA_DIR": str(tmp_path / "ca"), "CREDENTIALS_DIRECTORY": ""},
    )
    assert result.exit_code == 0, result.output
    return result.output


def identity_in(folder: Path, common_name: str) -> Identity:
    cert = folder / f"{common_name}.pem"
    serial = x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
    return Identity(
        common_name, str(folder / "ca.pem"), str(cert), str(folder / f"{common_name}.key"), serial
    )


def test_the_documented_commands_make_a_broker_that_admits_and_refuses(tmp_path):
    port = free_port()
    hq_cli(tmp_path, "init-db")
    hq_cli(tmp_path, "init-ca")
    hq_cli(tmp_path, "issue-identity", "hq", "--out", str(tmp_path / "hq-id"))
    for code in ("S001", "S002"):
        hq_cli(tmp_path, "issue-identity", code, "--out", str(tmp_path / code))
    out = hq_cli(
        tmp_path,
        "broker-config",
        "--out",
        str(tmp_path / "broker"),
        "--host",
        "localhost",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--persistence-dir",
        str(tmp_path / "broker"),
        "--key-group",
        "",
    )
    conf = tmp_path / "broker" / "mosquitto.conf"
    assert str(conf) in out
    text = conf.read_text()
    for line in (
        "require_certificate true",
        "use_identity_as_username true",
        "allow_anonymous false",
    ):
        assert line in text.splitlines()
    assert f"crlfile {(tmp_path / 'ca' / 'crl.pem').resolve()}" in text
    assert stat.S_IMODE((tmp_path / "broker" / "broker.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "hq-id" / "hq.key").stat().st_mode) == 0o600
    # as root Mosquitto would run as the mosquitto user, which cannot read pytest's tmp
    conf.write_text(text + f"user {getpass.getuser()}\n")

    broker = Mosquitto(tmp_path / "run", None, port=port, conf=conf)
    broker.start()
    try:
        hq, s1, s2 = (
            identity_in(tmp_path / "hq-id", "hq"),
            identity_in(tmp_path / "S001", "S001"),
            identity_in(tmp_path / "S002", "S002"),
        )
        ca = hq.ca
        store = probe(broker, s1, ca)
        assert store.connected.is_set()
        assert store.publish("hy/v1/S002/up/tx") == NOT_AUTHORIZED
        assert store.publish("hy/v1/hq/state") == NOT_AUTHORIZED
        assert store.publish("hy/v1/S001/up/tx") in (0x00, 0x10)
        store.close()
        assert refused(broker, None, ca)

        out = hq_cli(tmp_path, "revoke-store", "S001", "--reason", "stolen")
        assert "1 certificate(s) revoked" in out
        broker.reload()
        wait_until(lambda: refused(broker, s1, ca), 10, "S001 refused after revoke-store")
        assert not refused(broker, s2, ca)
        assert not refused(broker, hq, ca)
        listing = hq_cli(tmp_path, "certificates", "--name", "S001")
        assert "revoked" in listing and "stolen" in listing
    finally:
        broker.stop()


def test_the_laptop_broker_is_behind_a_flag_named_for_what_it_is(tmp_path):
    hq_cli(tmp_path, "broker-config", "--out", str(tmp_path / "lap"), "--insecure-anonymous")
    text = (tmp_path / "lap" / "mosquitto.conf").read_text()
    assert "allow_anonymous true" in text.splitlines()
    assert "listener 1883 127.0.0.1" in text.splitlines()
    assert text.startswith("# INSECURE")


def test_broker_config_needs_a_host_and_a_ca(tmp_path):
    runner = CliRunner()
    env = {"HY_HQ_CA_DIR": str(tmp_path / "ca"), "CREDENTIALS_DIRECTORY": ""}
    db = ["--database-url", f"sqlite:///{tmp_path / 'hq.sqlite3'}"]
    assert runner.invoke(main, [*db, "init-db"], env=env).exit_code == 0
    no_host = runner.invoke(main, [*db, "broker-config", "--out", str(tmp_path / "b")], env=env)
    assert no_host.exit_code == 11 and "--host" in no_host.output
    no_ca = runner.invoke(
        main, [*db, "broker-config", "--out", str(tmp_path / "b"), "--host", "mq"], env=env
    )
    assert no_ca.exit_code == 17 and "init-ca" in no_ca.output
