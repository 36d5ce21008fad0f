"""Returns and receipts on the cashier's screen, in a real browser: a member's sale paid
with stored value and cash, its receipt on screen (number, cashier, card masked); F7, the
receipt number typed short, one unit of one line back, the refund previewed per tender, a
manager's approval, the slip reading as a refund with the points taken back once; F8, the
day's sales and a reprint marked 重打 (at 1024x768)."""

from __future__ import annotations

from edge.api import create_app
from tests.browser import shot
from tests.edge.conftest import sign_in as api_sign_in
from tests.edge.till_screen import by_id, scan, sign_in, till_screen, type_into, wait, wait_text

OIL, APPLES = "6901234567003", "6901234567009"


def _press(driver, key) -> None:
    driver.switch_to.active_element.send_keys(key)


def _visible(element_id: str):
    return lambda d: d.find_element("id", element_id).is_displayed()


def test_a_partial_return_found_by_its_typed_receipt_number(demo_till):
    from selenium.webdriver.common.keys import Keys

    client = create_app(demo_till).test_client()
    topped = client.post(
        "/api/v1/topups",
        headers=api_sign_in(client),
        json={"member": {"card_no": "C0001"}, "amount": 20000},
    )
    assert topped.status_code == 201, topped.json
    with till_screen(demo_till, 1366, 768) as (driver, _base):
        sign_in(driver)
        type_into(driver, "member-q", "张三")  # card C0001's member, the one match: taken
        wait_text(driver, "member", "张三")
        scan(driver, OIL, 1)
        scan(driver, APPLES, 2)
        type_into(driver, "sv", "50", enter=False)
        type_into(driver, "pw", "123456", enter=False)
        type_into(driver, "cash", "100", enter=False)
        by_id(driver, "pay").click()
        wait(driver, _visible("receipt-dialog"), "the sale's receipt beside the basket")
        slip = wait_text(driver, "receipt-view", "小票号")
        number = driver.find_element("css selector", "#receipt-view .row.no span:last-child").text
        assert number.startswith("S001-") and "收银员" in slip
        assert "****0001" in slip and "C0001" not in slip  # the card masked, as printed
        # beside the basket it leaves the keyboard where it was: the scan box, where paying
        # puts it for the next customer
        assert driver.switch_to.active_element.get_attribute("id") == "scan"
        shot(driver, "till-return-1-sale-receipt")

        _press(driver, Keys.F7)  # the first key closes the receipt; F7 opens the return
        wait(driver, _visible("return-dialog"), "the return dialog")
        assert not by_id(driver, "receipt-dialog").is_displayed()
        type_into(driver, "return-no", str(int(number.split("-")[1])))  # typed short: "3"
        wait_text(driver, "return-head", number)
        first_qty = driver.find_element("css selector", "#return-lines input.qty")
        first_qty.send_keys(Keys.BACKSPACE, "1", Keys.ENTER)
        quote = wait_text(driver, "return-quote", "退款合计")
        assert "退储值" in quote and "退现金" in quote and "扣回积分 -" in quote
        shot(driver, "till-return-2-preview")

        by_id(driver, "return-confirm").click()  # a cashier: the manager approves
        wait(driver, _visible("manager-dialog"), "the manager approval")
        type_into(driver, "manager-code", "9001", enter=False)
        type_into(driver, "manager-pin", "9999")
        wait(driver, _visible("receipt-dialog"), "the return slip")
        slip = wait_text(driver, "receipt-view", "退货退款单")
        assert "退款合计" in slip and "退储值" in slip and "退现金" in slip
        assert "+-" not in slip and "应付" not in slip
        points = driver.find_element("css selector", "#receipt-view .row.points span:last-child")
        assert points.text.startswith("-") and points.text.count("-") == 1
        assert f"原小票 {number}" in slip
        wait_text(driver, "error", "已退款")
        shot(driver, "till-return-3-slip")
        _press(driver, Keys.ENTER)
        wait(driver, lambda d: not d.find_element("id", "receipt-dialog").is_displayed(), "closed")

        # the same receipt again: what is left shows, the returned unit does not come back
        _press(driver, Keys.F7)
        wait(driver, _visible("return-dialog"), "the return dialog again")
        type_into(driver, "return-no", number)
        head = wait_text(driver, "return-head", "部分已退")
        assert "已退" in head


def test_reprint_from_the_days_sales_at_1024(demo_till):
    from selenium.webdriver.common.keys import Keys

    client = create_app(demo_till).test_client()
    cashier = api_sign_in(client)
    numbers = []
    for sku in ("P0001", "P0009", "P0003"):
        sale = client.post(
            "/api/v1/sales",
            headers=cashier,
            json={"lines": [{"sku": sku}], "tenders": [{"kind": "cash", "amount": 10000}]},
        )
        assert sale.status_code == 201, sale.json
        numbers.append(sale.json["receipt"]["barcode"])
    with till_screen(demo_till, 1024, 768) as (driver, _base):
        sign_in(driver)
        _press(driver, Keys.F8)
        wait(driver, _visible("reprint-dialog"), "the reprint dialog")
        wait(driver, lambda d: len(d.find_elements("css selector", "#reprint-list tr")) == 3, "3")
        rows = driver.find_elements("css selector", "#reprint-list tr")
        assert [r.find_element("css selector", "td").text for r in rows] == numbers[::-1]
        shot(driver, "till-reprint-1-list-1024")
        type_into(driver, "reprint-no", numbers[0])
        wait(driver, lambda d: len(d.find_elements("css selector", "#reprint-list tr")) == 1, "1")
        _press(driver, Keys.ENTER)  # the focus is on its 重打 button
        wait(driver, _visible("receipt-dialog"), "the copy")
        slip = wait_text(driver, "receipt-view", "重打")
        assert numbers[0] in slip
        shot(driver, "till-reprint-2-copy-1024")
        _press(driver, Keys.ESCAPE)
        wait(driver, lambda d: not d.find_element("id", "receipt-dialog").is_displayed(), "closed")
        assert by_id(driver, "reprint-dialog").is_displayed()  # the list stays for the next
