"""The cashier screen's frame in a real browser: sign-in (Enter submits), the store's name
before and after, the sale panel hidden until signed in, a reload keeping the cashier
signed in, sign-out, and a first cash sale."""

from __future__ import annotations

from edge.api import create_app
from tests.browser import shot
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


def test_the_page_names_the_store_and_forbids_inline_script(demo_till):
    client = create_app(demo_till).test_client()
    res = client.get("/")
    page = res.get_data(as_text=True)
    assert res.status_code == 200
    assert demo_till.config.store.name in page and "会员收银台" in page
    assert "script-src 'self'" in res.headers["Content-Security-Policy"]
    assert "<script>" not in page and "<style>" not in page and " onclick=" not in page
    for module in ("core.js", "login.js", "sale.js", "pay.js", "member.js"):
        asset = client.get(f"/static/till/{module}")
        assert asset.status_code == 200, module
        asset.close()


def test_sign_in_reload_and_sign_out(demo_till):
    with till_screen(demo_till) as (driver, _base):
        assert not by_id(driver, "till").is_displayed(), "the sale panel shows before sign-in"
        assert demo_till.config.store.name in by_id(driver, "store").text
        type_into(driver, "staff", "1001")
        type_into(driver, "pin", "0000")
        wait_text(driver, "login-error", "员工编号或PIN错误")
        assert not by_id(driver, "till").is_displayed()
        sign_in(driver)
        assert "1001" in by_id(driver, "who").text
        shot(driver, "till-signed-in")
        driver.refresh()
        wait(
            driver,
            lambda d: d.find_element("id", "till").is_displayed(),
            "still signed in after a reload",
        )
        assert "1001" in by_id(driver, "who").text
        by_id(driver, "signout").click()
        wait(
            driver, lambda d: d.find_element("id", "login").is_displayed(), "the sign-in box again"
        )
        driver.refresh()
        wait(
            driver,
            lambda d: d.find_element("id", "login").is_displayed(),
            "signed out stays signed out",
        )
        assert not by_id(driver, "till").is_displayed()


def test_a_cash_sale_on_the_screen(demo_till):
    with till_screen(demo_till) as (driver, _base):
        sign_in(driver)
        scan(driver, "6901234567001", 1)
        type_into(driver, "cash", "100", enter=False)  # the touch on 结账 pays
        by_id(driver, "pay").click()
        wait_receipt(driver, "找零¥98.00")
        wait(
            driver,
            lambda d: not d.find_elements("css selector", "#lines tr"),
            "the basket empty after paying",
        )
        assert by_id(driver, "breakdown").text == ""
        shot(driver, "till-paid-cash")
