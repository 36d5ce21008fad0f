"""The SMS channel (hq/channels/sms.py) against the fake gateway the test starts."""

from __future__ import annotations

import logging

import pytest

from core.errors import ConfigError
from hq.channels.fake_gateway import FakeSmsGateway
from hq.channels.sms import HttpSmsGateway, SmsSendFailed, read_sms_credential, sms_gateway
from hq.config import HqConfig

PHONE = "13812345678"


@pytest.fixture
def gateway():
    with FakeSmsGateway(token="s3cret") as gw:
        yield gw


def test_a_send_posts_json_with_the_credential_and_an_idempotency_key(gateway, caplog):
    caplog.set_level(logging.DEBUG)
    sms = HttpSmsGateway(gateway.url, "s3cret", timeout=2)
    sent = sms.send(PHONE, "验证码 123456", "k-1")
    assert sent.idempotency_key == "k-1" and sent.gateway_id == "fake-1"
    assert gateway.sent == [
        {"to": PHONE, "text": "验证码 123456", "idempotency_key": "k-1", "header_key": "k-1"}
    ]
    # the same key again: the gateway answers with the first id and sends nothing more
    assert sms.send(PHONE, "验证码 123456", "k-1").gateway_id == "fake-1"
    assert len(gateway.sent) == 1
    assert PHONE not in caplog.text and "138****5678" in caplog.text


@pytest.mark.parametrize(
    ("fault", "kind"), [(500, "failed"), (503, "failed"), (400, "refused"), (429, "refused")]
)
def test_a_refused_or_failed_send_raises_a_clear_error(gateway, fault, kind, caplog):
    gateway.fail_next(fault)
    with pytest.raises(SmsSendFailed) as failed:
        HttpSmsGateway(gateway.url, "s3cret", timeout=2).send(PHONE, "hi", "k-2")
    assert failed.value.kind == kind
    assert failed.value.message.startswith("短信发送失败")
    assert PHONE not in failed.value.message and PHONE not in caplog.text
    assert gateway.sent == []


def test_a_wrong_credential_is_refused(gateway):
    with pytest.raises(SmsSendFailed) as failed:
        HttpSmsGateway(gateway.url, "wrong", timeout=2).send(PHONE, "hi", "k-3")
    assert failed.value.kind == "refused"


def test_a_gateway_that_does_not_answer_times_out(gateway):
    gateway.fail_next("timeout", seconds=5)
    with pytest.raises(SmsSendFailed) as failed:
        HttpSmsGateway(gateway.url, "s3cret", timeout=0.3).send(PHONE, "hi", "k-4")
    assert failed.value.kind == "timeout"


def test_a_gateway_that_is_not_there_is_unreachable():
    with FakeSmsGateway() as gw:
        url = gw.url
    with pytest.raises(SmsSendFailed) as failed:
        HttpSmsGateway(url, "x", timeout=1).send(PHONE, "hi", "k-5")
    assert failed.value.kind == "unreachable"


def test_the_config_names_url_and_credentials_file(tmp_path, gateway):
    assert sms_gateway(HqConfig(database_url=f"sqlite:///{tmp_path}/hq.sqlite3")) is None
    creds = tmp_path / "sms.token"
    creds.write_text("s3cret\n")
    config = HqConfig(
        database_url=f"sqlite:///{tmp_path}/hq.sqlite3",
        sms_gateway_url=gateway.url,
        sms_credentials_file=str(creds),
    ).validate()
    sms_gateway(config).send(PHONE, "hi", "k-6")
    assert gateway.sent[0]["idempotency_key"] == "k-6"
    with pytest.raises(ConfigError, match="sms_credentials_file"):
        HqConfig(sms_gateway_url=gateway.url).validate()
    with pytest.raises(ConfigError, match="http"):
        HqConfig(sms_gateway_url="ftp://x", sms_credentials_file=str(creds)).validate()
    (tmp_path / "empty").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        read_sms_credential(str(tmp_path / "empty"))


def test_the_environment_sets_the_gateway(tmp_path, monkeypatch, gateway):
    creds = tmp_path / "sms.token"
    creds.write_text("s3cret")
    monkeypatch.setenv("HY_HQ_SMS_GATEWAY_URL", gateway.url)
    monkeypatch.setenv("HY_HQ_SMS_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("HY_HQ_DATABASE_URL", f"sqlite:///{tmp_path}/hq.sqlite3")
    config = HqConfig.from_env()
    assert config.sms_gateway_url == gateway.url and config.sms_credentials_file == str(creds)
