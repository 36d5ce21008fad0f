"""The systemd units: each passes `systemd-analyze verify`, is hardened, gets its secrets
as credentials, feeds a watchdog, and leaves schema changes to its migrate unit."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
INSTALLED_BIN = "/opt/huiyuan/.venv/bin/"
# the venv these tests run in has the same console scripts the units start
VENV_BIN = Path(sys.executable).parent

SERVICES = sorted(p.name for p in UNITS.glob("*.service"))
LONG_RUNNING = {
    "huiyuan-edge.service": "huiyuan-edge-migrate.service",
    "huiyuan-edge-sync.service": "huiyuan-edge-migrate.service",
    "huiyuan-hq-api.service": "huiyuan-hq-migrate.service",
    "huiyuan-hq-ingest@.service": "huiyuan-hq-migrate.service",
    "huiyuan-hq-scheduler.service": "huiyuan-hq-migrate.service",
}
# the secrets each unit must receive as credentials (docs/operations.md, "Credentials")
CREDENTIALS = {
    "huiyuan-edge-migrate.service": {"member.key"},
    "huiyuan-edge.service": {"member.key", "mqtt-ca.pem", "mqtt-cert.pem", "mqtt-key.pem"},
    "huiyuan-edge-sync.service": {"member.key", "mqtt-ca.pem", "mqtt-cert.pem", "mqtt-key.pem"},
    "huiyuan-hq-migrate.service": {"database-url"},
    "huiyuan-hq-api.service": {"database-url", "ca.key", "metrics-token", "lookup.key"},
    "huiyuan-hq-ingest@.service": {
        "database-url",
        "mqtt-ca.pem",
        "mqtt-cert.pem",
        "mqtt-key.pem",
        "lookup.key",
        "metrics-token",
        "ca.key",
    },
    "huiyuan-hq-scheduler.service": {
        "database-url",
        "mqtt-ca.pem",
        "mqtt-cert.pem",
        "mqtt-key.pem",
        "ca.key",
    },
    "huiyuan-broker-crl.service": set(),
}
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "SystemCallArchitectures": "native",
}


def keys(name: str) -> dict[str, list[str]]:
    """A unit file's keys and their values (a key may repeat), all sections."""
    out: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def installed_copies(target: Path) -> Path:
    """The units as installed, except that /opt/huiyuan/.venv/bin is this venv's bin (the
    one difference: verify checks that each ExecStart is an executable file)."""
    target.mkdir()
    for unit in UNITS.iterdir():
        text = unit.read_text().replace(INSTALLED_BIN, f"{VENV_BIN}/")
        (target / unit.name).write_text(text)
    return target


def test_every_service_has_a_credential_list_here():
    assert set(SERVICES) == set(CREDENTIALS)


def test_the_console_scripts_the_units_start_are_in_this_venv():
    for name in ("huiyuan-edge", "huiyuan-hq"):
        assert os.access(VENV_BIN / name, os.X_OK), f"{VENV_BIN / name}: pip install -e ."


def test_every_unit_passes_systemd_analyze_verify(tmp_path):
    assert shutil.which("systemd-analyze"), "systemd-analyze is part of the test setup"
    units = installed_copies(tmp_path / "units")
    names = [p.name for p in sorted(units.iterdir())]
    # a template is verified through an instance
    names = [n.replace("@.service", "@1.service") for n in names]
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        cwd=units,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:", "SYSTEMD_LOG_LEVEL": "notice"},
        capture_output=True,
        text=True,
        check=False,
    )
    # verify exits 0 on an unknown or misspelt key and only warns: any output fails
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_verify_finds_a_misspelt_key_and_a_missing_executable(tmp_path):
    """The check above can fail: the same run on two broken copies."""
    units = installed_copies(tmp_path / "units")
    unit = units / "huiyuan-hq-api.service"
    unit.write_text(
        unit.read_text()
        .replace("ProtectHome=", "ProtectHomes=")
        .replace("huiyuan-hq serve-api", "huiyuan-hq-missing serve-api")
    )
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", unit.name],
        cwd=units,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Unknown key 'ProtectHomes'" in done.stderr
    assert "huiyuan-hq-missing is not executable" in done.stderr and done.returncode != 0


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_is_hardened(name):
    unit = keys(name)
    for key, value in HARDENING.items():
        assert unit.get(key) == [value], (name, key)
    assert "@system-service" in unit["SystemCallFilter"], name
    assert "~@privileged" in unit["SystemCallFilter"], name
    families = unit["RestrictAddressFamilies"][0].split()
    assert set(families) <= {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}, name
    if name != "huiyuan-broker-crl.service":  # root only to ask systemd to reload the broker
        assert unit["User"][0] in {"huiyuan", "huiyuan-hq"}, name
        assert unit["UMask"] == ["0077"], name


@pytest.mark.parametrize("name", SERVICES)
def test_every_secret_arrives_as_a_credential(name):
    unit = keys(name)
    given = {c.split(":", 1)[0] for c in unit.get("LoadCredential", [])}
    assert given == CREDENTIALS[name]
    # a secret is never in the environment or on the command line
    text = (UNITS / name).read_text()
    assert not re.search(r"postgres(ql)?://\S*:\S*@", text)
    for env in unit.get("Environment", []):
        assert not re.search(r"(?i)(password|secret|token|key)=", env), (name, env)


@pytest.mark.parametrize("name", sorted(LONG_RUNNING))
def test_services_notify_feed_a_watchdog_and_leave_migrations_to_their_unit(name):
    unit = keys(name)
    migrate = LONG_RUNNING[name]
    assert unit["Type"] == ["notify"], name
    assert int(unit["WatchdogSec"][0]) >= 30, name
    assert unit["Restart"] == ["always"] and unit["RestartPreventExitStatus"] == ["17"], name
    assert migrate in unit["Requires"][0].split() and migrate in unit["After"][0].split(), name
    for pre in unit.get("ExecStartPre", []) + unit["ExecStart"]:
        assert not re.search(r"\b(migrate|init-db)\b", pre), (name, pre)


@pytest.mark.parametrize("name", ["huiyuan-edge-migrate.service", "huiyuan-hq-migrate.service"])
def test_the_migrate_units_are_oneshots_that_stay_active(name):
    unit = keys(name)
    assert unit["Type"] == ["oneshot"] and unit["RemainAfterExit"] == ["yes"]
    command = {
        "huiyuan-edge-migrate.service": "huiyuan-edge migrate",
        "huiyuan-hq-migrate.service": "huiyuan-hq init-db",
    }
    assert command[name] in unit["ExecStart"][0]


def test_every_credential_is_in_the_operations_table():
    doc = (ROOT / "docs" / "operations.md").read_text()
    table = doc[doc.index("### Credentials") :]
    for name, creds in CREDENTIALS.items():
        for cred in creds:
            row = next((line for line in table.splitlines() if line.startswith(f"| `{cred}`")), "")
            assert row, f"{cred} missing from docs/operations.md, Credentials"
            assert name.removesuffix(".service") in row, (cred, name)
