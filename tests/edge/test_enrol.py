"""``huiyuan-edge enrol`` against a real HQ API over HTTP: one command each side."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from core.keyfiles import write_atomically
from edge.cli import main as edge_main
from edge.enrol import (
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    check_identity,
    make_key_and_csr,
    working_identity,
)
from hq.api import create_app
from hq.ca import ChainCA
from hq.cli import main as hq_main
from hq.config import HqConfig
from hq.models import bind, open_database


class HqApi:
    """HQ's API (SQLite, a chain CA) served by werkzeug on a free port in a thread."""

    def __init__(self, tmp: Path) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.db_url = f"sqlite:///{tmp / 'hq.sqlite3'}"
        self.db = bind(open_database(self.db_url), create=True)
        self.ca = ChainCA.create(tmp / "ca")
        config = HqConfig(
            database_url=self.db_url, ca_dir=str(tmp / "ca"), store_broker_url="mqtts://b:8883"
        )
        self.server = make_server("127.0.0.1", 0, create_app(config, self.db), threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def code(self, store: str = "S001") -> str:
        out = CliRunner().invoke(hq_main, ["--database-url", self.db_url, "enrol-store", store])
        assert out.exit_code == 0, out.output
        bind(self.db, create=False)  # the command bound the models to its own connection
        return out.stdout.strip()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def hq(tmp_path):
    api = HqApi(tmp_path / "hq")
    yield api
    api.close()


def enrol(hq: HqApi, directory: Path, code: str, *extra: str, store: str = "S001"):
    args = ["enrol", "--hq", hq.url, "--store", store, "--code", code]
    return CliRunner().invoke(edge_main, [*args, "--credentials-dir", str(directory), *extra])


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_one_command_each_side_enrols_the_box(hq, tmp_path):
    creds = tmp_path / "credentials"
    out = enrol(hq, creds, hq.code())
    assert out.exit_code == 0, out.output
    assert "登记成功: 门店 S001" in out.output
    assert 'broker_url = "mqtts://b:8883"' in out.output
    assert mode(creds / KEY_FILE) == 0o600
    assert mode(creds / CERT_FILE) == mode(creds / CA_FILE) == 0o644
    assert (creds / CA_FILE).read_bytes() == hq.ca.ca_pem
    identity = check_identity(
        *((creds / f).read_bytes() for f in (KEY_FILE, CERT_FILE, CA_FILE)), "S001"
    )
    assert identity.store == "S001"
    assert sorted(p.name for p in creds.iterdir()) == sorted([KEY_FILE, CERT_FILE, CA_FILE])


def test_a_working_identity_is_kept_unless_forced(hq, tmp_path):
    creds = tmp_path / "credentials"
    assert enrol(hq, creds, hq.code()).exit_code == 0
    before = (creds / KEY_FILE).read_bytes()
    code = hq.code()
    out = enrol(hq, creds, code)
    assert out.exit_code != 0
    assert "已有门店 S001 的有效证书" in out.output and "--force" in out.output
    assert (creds / KEY_FILE).read_bytes() == before
    out = enrol(hq, creds, code, "--force")  # the code was not spent by the refusal
    assert out.exit_code == 0, out.output
    assert (creds / KEY_FILE).read_bytes() != before


def test_a_wrong_code_shows_hqs_reason_and_writes_nothing(hq, tmp_path):
    creds = tmp_path / "credentials"
    hq.code()
    out = enrol(hq, creds, "ABCD-EFGH-JKLM-NPQR")
    assert out.exit_code != 0
    assert "总部拒绝登记 (HQ refused, HTTP 403)" in out.output
    assert "登记码错误" in out.output
    assert not (creds / KEY_FILE).exists()


def test_a_code_for_another_store_is_refused(hq, tmp_path):
    out = enrol(hq, tmp_path / "c", hq.code("S002"), store="S001")
    assert out.exit_code != 0
    assert "HTTP 403" in out.output


@pytest.mark.parametrize("store", ["", "hq", "S/001", "S" * 33])
def test_a_bad_store_code_is_refused_before_anything_is_made(hq, tmp_path, store):
    out = enrol(hq, tmp_path / "c", hq.code(), store=store)
    assert out.exit_code == 11
    assert "门店编码无效" in out.output
    assert not (tmp_path / "c").exists()


def test_hq_unreachable_is_said_plainly(tmp_path):
    args = ["enrol", "--hq", "http://127.0.0.1:9", "--store", "S001", "--code", "X" * 16]
    out = CliRunner().invoke(edge_main, [*args, "--credentials-dir", str(tmp_path / "c")])
    assert out.exit_code != 0
    assert "无法连接总部" in out.output


def test_a_certificate_for_another_key_or_store_or_ca_does_not_fit(hq, tmp_path):
    key, csr = make_key_and_csr("S001")
    cert = hq.ca.sign_csr(csr, "S001", 30)
    other_key, _ = make_key_and_csr("S001")
    other_ca = ChainCA.create(tmp_path / "other-ca")
    assert check_identity(key, cert, hq.ca.ca_pem, "S001").store == "S001"
    for args, words in [
        ((other_key, cert, hq.ca.ca_pem, "S001"), "not for this key"),
        ((key, cert, hq.ca.ca_pem, "S002"), "not 'S002'"),
        ((key, cert, other_ca.ca_pem, "S001"), "not issued by the CA"),
    ]:
        with pytest.raises(Exception, match=words):
            check_identity(*args)


def test_an_expired_or_half_written_identity_is_not_working(hq, tmp_path):
    import datetime as dt

    creds = tmp_path / "c"
    assert enrol(hq, creds, hq.code()).exit_code == 0
    now = dt.datetime.now(dt.UTC)
    assert working_identity(creds, now) is not None
    assert working_identity(creds, now + dt.timedelta(days=3650)) is None
    write_atomically(creds / KEY_FILE, make_key_and_csr("S001")[0], 0o600)  # key, no cert yet
    assert working_identity(creds, now) is None
    assert enrol(hq, creds, hq.code()).exit_code == 0  # so enrolling again needs no --force
