"""The shift and the day close on the cashier's screen, in a real browser: the header asks
a cashier with no open shift to open one; Alt+S opens it with a float; a cash sale; Alt+S
closes it with a count by denomination, showing the expected cash and the difference
before the close is confirmed; the day close, asked by a cashier, approved by a manager,
shows the report by tender, staff and member/walk-in; both slips print."""

from __future__ import annotations

from selenium.webdriver.common.keys import Keys

from edge.models import DayClose, Shift
from tests.browser import shot
from tests.devices.conftest import wait_for
from tests.edge.test_till_devices import devices  # noqa: F401 (the virtual devices fixture)
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


def test_a_shift_opened_sold_in_closed_and_the_day_closed_on_the_screen(demo_till, devices):  # noqa: F811
    with till_screen(demo_till, 1024, 768, devices=devices) as (driver, _base):
        sign_in(driver)
        wait(driver, lambda d: d.find_element("id", "shift-ask").is_displayed(), "the ask")
        shot(driver, "till-shift-ask")
        by_id(driver, "scan").send_keys(Keys.ALT, "s")
        wait(driver, lambda d: d.find_element("id", "shift-open").is_displayed(), "open pane")
        assert driver.switch_to.active_element.get_attribute("id") == "shift-float"
        shot(driver, "till-shift-open")
        type_into(driver, "shift-float", "500")
        wait_text(driver, "error", "已开班, 备用金 ¥500.00")
        assert not by_id(driver, "shift-ask").is_displayed()

        scan(driver, "6901234567001", 1)  # 2 yuan of water, paid with 10
        type_into(driver, "cash", "10", enter=False)  # the touch on 结账 pays
        by_id(driver, "pay").click()
        wait_receipt(driver, "找零¥8.00")

        by_id(driver, "scan").send_keys(Keys.ALT, "s")
        wait(driver, lambda d: d.find_element("id", "shift-close").is_displayed(), "close")
        assert "应有现金 ¥502.00" in by_id(driver, "shift-info").text
        # 5 notes of 100, 1 of 1 yuan, 1 of 5 jiao: 501.50, half a yuan short
        for face, n in (("10000", "5"), ("100", "1"), ("50", "1")):
            driver.find_element("css selector", f'.denom[data-face="{face}"]').send_keys(n)
        driver.find_element("css selector", '.denom[data-face="50"]').send_keys(Keys.ENTER)
        wait(driver, lambda d: d.find_element("id", "shift-preview").is_displayed(), "check")
        preview = by_id(driver, "shift-preview").text
        assert "应有现金 ¥502.00" in preview and "实点现金 ¥501.50" in preview
        assert "短款 -¥0.50" in preview
        assert driver.switch_to.active_element.get_attribute("id") == "shift-close-go"
        shot(driver, "till-shift-close-count")
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        wait_text(driver, "shift-done", "已交班")
        assert "短款 ¥0.50" in by_id(driver, "shift-done").text
        wait_for(lambda: any("交班单" in ln for ln in devices.virtual_printer.text_lines()))

        by_id(driver, "shift-tab-day").click()
        by_id(driver, "shift-day-go").send_keys(Keys.ENTER)
        # a cashier asks: the manager approves in the approval dialog
        wait(driver, lambda d: d.find_element("id", "manager-dialog").is_displayed(), "mgr")
        type_into(driver, "manager-code", "9001", enter=False)
        type_into(driver, "manager-pin", "9999")
        wait_text(driver, "shift-day-report", "按员工")
        report = by_id(driver, "shift-day-report").text
        assert "散客 1 ¥2.00" in report and "会员 0 ¥0.00" in report
        assert "现金 ¥2.00" in report and "短款 -¥0.50" in report
        shot(driver, "till-shift-day-report")
        by_id(driver, "shift-day-close").click()
        wait_text(driver, "shift-done", "已日结")
        shot(driver, "till-shift-day-closed")
        wait_for(lambda: any("日结单" in ln for ln in devices.virtual_printer.text_lines()))
    (shift,) = Shift.select()
    assert (shift.counted, shift.difference) == (50150, -50)
    (close,) = DayClose.select()
    assert close.closed_by == "9001" and close.figures["sales"]["walkin_count"] == 1
