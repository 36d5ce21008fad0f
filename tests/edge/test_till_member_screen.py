"""The member at the cashier's screen in a real browser (docs/till-screen.md, "The
member"): found by a card number with letters and by pinyin, the glance, registered then
sold to, edited, topped up with the bonus previewed and a manager over the limit, the
annual card renewed, the password set and reset by a manager. The API behind each step
has its own tests (tests/edge/test_till_members.py, test_upkeep.py, test_cards.py)."""

from __future__ import annotations

import json

from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from edge.models import Card, Member, Outbox, Setting
from tests.browser import shot
from tests.edge.test_till_members import RULES, set_up_zhang_san
from tests.edge.till_screen import (
    by_id,
    scan,
    sign_in,
    till_screen,
    type_into,
    wait,
    wait_receipt,
    wait_text,
)


def press(driver, *keys) -> None:
    """Keys sent to whatever has the focus (as a cashier's keyboard does)."""
    driver.switch_to.active_element.send_keys(*keys)


def focused(driver) -> str:
    return driver.switch_to.active_element.get_attribute("id")


def visible(driver, element_id: str) -> bool:
    return by_id(driver, element_id).is_displayed()


def test_find_by_card_with_letters_and_by_pinyin_and_the_glance(demo_till):
    set_up_zhang_san(tags=["投诉"], birthday="1990-11-23", sv_principal=50000, sv_bonus=10000)
    with till_screen(demo_till) as (driver, _base):
        sign_in(driver)
        press(driver, Keys.F2)
        wait(driver, lambda d: focused(d) == "member-q", "F2 puts the focus in the member box")
        type_into(driver, "member-q", "c0001")  # a card number with letters, typed small
        text = wait_text(driver, "member", "张三")
        assert "C0001" in text and "投诉" in text
        glance = by_id(driver, "member-glance").text
        assert "黄金 → 钻石 还差 3800 成长值" in glance
        assert "1250 (可抵 ¥12.50)" in glance
        assert "¥600.00 (本金 ¥500.00 + 赠送 ¥100.00)" in glance
        assert "今天生日!" in glance
        wait(driver, lambda d: "…" not in by_id(d, "member-glance").text, "the coupons loaded")
        shot(driver, "till-member-glance")
        # pinyin initials find several members: picked by the keyboard
        press(driver, Keys.F2)
        type_into(driver, "member-q", "l")
        wait(driver, lambda d: visible(d, "member-results"), "a list of members")
        results = driver.find_elements("css selector", "#member-results button")
        assert len(results) > 1
        assert driver.switch_to.active_element == results[0], "the first result has the focus"
        names = [b.text for b in results]
        assert any("李四" in n for n in names), names
        shot(driver, "till-member-results")
        number = next(i for i, n in enumerate(names) if "李四" in n) + 1
        press(driver, str(number))
        wait_text(driver, "member", "李四")
        assert not visible(driver, "member-results")
        wait(driver, lambda d: focused(d) == "scan", "the scan box has the focus again")
        # Esc clears: the query, then the member
        press(driver, Keys.F2)
        by_id(driver, "member-q").send_keys("zhangsan")
        press(driver, Keys.ESCAPE)
        assert by_id(driver, "member-q").get_attribute("value") == ""
        press(driver, Keys.ESCAPE)
        wait_text(driver, "member", "散客")


def test_register_a_member_then_sell_to_them_and_edit_them(demo_till):
    with till_screen(demo_till) as (driver, _base):
        sign_in(driver)
        press(driver, Keys.F3)
        wait(driver, lambda d: visible(d, "member-edit-dialog"), "the registration dialog")
        assert focused(driver) == "me-name"
        type_into(driver, "me-name", "王小明", enter=False)
        type_into(driver, "me-phone", "12345", enter=False)
        type_into(driver, "me-card-no", "D0099", enter=False)
        by_id(driver, "me-tags").send_keys("爱喝茶")
        driver.find_element("css selector", "#me-consent input[data-channel=sms]").click()
        shot(driver, "till-member-register")
        by_id(driver, "me-name").send_keys(Keys.ENTER)
        # the API's error beside the field it names
        error = wait_text(driver, "member-edit-dialog", "手机号")
        slot = driver.find_element("css selector", '.field-error[data-for="phone"]')
        assert slot.text and "手机" in slot.text, error
        assert focused(driver) == "me-phone"
        shot(driver, "till-member-register-error")
        type_into(driver, "me-phone", "13700001234")
        wait_text(driver, "member", "王小明")
        assert not visible(driver, "member-edit-dialog")
        wait_text(driver, "error", "已登记会员 王小明")
        member = Member.get(Member.name == "王小明")
        assert Card.get_by_id("D0099").member_id == member.id and member.tags == ["爱喝茶"]
        # a sale to the new member
        scan(driver, "6901234567001", 1)
        type_into(driver, "cash", "100", enter=False)
        by_id(driver, "pay").click()
        wait_text(driver, "receipt-view", "本次积分")
        wait_text(driver, "member", "散客")  # the sale done, the member box cleared
        # found again by the new card, and edited (Alt+E)
        type_into(driver, "member-q", "D0099")
        wait_text(driver, "member", "王小明")
        press(driver, Keys.ALT, "e")
        wait(driver, lambda d: visible(d, "member-edit-dialog"), "the edit dialog")
        assert not visible(driver, "me-phone"), "the phone is HQ's to change"
        assert by_id(driver, "me-tags").get_attribute("value") == "爱喝茶"
        type_into(driver, "me-tags", "爱喝茶, 投诉", enter=False)
        type_into(driver, "me-birthday", "1990-02-30", enter=False)
        shot(driver, "till-member-edit")
        by_id(driver, "me-occupation").send_keys("教师", Keys.ENTER)
        wait(
            driver,
            lambda d: d.find_element("css selector", '.field-error[data-for="birthday"]').text,
            "the bad birthday said beside it",
        )
        shot(driver, "till-member-edit-error")
        Select(
            driver.find_element("css selector", "#me-consent select[data-channel=wechat]")
        ).select_by_value("true")
        type_into(driver, "me-birthday", "1990-02-28")
        wait(driver, lambda d: not visible(d, "member-edit-dialog"), "the edit saved")
        text = wait_text(driver, "member", "投诉")
        member = Member.get_by_id(member.id)
        assert member.occupation == "教师" and member.birthday == "1990-02-28"
        assert "投诉" in text
        consent = [json.loads(o.payload) for o in Outbox.select().where(Outbox.kind == "consent")]
        assert consent[-1]["body"]["member_id"] == member.id, consent
        assert consent[-1]["body"]["consent"] == {"wechat": True}  # only the channel changed
        shot(driver, "till-member-edited")


def test_top_up_with_the_bonus_previewed_and_a_manager_over_the_limit_then_renew_the_card(
    demo_till,
):
    Setting.replace(key="rules", value=RULES.to_dict()).execute()
    ls = Member.get_by_id(Card.get_by_id("C0002").member_id)
    Member.update(card_type="年卡", card_expires_on="2026-12-31").where(
        Member.id == ls.id
    ).execute()
    with till_screen(demo_till, 1024, 768) as (driver, _base):
        sign_in(driver)
        type_into(driver, "member-q", "C0002")
        wait_text(driver, "member-glance", "年卡 有效期至 2026-12-31")
        press(driver, Keys.F4)
        wait(driver, lambda d: visible(d, "member-topup-dialog"), "the top-up dialog")
        assert focused(driver) == "topup-amount"
        wait(driver, lambda d: d.find_elements("css selector", "#topup-quick button"), "quick keys")
        by_id(driver, "topup-amount").send_keys("600")
        preview = wait_text(driver, "topup-preview", "赠送 ¥100.00")
        assert "到账 ¥700.00" in preview and "再充 ¥400.00 可送 ¥250.00" in preview
        # a quick amount over the cashier's ¥2000: the approval is said before paying
        by_id(driver, "topup-amount").clear()
        by_id(driver, "topup-amount").send_keys("2500")
        wait_text(driver, "topup-approval", "需要店长授权")
        wait_text(driver, "topup-preview", "赠送 ¥250.00")
        shot(driver, "till-member-topup-preview-1024")
        by_id(driver, "topup-amount").send_keys(Keys.ENTER)
        wait(driver, lambda d: visible(d, "manager-dialog"), "the manager approval dialog")
        type_into(driver, "manager-code", "9001", enter=False)
        type_into(driver, "manager-pin", "9999")
        wait_text(driver, "topup-receipt", "充值 ¥2500.00 · 赠送 ¥250.00")
        # the top-up's own dialog keeps the screen: its slip waits behind it for F8
        wait_receipt(driver, "充值凭证")  # behind the top-up's own dialog, for F8
        wait_text(driver, "member-glance", "¥2750.00 (本金 ¥2500.00 + 赠送 ¥250.00)")
        shot(driver, "till-member-topup-done-1024")
        # the annual card tab: renewal from the day after its last day
        by_id(driver, "tab-card").click()
        offer = wait_text(driver, "card-offers", "续费")
        assert "有效期 2027-01-01 至 2027-12-31" in offer
        shot(driver, "till-member-card-renewal-1024")
        driver.find_element("css selector", "#card-offers button").click()
        wait_text(driver, "topup-receipt", "年卡 有效期至 2027-12-31")
        press(driver, Keys.ESCAPE)
        wait(driver, lambda d: not visible(d, "member-topup-dialog"), "the dialog closed")
        wait_text(driver, "member-glance", "年卡 有效期至 2027-12-31")
        shot(driver, "till-member-glance-1024")
    assert Member.get_by_id(ls.id).card_expires_on == "2027-12-31"


def test_the_member_password_set_then_reset_by_a_manager(demo_till):
    ls = Member.get_by_id(Card.get_by_id("C0002").member_id)
    assert ls.password_hash is None
    with till_screen(demo_till) as (driver, _base):
        sign_in(driver)
        type_into(driver, "member-q", "13800000002")
        wait_text(driver, "member", "李四")
        press(driver, Keys.ALT, "p")
        wait(driver, lambda d: visible(d, "member-password-dialog"), "the password dialog")
        assert "尚未设置密码" in by_id(driver, "pw-state").text
        type_into(driver, "pw-new", "246810", enter=False)
        type_into(driver, "pw-again", "246811")
        wait_text(driver, "pw-error", "两次输入的新密码不一致")
        type_into(driver, "pw-again", "246810")
        wait(driver, lambda d: not visible(d, "member-password-dialog"), "the password set")
        wait_text(driver, "error", "密码已设置")
        # forgotten: the cashier resets it with a manager's approval
        press(driver, Keys.ALT, "p")
        wait(driver, lambda d: visible(d, "member-password-dialog"), "the password dialog")
        assert not visible(driver, "pw-mode-set")
        by_id(driver, "pw-mode-reset").click()
        type_into(driver, "pw-new", "135790", enter=False)
        type_into(driver, "pw-again", "135790")
        wait(driver, lambda d: visible(d, "manager-dialog"), "the manager approval dialog")
        shot(driver, "till-member-password-reset-approval")
        type_into(driver, "manager-code", "9001", enter=False)
        type_into(driver, "manager-pin", "9999")
        wait(driver, lambda d: not visible(d, "member-password-dialog"), "the password reset")
        wait_text(driver, "error", "密码已重置")
    from core.passwords import verify_secret

    assert verify_secret("135790", Member.get_by_id(ls.id).password_hash)


def test_a_card_swiped_while_a_member_dialog_is_open_closes_it_and_shows_that_member(
    demo_till, tmp_path
):
    from edge.devices.config import DevicesConfig
    from edge.devices.manager import DeviceManager
    from tests.devices.conftest import wait_for

    devices = DeviceManager.from_config(
        DevicesConfig.from_dict({"reconnect_min_s": 0.05, "reconnect_max_s": 0.2}),
        tmp_path / "devices",
    )
    devices.start()
    try:
        wait_for(lambda: devices.states()["reader"]["state"] == "ready")
        with till_screen(demo_till, devices=devices) as (driver, _base):
            sign_in(driver)
            type_into(driver, "member-q", "C0002")
            wait_text(driver, "member", "李四")
            press(driver, Keys.F4)
            wait(driver, lambda d: visible(d, "member-topup-dialog"), "the top-up dialog")
            by_id(driver, "topup-amount").send_keys("100")
            devices.virtual_reader.swipe("C0001")
            wait_text(driver, "member", "张三")
            assert not visible(driver, "member-topup-dialog"), "no top-up for 李四 left open"
    finally:
        devices.stop()
    assert Member.get_by_id(Card.get_by_id("C0002").member_id).sv_principal == 0
