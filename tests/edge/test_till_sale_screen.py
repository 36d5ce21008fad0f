"""The basket and the payment on the cashier's screen, in a real browser, one session per
flow: scan by barcode, name and pinyin; quantity errors and removing lines; a discount
with the manager's approval; park, reload and recall; split tenders with quick cash and
change due, everything reset after paying; the offline banner and a printer fault.
Screenshots: test-artifacts/screenshots/till-sale-*.png."""

from __future__ import annotations

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from edge.devices.config import DevicesConfig
from edge.devices.manager import DeviceManager
from edge.models import ParkedSale
from tests.browser import shot
from tests.edge.till_screen import by_id, scan, sign_in, till_screen, type_into, wait, wait_text

WATER, MILK, OIL = "6901234567001", "6901234567002", "6901234567003"


def rows(driver) -> list[str]:
    """The basket's lines as shown (read in one go: the screen re-renders them)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#lines tr')].map(tr => tr.innerText)"
    )


def qty_values(driver) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#lines input.qty')].map(i => i.value)"
    )


def press(driver, *keys) -> None:
    ActionChains(driver).send_keys(*keys).perform()


def active_id(driver) -> str:
    return driver.switch_to.active_element.get_attribute("id")


def error_text(driver) -> str:
    return by_id(driver, "error").text


def identify(driver, q: str = "13800000001") -> None:
    """The member by phone: the one match is taken at once."""
    type_into(driver, "member-q", q)
    wait(
        driver,
        lambda d: "walkin" not in d.find_element("id", "member").get_attribute("class"),
        "a member found",
    )


def test_scan_by_barcode_name_and_pinyin(demo_till):
    with till_screen(demo_till) as (driver, _base):
        sign_in(driver)
        scan(driver, WATER, 1)  # a scanner: the barcode and Enter
        assert "农夫山泉" in rows(driver)[0]
        scan(driver, "蒙牛", 2)  # one product by name: added at once
        assert "蒙牛纯牛奶" in rows(driver)[1]
        type_into(driver, "scan", "kl")  # initials of 颗粒: two products to pick from
        wait(
            driver,
            lambda d: len(d.find_elements("css selector", "#product-results button")) == 2,
            "two picks",
        )
        assert active_id(driver) != "scan"  # the first pick has the focus
        shot(driver, "till-sale-picks")
        press(driver, "2")  # number key: the second pick
        wait(driver, lambda d: len(rows(d)) == 3, "the picked product added")
        assert "板蓝根" in rows(driver)[2]
        assert not by_id(driver, "product-results").is_displayed()
        scan(driver, "nfsq", 3)  # pinyin initials of a product in the basket: one more
        wait(driver, lambda d: qty_values(d)[0] == "2", "water ×2")
        type_into(driver, "scan", "zzzqqq")
        wait_text(driver, "error", "没有找到商品")
        type_into(driver, "scan", "3*" + OIL)  # three at once
        wait(driver, lambda d: len(rows(d)) == 4, "oil ×3")
        assert qty_values(driver)[3] == "3"
        shot(driver, "till-sale-scan")


def test_quantity_errors_and_removing_lines_at_1024(demo_till):
    with till_screen(demo_till, 1024, 768) as (driver, _base):
        sign_in(driver)
        type_into(driver, "scan", "")  # Enter on an empty basket: said, in Chinese
        wait_text(driver, "error", "购物篮是空的")
        scan(driver, WATER, 1)
        scan(driver, MILK, 2)
        total = by_id(driver, "total").text
        for bad in ("0", "-3", "100000"):
            qty = driver.find_elements("css selector", "#lines input.qty")[0]
            qty.send_keys(Keys.CONTROL, "a")
            qty.send_keys(bad + Keys.ENTER)
            wait_text(driver, "error", f"数量须在 1 到 99999 之间, 现为 {bad}")
            wait(
                driver,
                lambda d, bad=bad: d.execute_script(
                    "const q = document.querySelector('#lines input.qty');"
                    "return q.value === arguments[0] && q.classList.contains('invalid');",
                    bad,
                ),
                f"the refused quantity {bad} kept in sight, marked",
            )
            assert by_id(driver, "total").text == total  # the basket kept its quantity
        shot(driver, "till-sale-qty-error-1024")
        qty = driver.find_elements("css selector", "#lines input.qty")[0]
        qty.send_keys(Keys.CONTROL, "a")
        qty.send_keys("5" + Keys.ENTER)
        wait(driver, lambda d: by_id(d, "total").text != total, "the new quantity priced")
        assert error_text(driver) == ""
        assert active_id(driver) == "scan"
        # the line just edited is selected; down: the next one, which Delete removes
        press(driver, Keys.ARROW_DOWN)
        assert "selected" in driver.find_elements("css selector", "#lines tr")[1].get_attribute(
            "class"
        )
        press(driver, Keys.DELETE)
        wait(driver, lambda d: len(rows(d)) == 1, "Delete removes the selected line")
        assert "农夫山泉" in rows(driver)[0]
        driver.find_element("css selector", "#lines button.remove").click()
        wait(driver, lambda d: not rows(d), "the remove button empties the basket")
        by_id(driver, "pay").click()
        wait_text(driver, "error", "购物篮是空的")
        shot(driver, "till-sale-removed-1024")


def test_discount_over_the_limit_with_the_managers_approval(demo_till):
    with till_screen(demo_till) as (driver, _base):
        sign_in(driver)
        scan(driver, OIL, 1)
        press(driver, Keys.F9)
        wait(driver, lambda d: by_id(d, "discount-dialog").is_displayed(), "the discount dialog")
        type_into(driver, "discount-rate", "5", enter=False)  # 五折: past a cashier's limit
        shot(driver, "till-sale-discount")
        by_id(driver, "discount-rate").send_keys(Keys.ENTER)
        wait(driver, lambda d: by_id(d, "manager-dialog").is_displayed(), "the manager's approval")
        assert "手工折扣超过" in by_id(driver, "manager-reason").text
        type_into(driver, "manager-code", "9001", enter=False)
        type_into(driver, "manager-pin", "0000")  # a wrong PIN: asked again
        wait_text(driver, "manager-reason", "店长编号或PIN错误")
        type_into(driver, "manager-code", "9001", enter=False)
        type_into(driver, "manager-pin", "9999")
        wait(
            driver, lambda d: not d.find_element("id", "manager-dialog").is_displayed(), "approved"
        )
        wait_text(driver, "total", "¥34.90")  # ¥34.95, and 抹零 to the 角
        # the quote prices the discount before it is approved: wait for the approval's quote
        wait_text(driver, "discounts-shown", "已授权")
        assert (
            "5.0 折" in by_id(driver, "discounts-shown").text
            or "5 折" in by_id(driver, "discounts-shown").text
        )
        assert "店长 9001 已授权" in by_id(driver, "discounts-shown").text
        shot(driver, "till-sale-discount-approved")
        type_into(driver, "scan", "")  # to payment: cash holds the amount due
        wait(driver, lambda d: active_id(d) == "cash", "the cash field")
        assert by_id(driver, "cash").get_attribute("value") == "34.90"
        by_id(driver, "cash").send_keys(Keys.ENTER)
        wait_text(driver, "receipt-view", "¥34.90")


def test_park_reload_and_recall(demo_till):
    with till_screen(demo_till) as (driver, _base):
        sign_in(driver)
        identify(driver)
        scan(driver, WATER, 1)
        scan(driver, MILK, 2)
        total = by_id(driver, "total").text
        press(driver, Keys.F5)
        wait(driver, lambda d: by_id(d, "park-dialog").is_displayed(), "the park dialog")
        type_into(driver, "park-note", "顾客去取钱包")
        wait(driver, lambda d: not rows(d), "the basket empty after parking")
        wait_text(driver, "error", "已挂单")
        assert "散客" in by_id(driver, "member").text
        assert ParkedSale.select().count() == 1
        driver.refresh()  # the parked sale is on the box, not in the page
        wait(
            driver, lambda d: d.find_element("id", "till").is_displayed(), "signed in after reload"
        )
        press(driver, Keys.F6)
        wait(
            driver, lambda d: d.find_elements("css selector", "#recall-list tr"), "the parked list"
        )
        listed = by_id(driver, "recall-list").text
        assert "顾客去取钱包" in listed and total in listed and "3 件" not in listed
        shot(driver, "till-sale-recall-list")
        press(driver, "1")
        wait(driver, lambda d: len(rows(d)) == 2, "the basket back")
        wait_text(driver, "member", "张三")
        assert by_id(driver, "total").text == total
        assert ParkedSale.select().count() == 0
        shot(driver, "till-sale-recalled")


def test_split_tender_quick_cash_change_and_reset_after_paying(demo_till, client, manager):
    top_up = client.post(
        "/api/v1/topups", headers=manager, json={"member": {"card_no": "C0001"}, "amount": 2000}
    )
    assert top_up.status_code == 201, top_up.json
    with till_screen(demo_till) as (driver, _base):
        sign_in(driver)
        identify(driver)
        scan(driver, OIL, 1)
        wait(driver, lambda d: "可得积分" in by_id(d, "breakdown").text, "the member's breakdown")
        assert "余额 ¥20.00" in by_id(driver, "sv-info").text
        assert "积分" in by_id(driver, "pts-info").text
        due = by_id(driver, "total").text
        type_into(driver, "sv", "20", enter=False)
        type_into(driver, "pw", "123456", enter=False)
        wait_text(driver, "paid-line", "还差")
        cash = by_id(driver, "cash")  # tapped, clear of the amount due kept on top
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", cash)
        cash.click()
        quick = driver.find_elements("css selector", "#quick-cash button")
        assert quick and quick[0].text.startswith("Alt+1")
        ActionChains(driver).key_down(Keys.ALT).send_keys("3").key_up(Keys.ALT).perform()
        wait_text(driver, "paid-line", "找零")
        change = by_id(driver, "change-due").text
        shot(driver, "till-sale-split-tender")
        by_id(driver, "cash").send_keys(Keys.ENTER)  # covered: Enter pays
        wait_text(driver, "receipt-view", "储值")
        assert change.replace("找零 ", "") in by_id(driver, "receipt-view").text
        wait_text(driver, "error", "收款成功")
        for field in ("cash", "sv", "pw", "pts", "scan", "member-q"):
            assert by_id(driver, field).get_attribute("value") == "", field
        assert by_id(driver, "breakdown").text == ""
        assert by_id(driver, "paid-line").text == ""
        assert by_id(driver, "total").text == "¥0.00"
        assert "散客" in by_id(driver, "member").text
        assert not rows(driver)
        assert due != "¥0.00"
        shot(driver, "till-sale-paid-reset")


def test_a_short_payment_is_said_in_yuan(demo_till):
    with till_screen(demo_till, 1024, 768) as (driver, _base):
        sign_in(driver)
        scan(driver, OIL, 1)
        type_into(driver, "scan", "")
        type_into(driver, "cash", "10", enter=False)
        wait_text(driver, "paid-line", "还差 ¥59.90")
        by_id(driver, "pay").click()
        wait_text(driver, "error", "付款不足: 应付 ¥69.90, 实付 ¥10.00")
        assert "分" not in error_text(driver)
        shot(driver, "till-sale-short-1024")


def test_offline_banner_and_a_printer_out_of_paper(demo_till, client, cashier, clock, tmp_path):
    sale = client.post(
        "/api/v1/sales",
        headers=cashier,
        json={"lines": [{"sku": "P0001"}], "tenders": [{"kind": "cash", "amount": 200}]},
    )
    assert sale.status_code == 201
    clock.advance(minutes=7)  # HQ has not acknowledged it for seven minutes
    devices = DeviceManager.from_config(
        DevicesConfig.from_dict({"reconnect_min_s": 0.05, "reconnect_max_s": 0.2}),
        tmp_path / "devices",
    )
    devices.start()
    try:
        with till_screen(demo_till, devices=devices) as (driver, _base):
            sign_in(driver)
            wait_text(driver, "banner", "1 笔待上传")
            assert "7 分钟" in by_id(driver, "banner").text
            assert "收银照常进行" in by_id(driver, "banner").text
            devices.rehearse("printer", "paper_out")  # found when the next receipt prints
            scan(driver, WATER, 1)
            type_into(driver, "scan", "")
            by_id(driver, "cash").send_keys(Keys.ENTER)
            wait_text(driver, "receipt-view", "应付")
            wait(
                driver,
                lambda d: "打印机缺纸" in d.find_element("id", "banner").text,
                "the banner says the printer is out of paper",
                timeout=20,  # the next poll at the latest (every 10 s)
            )
            assert "装入新纸卷" in by_id(driver, "banner").text
            chip = driver.find_element("css selector", "#status .chip[data-role=printer]")
            assert "缺纸" in chip.text and "bad" in chip.get_attribute("class")
            shot(driver, "till-sale-offline-paper-out")
            devices.rehearse("printer", "paper_ok")
            devices.rehearse("reader", "unplug")
            wait(
                driver,
                lambda d: "读卡器未连接" in d.find_element("id", "banner").text,
                "the banner says the card reader is unplugged",
                timeout=20,  # the next poll at the latest (every 10 s)
            )
            assert "手输卡号" in by_id(driver, "banner").text
            wait(
                driver,
                lambda d: "打印机缺纸" not in d.find_element("id", "banner").text,
                "the printer's note gone with the paper back",
                timeout=20,
            )
            shot(driver, "till-sale-reader-unplugged")
    finally:
        devices.stop()


def test_a_members_coupon_ticked_on_the_screen(demo_till):
    from edge.services import members as member_svc
    from edge.sync.apply import ensure_sync_tables
    from tests.edge.test_coupons import TEN_OFF_100, Hq, issue

    ensure_sync_tables(demo_till.db)
    Hq(demo_till).template(TEN_OFF_100)  # 满100减10
    code = issue(demo_till, member_svc.by_card("C0001").id)["code"]
    with till_screen(demo_till, 1024, 768) as (driver, _base):
        sign_in(driver)
        identify(driver)
        type_into(driver, "scan", "2*" + OIL)
        wait(driver, lambda d: len(rows(d)) == 1, "oil ×2")
        box = wait(
            driver,
            lambda d: d.find_elements("css selector", f"#coupons input[value='{code}']"),
            "the member's coupon listed",
        )[0]
        assert "满100减10" in by_id(driver, "coupons").text
        before = by_id(driver, "total").text
        # the panel scrolled to it, as a cashier does (at 1024x768 结账 stays in sight below)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
        box.click()
        wait_text(driver, "breakdown", "优惠券 ¥10.00")
        assert by_id(driver, "total").text != before
        shot(driver, "till-sale-coupon-1024")
        type_into(driver, "scan", "")
        by_id(driver, "cash").send_keys(Keys.ENTER)  # the amount due, exactly
        wait_text(driver, "receipt-view", "应付")
        wait(driver, lambda d: "无可用券" in d.find_element("id", "coupons").text, "coupons reset")
