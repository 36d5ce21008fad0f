"""The WeChat channel (hq/channels/wechat.py) against the fake adapter the test starts,
delivery reports for SMS and WeChat, the channel registry, the member ↔ openid binding and
its CSV import (``huiyuan-hq wechat import``)."""

from __future__ import annotations

import logging
import socket

import pytest
from click.testing import CliRunner

from core.errors import ConfigError, Conflict, ValidationError
from hq.channels import ChannelSendFailed, Sent, status_url_for
from hq.channels.fake_gateway import FakeSmsGateway, FakeWechatGateway
from hq.channels.registry import channels_from_config
from hq.channels.sms import HttpSmsGateway, SmsSendFailed, SmsSent
from hq.channels.wechat import (
    WechatChannel,
    WechatSendFailed,
    bind_openid,
    import_openids,
    openid_of,
    openids_of,
    unbind_openid,
)
from hq.cli import main
from hq.config import HqConfig
from hq.models import AuditEntry, MemberWechat, bind, utcnow
from hq.services import staff_merge
from tests.hq.test_access import _member

OPENID = "oAbCdEf0123456789_xyz-AB"
OTHER = "oZyXwV9876543210_abc-CD"
PHONE_A, PHONE_B = "13800000011", "13900000022"


@pytest.fixture
def wx():
    with FakeWechatGateway(token="s3cret") as gw:
        yield gw


def _channel(wx, timeout: float = 2, token: str = "s3cret") -> WechatChannel:  # noqa: S107
    return WechatChannel(wx.url, token, "TPL-1", timeout=timeout)


def test_a_send_posts_wechats_template_body_with_the_credential_and_key(wx, caplog):
    caplog.set_level(logging.DEBUG)
    text = "感谢您成为会员, 送您10元券。查看: https://m.example.cn/m/tok123 退订回TD"
    sent = _channel(wx).send(OPENID, text, "camp-1-m-1-wechat")
    assert sent == Sent("camp-1-m-1-wechat", "wx-1")
    assert wx.sent == [
        {
            "touser": OPENID,
            "template_id": "TPL-1",
            "data": {"content": {"value": text}},
            "url": "https://m.example.cn/m/tok123",
            "idempotency_key": "camp-1-m-1-wechat",
        }
    ]
    # the same key again: the adapter answers with the first msgid and sends nothing more
    assert _channel(wx).send(OPENID, text, "camp-1-m-1-wechat").gateway_id == "wx-1"
    assert len(wx.sent) == 1
    assert _channel(wx).send(OPENID, "无链接", "k-2").gateway_id == "wx-2"
    assert wx.sent[1]["url"] == ""
    assert OPENID not in caplog.text and OPENID[:6] in caplog.text


@pytest.mark.parametrize(
    ("fault", "errcode", "kind"),
    [
        (500, 0, "failed"),
        (503, 0, "failed"),
        (400, 0, "refused"),
        (429, 0, "refused"),
        ("errcode", 43004, "refused"),  # the member unfollowed the official account
        ("errcode", 40003, "refused"),  # not an openid of this account
        ("errcode", -1, "failed"),  # WeChat busy: worth retrying with the same key
    ],
)
def test_each_fault_is_a_channel_failure_of_its_kind(wx, fault, errcode, kind):
    wx.fail_next(fault, errcode=errcode)
    with pytest.raises(ChannelSendFailed) as failed:
        _channel(wx).send(OPENID, "hi", "k-3")
    assert isinstance(failed.value, WechatSendFailed)
    assert failed.value.kind == kind and failed.value.errcode == errcode
    assert failed.value.message.startswith("微信消息发送失败")
    assert wx.sent == []
    # the fault is spent: the same key goes through now
    assert _channel(wx).send(OPENID, "hi", "k-3").gateway_id == "wx-1"


def test_a_wrong_credential_a_stall_and_no_server(wx):
    with pytest.raises(WechatSendFailed) as refused:
        _channel(wx, token="wrong").send(OPENID, "hi", "k-4")
    assert refused.value.kind == "refused"
    wx.fail_next("timeout", seconds=5)
    with pytest.raises(WechatSendFailed) as stalled:
        _channel(wx, timeout=0.3).send(OPENID, "hi", "k-5")
    assert stalled.value.kind == "timeout"
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(WechatSendFailed) as gone:
        WechatChannel(f"http://127.0.0.1:{port}/x/send", "s3cret", "TPL-1", 1).send(
            OPENID, "hi", "k-6"
        )
    assert gone.value.kind == "unreachable"
    assert wx.sent == []


def test_a_bad_openid_or_text_is_refused_without_asking(wx):
    for to, text in (
        ("", "hi"),
        ("has space", "hi"),
        ("o" * 65, "hi"),
        (OPENID, ""),
        (OPENID, "x" * 501),
    ):
        with pytest.raises(WechatSendFailed) as refused:
            _channel(wx).send(to, text, "k-7")
        assert refused.value.kind == "refused"
    assert wx.sent == [] and wx.status_polls == 0


def test_wechat_statuses_report_delivered_and_failed_and_leave_out_unknown_ids(wx):
    channel = _channel(wx)
    ids = [channel.send(OPENID, f"m{i}", f"k-{i}").gateway_id for i in range(3)]
    wx.fail_delivery(ids[1])
    wx.fail_delivery()  # the next accepted one fails
    ids.append(channel.send(OTHER, "m3", "k-3").gateway_id)
    assert channel.statuses([*ids, "wx-99", ""]) == {
        ids[0]: "delivered",
        ids[1]: "failed",
        ids[2]: "delivered",
        ids[3]: "failed",
    }
    assert channel.statuses([]) == {}
    wx.fail_next(503)
    with pytest.raises(WechatSendFailed) as failed:
        channel.statuses(ids)
    assert failed.value.kind == "failed"


def test_sms_statuses_use_the_send_urls_sibling_or_the_configured_url():
    with FakeSmsGateway(token="s3cret") as gw:
        sms = HttpSmsGateway(gw.url, "s3cret", timeout=2)
        first = sms.send(PHONE_A, "hi", "k-1")
        assert isinstance(first, Sent) and SmsSent is Sent
        gw.fail_delivery()
        second = sms.send(PHONE_B, "hi", "k-2")
        assert status_url_for(gw.url) == gw.status_url
        assert sms.statuses([first.gateway_id, second.gateway_id, "nope"]) == {
            first.gateway_id: "delivered",
            second.gateway_id: "failed",
        }
        # 250 ids: asked in batches of 100, every known one answered
        many = [sms.send(PHONE_A, "hi", f"k-{i}").gateway_id for i in range(3, 253)]
        polls = gw.status_polls
        assert set(sms.statuses(many)) == set(many)
        assert gw.status_polls - polls == 3
        explicit = HttpSmsGateway("http://127.0.0.1:9/none", "s3cret", 2, gw.status_url)
        assert explicit.statuses([first.gateway_id]) == {first.gateway_id: "delivered"}
        with pytest.raises(SmsSendFailed) as refused:
            HttpSmsGateway(gw.url, "wrong", 2).statuses([first.gateway_id])
        assert refused.value.kind == "refused" and isinstance(refused.value, ChannelSendFailed)
        with pytest.raises(ValueError):
            gw.fail_next("errcode", errcode=43004)  # an SMS gateway has no errcodes


def test_the_status_url_is_the_send_urls_sibling():
    assert (
        status_url_for("https://gw.example.cn/v1/sms/send") == "https://gw.example.cn/v1/sms/status"
    )
    assert status_url_for("https://gw.example.cn/send?a=1") == "https://gw.example.cn/status?a=1"


def test_the_registry_holds_only_the_configured_channels(tmp_path, wx):
    token = tmp_path / "wx.token"
    token.write_text("s3cret\n")
    sms_token = tmp_path / "sms.token"
    sms_token.write_text("t\n")
    assert channels_from_config(HqConfig().validate()) == {}
    only_wx = HqConfig(
        wechat_api_url=wx.url,
        wechat_credentials_file=str(token),
        wechat_template_id="TPL-1",
        wechat_timeout=2,
    ).validate()
    found = channels_from_config(only_wx)
    assert list(found) == ["wechat"] and found["wechat"].name == "wechat"
    assert found["wechat"].send(OPENID, "hi", "k-1").gateway_id == "wx-1"
    both = HqConfig(
        sms_gateway_url="https://sms.example.cn/v1/send",
        sms_credentials_file=str(sms_token),
        wechat_api_url=wx.url,
        wechat_credentials_file=str(token),
        wechat_template_id="TPL-1",
    ).validate()
    assert sorted(channels_from_config(both)) == ["sms", "wechat"]
    assert channels_from_config(both)["sms"].name == "sms"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"wechat_api_url": "ftp://x/send", "wechat_template_id": "T"}, "wechat_api_url"),
        ({"wechat_api_url": "https://x/send"}, "wechat_template_id"),
        ({"wechat_status_url": "x/status"}, "wechat_status_url"),
        ({"sms_status_url": "gw/status"}, "sms_status_url"),
        ({"member_page_url": "https://m.example.cn/m/"}, "member_page_url"),
        ({"member_page_url": "javascript:{token}"}, "member_page_url"),
        ({"wechat_timeout": 0}, "wechat_timeout"),
    ],
)
def test_bad_channel_settings_are_refused_naming_the_field(fields, field):
    with pytest.raises(ConfigError) as bad:
        HqConfig(**fields).validate()
    assert bad.value.field == field


def test_a_missing_wechat_credential_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError) as missing:
        HqConfig(wechat_api_url="https://x/send", wechat_template_id="T").validate()
    assert missing.value.field == "wechat_credentials_file"
    config = HqConfig(
        wechat_api_url="https://x/send",
        wechat_template_id="T",
        wechat_credentials_file=str(tmp_path / "absent"),
    )
    with pytest.raises(ConfigError) as unreadable:
        channels_from_config(config)
    assert unreadable.value.field == "wechat_credentials_file"


def test_the_environment_names_the_wechat_settings(monkeypatch, tmp_path):
    token = tmp_path / "wx.token"
    token.write_text("s3cret\n")
    monkeypatch.setenv("HY_HQ_WECHAT_API_URL", "https://wx.example.cn/template/send")
    monkeypatch.setenv("HY_HQ_WECHAT_CREDENTIALS_FILE", str(token))
    monkeypatch.setenv("HY_HQ_WECHAT_TEMPLATE_ID", "TPL-9")
    monkeypatch.setenv("HY_HQ_WECHAT_TIMEOUT", "2.5")
    monkeypatch.setenv("HY_HQ_SMS_STATUS_URL", "https://sms.example.cn/dlr")
    monkeypatch.setenv("HY_HQ_MEMBER_PAGE_URL", "https://vip.example.cn/m/{token}")
    config = HqConfig.from_env()
    channel = channels_from_config(config)["wechat"]
    assert (channel.template_id, channel.timeout, channel.credential) == ("TPL-9", 2.5, "s3cret")
    assert config.sms_status_url == "https://sms.example.cn/dlr"
    assert config.member_page_url == "https://vip.example.cn/m/{token}"
    monkeypatch.setenv("HY_HQ_WECHAT_TIMEOUT", "soon")
    with pytest.raises(ConfigError):
        HqConfig.from_env()


# ---- the binding ----------------------------------------------------------------------


def test_binding_replaces_follows_merges_refuses_anothers_openid_and_is_audited(hq_db):
    a = _member(hq_db, "S001", PHONE_A)
    b = _member(hq_db, "S001", PHONE_B, "李四")
    now = utcnow()
    bind_openid(hq_db, a, OPENID, "import", now, by="ops")
    assert openid_of(a) == OPENID
    bind_openid(hq_db, a, OPENID, "import", now, by="ops")  # the same pair: nothing new
    with pytest.raises(Conflict) as taken:
        bind_openid(hq_db, b, OPENID, "import", now)
    assert taken.value.field == "openid"
    bind_openid(hq_db, a, OTHER, "portal", now)  # a new openid replaces the old one
    assert openid_of(a) == OTHER and MemberWechat.select().count() == 1
    for bad in ("", "o p", "x" * 65):
        with pytest.raises(ValidationError):
            bind_openid(hq_db, b, bad, "import", now)
    with pytest.raises(ValidationError):
        bind_openid(hq_db, b, OPENID, "guess", now)
    staff_merge(hq_db, b, a, "admin", utcnow())  # b merged into a: a is the survivor
    assert unbind_openid(hq_db, a, "ops", now) is True
    bind_openid(hq_db, b, OPENID, "import", now)  # b's id binds the survivor
    assert openid_of(a) == OPENID and openid_of(b) is None
    assert unbind_openid(hq_db, b, "ops", now) is True and openid_of(a) is None
    assert unbind_openid(hq_db, a, "ops", now) is False
    actions = [e.action for e in AuditEntry.select().where(AuditEntry.action.startswith("wechat."))]
    assert actions == [
        "wechat.bind",
        "wechat.bind",
        "wechat.unbind",
        "wechat.bind",
        "wechat.unbind",
    ]


def test_a_merge_carries_the_openid_to_the_survivor_unless_it_has_its_own(hq_db):
    """A campaign looks the openid up by the surviving member's id: a merge moves the
    merged-away member's binding there, and never overwrites the survivor's own."""
    a = _member(hq_db, "S001", PHONE_A)
    b = _member(hq_db, "S001", PHONE_B, "李四")
    c = _member(hq_db, "S001", "13700000044", "王五")
    now = utcnow()
    bind_openid(hq_db, b, OPENID, "import", now)
    staff_merge(hq_db, b, a, "admin", now)  # b merged into a
    assert openid_of(a) == OPENID
    assert MemberWechat.get(MemberWechat.openid == OPENID).member_id == a
    bind_openid(hq_db, c, OTHER, "import", now)
    staff_merge(hq_db, a, c, "admin", now)  # a (with b's openid) into c, which has its own
    assert openid_of(c) == OTHER
    assert MemberWechat.get(MemberWechat.openid == OPENID).member_id == a


def test_import_loads_good_rows_and_numbers_the_bad_ones_phones_masked(hq_db, hq_db_url, tmp_path):
    a = _member(hq_db, "S001", PHONE_A)
    b = _member(hq_db, "S001", PHONE_B, "李四")
    c = _member(hq_db, "S001", "13700000033", "王五")
    bind_openid(hq_db, c, "oTakenByC", "import", utcnow())
    csv = tmp_path / "openids.csv"
    csv.write_text(
        "\ufeff手机号,member_id,openid\n"  # Excel's BOM and a Chinese header
        f"138 0000 0011,,{OPENID}\n"  # line 2: good, by phone
        f",{b},{OTHER}\n"  # line 3: good, by member id
        f"13611112222,,oNobody\n"  # line 4: no such member
        f"{PHONE_A},{b},oBoth\n"  # line 5: both given
        "\n"  # a blank line is skipped, not an error
        f",{c},bad openid!\n"  # line 7: not an openid
        f",{a},oTakenByC\n"  # line 8: another member's openid
        f",{b},{OTHER}\n",  # line 9: already so: unchanged
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        main, ["--database-url", hq_db_url, "wechat", "import", str(csv), "--by", "ops"]
    )
    assert result.exit_code == 11, result.output
    bind(hq_db, create=False)  # the CLI bound the models to its own connection
    assert "已绑定 2 个, 未变 1 个, 错误 4 行" in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("第")]
    assert [int(line[1 : line.index("行")]) for line in lines] == [4, 5, 7, 8]
    assert "136****2222" in lines[0]
    assert "13611112222" not in result.output and PHONE_A not in result.output
    assert openid_of(a) == OPENID and openid_of(b) == OTHER and openid_of(c) == "oTakenByC"
    assert openids_of([a, b, "nobody", a]) == {a: OPENID, b: OTHER}
    # a file without the needed columns is refused as a whole, naming the header
    bad = tmp_path / "bad.csv"
    bad.write_text("name,openid\n张三,oX\n", encoding="utf-8")
    refused = CliRunner().invoke(main, ["--database-url", hq_db_url, "wechat", "import", str(bad)])
    assert refused.exit_code == 11 and "openid" in refused.output
    gone = CliRunner().invoke(main, ["--database-url", hq_db_url, "wechat", "unbind", a])
    assert gone.exit_code == 0 and "已解除绑定" in gone.output
    bind(hq_db, create=False)
    assert openid_of(a) is None


def test_import_of_text_reports_unreadable_rows(hq_db):
    result = import_openids(hq_db, "openid,phone\noAAA,12\n", "ops", utcnow())
    assert result.loaded == 0 and [line for line, _ in result.errors] == [2]
    assert result.errors[0][1].startswith("手机号 ** 无此会员")
