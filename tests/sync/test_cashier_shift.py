"""Issue 13's whole shift on the cashier's screen, in a real browser, with the store's sync
agent on a real broker and HQ's ingest worker behind it:

open the shift with a float; ten sales of every kind (walk-in cash by keyboard alone, a
product found by name and one by pinyin initials with its quantity typed, a new member
registered at the till, stored value with the member's password, a split tender, a
coupon HQ issued, points, a discount over the cashier's limit approved by the manager, a
sale parked and recalled around another one); a top-up with its bonus; a return found by
its typed receipt number; a reprint; a sale while the broker is down, the banner saying so
and the backlog draining when it is back; the shift closed with a count, the day closed.
The virtual printer's bytes carry every slip, and HQ ends up with every sale, the shift and
the day: nothing the store did is lost.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from edge.api import create_app
from edge.devices.config import DevicesConfig
from edge.devices.manager import DeviceManager
from edge.sync.authorizer import MqttAuthorizer
from hq.models import DeadLetter, StoreDayClose, StoreShift
from hq.models import Sale as HqSale
from tests.browser import chromium, live_server, shot
from tests.edge.till_screen import by_id, scan, sign_in, type_into, wait, wait_text
from tests.sync.conftest import new_code, start_worker
from tests.sync.helpers import StoreBox, issue_ten_off_coupon, wait_until

WATER, MILK, OIL, TISSUE, APPLES, RICE = (f"69012345670{n:02d}" for n in (1, 2, 3, 4, 9, 10))
ZHANG = "13800000001"  # 张三, card C0001, member password 123456


@pytest.fixture
def devices(tmp_path) -> Iterator[DeviceManager]:
    cfg = DevicesConfig.from_dict({"reconnect_min_s": 0.05, "reconnect_max_s": 0.2})
    manager = DeviceManager.from_config(cfg, tmp_path / "devices")
    manager.start()
    yield manager
    manager.stop()


def press(driver, *keys) -> None:
    chain = ActionChains(driver)
    for k in keys[:-1]:
        chain.key_down(k)
    chain.send_keys(keys[-1])
    for k in reversed(keys[:-1]):
        chain.key_up(k)
    chain.perform()


def visible(element_id: str):
    return lambda d: d.find_element("id", element_id).is_displayed()


def rows(driver) -> list:
    return driver.find_elements("css selector", "#lines tr")


def member_shown(driver, name: str) -> None:
    wait_text(driver, "member", name)


def find_member(driver, q: str, name: str) -> None:
    type_into(driver, "member-q", q)
    member_shown(driver, name)


def to_cash(driver) -> None:
    """A tap on the cash field, as a cashier does (scrolled into the middle of the panel,
    clear of the amount due that stays on top)."""
    cash = by_id(driver, "cash")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", cash)
    cash.click()


def pay_due_in_cash(driver) -> str:
    """Enter on the empty scan box: the cash field holds the amount due; Enter pays it."""
    type_into(driver, "scan", "")
    wait(driver, lambda d: d.switch_to.active_element.get_attribute("id") == "cash", "cash")
    due = by_id(driver, "cash").get_attribute("value")
    by_id(driver, "cash").send_keys(Keys.ENTER)
    return due


def paid(driver, sales: list[str]) -> str:
    """The sale's receipt on screen: its number, kept."""
    wait(driver, lambda d: not rows(d), "the basket empty after paying")
    wait(driver, visible("receipt-dialog"), "the sale's receipt")
    number = wait(
        driver,
        lambda d: d.find_element("css selector", "#receipt-view .row.no span:last-child").text,
        "the receipt number",
    )
    assert number not in sales
    sales.append(number)
    return number


def dismiss_receipt(driver) -> None:
    """A sale's receipt beside the basket goes with the next key (Esc here)."""
    if by_id(driver, "receipt-dialog").is_displayed():
        press(driver, Keys.ESCAPE)
        wait(driver, lambda d: not d.find_element("id", "receipt-dialog").is_displayed(), "gone")


def test_a_whole_shift_on_the_screen(tmp_path, own_mosquitto, pg_url, devices, stores):
    # HQ on PostgreSQL, as a chain runs it (its CLI issues the coupon beside the worker)
    worker = start_worker(pg_url, own_mosquitto)
    code = new_code("W")
    # stored value, points and coupons are authorized online by HQ, as a store trades
    authorizer = MqttAuthorizer(code, own_mosquitto.sync_config(code)).start(wait=5)
    box = StoreBox(tmp_path / "store", code, own_mosquitto, authorizer=authorizer)
    stores.append(box)
    try:
        box.load_demo(members=6)
        zhang = box.member_by_phone(ZHANG).id
        box.start_agent()
        wait_until(lambda: box.pending() == 0, 30, "the store's demo data at HQ")
        wait_until(lambda: authorizer.hq_online, 10, "HQ's state seen by the authorizer")
        with box.bound():
            coupon = issue_ten_off_coupon(pg_url, own_mosquitto, zhang, "shift")
            app = create_app(box.till, devices)
            with live_server(app) as base, chromium(1366, 768) as driver:
                driver.get(base + "/")
                run_the_shift(driver, box, own_mosquitto, coupon)
        # everything reached HQ: every sale, the shift and the day
        wait_until(lambda: box.pending() == 0, 60, "the outbox drained")
        sales = HqSale.select().where(HqSale.store == box.code).count()
        assert sales == 10 + 1  # the ten, and the one sold while the broker was down
        (shift,) = StoreShift.select().where(StoreShift.store == box.code)
        assert shift.difference == 0
        assert StoreDayClose.select().where(StoreDayClose.store == box.code).count() == 1
        printed = "\n".join(devices.virtual_printer.text_lines())
        for slip in ("销售小票", "充值", "退货退款单", "重打", "交班单", "日结单"):
            assert slip in printed, slip
        assert [d.reason for d in DeadLetter.select()] == []
    finally:
        authorizer.stop()
        worker.stop()


def run_the_shift(driver, box: StoreBox, broker, coupon: str) -> None:  # noqa: PLR0915 (one shift, in order)
    sales: list[str] = []
    sign_in(driver)
    # -- the shift opens with a float of 500 yuan
    wait(driver, visible("shift-ask"), "the header asks for a shift")
    by_id(driver, "scan").send_keys(Keys.ALT, "s")
    wait(driver, visible("shift-open"), "the open pane")
    type_into(driver, "shift-float", "500")
    wait_text(driver, "error", "已开班")

    # 1. walk-in, cash, the keyboard alone: scan, Enter, Enter
    scan(driver, WATER, 1)
    pay_due_in_cash(driver)
    paid(driver, sales)
    shot(driver, "shift-01-walkin-cash")

    # 2. a member registered at the till (F3), then sold a product found by name
    press(driver, Keys.F3)
    wait(driver, visible("member-edit-dialog"), "the registration dialog")
    type_into(driver, "me-name", "王小明", enter=False)
    type_into(driver, "me-card-no", "D0099", enter=False)
    type_into(driver, "me-phone", "13700001234")
    member_shown(driver, "王小明")
    type_into(driver, "scan", "五常大米")  # one match: added
    wait(driver, lambda d: len(rows(d)) == 1, "rice found by its name")
    pay_due_in_cash(driver)
    paid(driver, sales)

    # -- a top-up for 张三 (F4) with the bonus previewed
    find_member(driver, "C0001", "张三")
    press(driver, Keys.F4)
    wait(driver, visible("member-topup-dialog"), "the top-up dialog")
    by_id(driver, "topup-amount").send_keys("500")
    wait_text(driver, "topup-preview", "赠送")
    by_id(driver, "topup-amount").send_keys(Keys.ENTER)
    wait_text(driver, "topup-receipt", "充值 ¥500.00")
    press(driver, Keys.ESCAPE)
    wait(driver, lambda d: not d.find_element("id", "member-topup-dialog").is_displayed(), "x")
    # HQ authorizes stored value online: the top-up reaches it within a moment
    wait_until(lambda: box.pending() == 0, 30, "the top-up at HQ")

    # 3. stored value with the member's password (张三 still on screen)
    scan(driver, TISSUE, 1)
    due = by_id(driver, "total").text.removeprefix("¥")
    type_into(driver, "sv", due, enter=False)
    type_into(driver, "pw", "123456", enter=False)
    by_id(driver, "pay").click()
    paid(driver, sales)
    shot(driver, "shift-03-stored-value")

    # 4. split: stored value and cash, a quantity scanned as 2*
    find_member(driver, "C0001", "张三")
    type_into(driver, "scan", "2*" + MILK)
    wait(driver, lambda d: len(rows(d)) == 1, "milk ×2")
    type_into(driver, "sv", "20", enter=False)
    type_into(driver, "pw", "123456", enter=False)
    to_cash(driver)
    press(driver, Keys.ALT, "3")  # a quick amount
    wait_text(driver, "paid-line", "找零")
    by_id(driver, "cash").send_keys(Keys.ENTER)
    paid(driver, sales)

    # 5. the coupon HQ issued, ticked
    find_member(driver, "张三", "张三")
    type_into(driver, "scan", "2*" + OIL)
    tick = wait(
        driver,
        lambda d: d.find_elements("css selector", f"#coupons input[value='{coupon}']"),
        "the member's coupon",
    )[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", tick)
    tick.click()
    wait_text(driver, "breakdown", "优惠券 ¥10.00")
    pay_due_in_cash(driver)
    paid(driver, sales)
    shot(driver, "shift-05-coupon")

    # 6. a product by pinyin initials, its quantity typed
    type_into(driver, "scan", "nfsq")
    wait(driver, lambda d: len(rows(d)) == 1, "water by pinyin")
    qty = driver.find_element("css selector", "#lines input.qty")
    qty.send_keys(Keys.CONTROL, "a")
    qty.send_keys("3", Keys.ENTER)
    wait(driver, lambda d: "¥6.00" in d.find_element("id", "total").text, "three waters")
    pay_due_in_cash(driver)
    paid(driver, sales)

    # 7. points: 张三 earned some today (at HQ once the sales are); one yuan of them
    wait_until(lambda: box.pending() == 0, 30, "today's sales at HQ")
    find_member(driver, "C0001", "张三")
    scan(driver, APPLES, 1)
    type_into(driver, "pts", "1", enter=False)
    to_cash(driver)
    press(driver, Keys.ALT, "2")
    by_id(driver, "cash").send_keys(Keys.ENTER)
    paid(driver, sales)

    # 8. half off (五折), past a cashier's limit: the manager approves
    scan(driver, OIL, 1)
    press(driver, Keys.F9)
    wait(driver, visible("discount-dialog"), "the discount dialog")
    type_into(driver, "discount-rate", "5")
    wait(driver, visible("manager-dialog"), "the manager's approval")
    type_into(driver, "manager-code", "9001", enter=False)
    type_into(driver, "manager-pin", "9999")
    wait_text(driver, "discounts-shown", "已授权")
    pay_due_in_cash(driver)
    paid(driver, sales)
    shot(driver, "shift-08-discount")

    # 9 and 10. a basket parked (F5) while another customer pays, then recalled (F6)
    find_member(driver, "C0002", "李四")
    scan(driver, MILK, 1)
    scan(driver, APPLES, 2)
    press(driver, Keys.F5)
    wait(driver, visible("park-dialog"), "the park dialog")
    type_into(driver, "park-note", "顾客去取钱包")
    wait_text(driver, "error", "已挂单")
    scan(driver, WATER, 1)
    pay_due_in_cash(driver)
    paid(driver, sales)
    press(driver, Keys.F6)
    wait(driver, lambda d: d.find_elements("css selector", "#recall-list tr"), "the parked list")
    press(driver, "1")
    wait(driver, lambda d: len(rows(d)) == 2, "the parked basket back")
    member_shown(driver, "李四")
    pay_due_in_cash(driver)
    paid(driver, sales)
    assert len(sales) == 10

    # -- a return of sale 4 (split), its number typed short; the manager approves
    dismiss_receipt(driver)
    press(driver, Keys.F7)
    wait(driver, visible("return-dialog"), "the return dialog")
    type_into(driver, "return-no", str(int(sales[3].split("-")[1])))
    wait_text(driver, "return-head", sales[3])
    # one of the two boxes of milk comes back
    driver.find_element("css selector", "#return-lines input.qty").send_keys(
        Keys.BACKSPACE, "1", Keys.ENTER
    )
    wait_text(driver, "return-quote", "退款合计")
    by_id(driver, "return-confirm").click()
    wait(driver, visible("manager-dialog"), "the manager approval")
    type_into(driver, "manager-code", "9001", enter=False)
    type_into(driver, "manager-pin", "9999")
    slip = wait_text(driver, "receipt-view", "退货退款单")
    assert "+-" not in slip
    shot(driver, "shift-return-slip")
    press(driver, Keys.ENTER)
    wait(driver, lambda d: not d.find_element("id", "receipt-dialog").is_displayed(), "closed")

    # -- a reprint of the first sale (F8), found by its number
    press(driver, Keys.F8)
    wait(driver, visible("reprint-dialog"), "the reprint dialog")
    wait(driver, lambda d: d.find_elements("css selector", "#reprint-list tr"), "today's sales")
    shot(driver, "shift-reprint-list")
    type_into(driver, "reprint-no", sales[0])
    wait(driver, lambda d: len(d.find_elements("css selector", "#reprint-list tr")) == 1, "one")
    press(driver, Keys.ENTER)  # its 重打 button has the focus
    copy = wait_text(driver, "receipt-view", "重打")
    assert sales[0] in copy
    press(driver, Keys.ESCAPE)  # the copy
    wait(driver, lambda d: not d.find_element("id", "receipt-dialog").is_displayed(), "copy shut")
    press(driver, Keys.ESCAPE)  # the list
    wait(driver, lambda d: not d.find_element("id", "reprint-dialog").is_displayed(), "list shut")

    # -- the broker goes down: the banner says so, the sale is kept and sent later
    broker.stop()
    wait_text(driver, "banner", "网络中断", timeout=40)
    scan(driver, WATER, 1)
    pay_due_in_cash(driver)
    wait(driver, lambda d: not rows(d), "the offline sale paid")
    dismiss_receipt(driver)
    wait(
        driver,
        lambda d: "待上传" in d.find_element("id", "status").text,
        "the backlog in the header",
        timeout=20,
    )
    shot(driver, "shift-offline")
    broker.start()
    wait(
        driver,
        lambda d: (
            not d.find_element("id", "banner").is_displayed()
            and "已同步" in d.find_element("id", "status").text
        ),
        "the backlog drained, the banner gone",
        timeout=60,
    )

    # -- the shift closed with the cash counted exactly; the day closed by the manager
    by_id(driver, "scan").send_keys(Keys.ALT, "s")
    wait(driver, visible("shift-close"), "the close pane")
    expected = re.search(r"应有现金 ¥([\d.]+)", by_id(driver, "shift-info").text).group(1)
    type_into(driver, "shift-counted", expected)
    wait(driver, visible("shift-preview"), "the count checked")
    assert "差额 ¥0.00" in by_id(driver, "shift-preview").text
    by_id(driver, "shift-close-go").click()
    wait_text(driver, "shift-done", "已交班")
    shot(driver, "shift-closed")
    by_id(driver, "shift-tab-day").click()
    by_id(driver, "shift-day-go").send_keys(Keys.ENTER)
    wait(driver, visible("manager-dialog"), "the manager for the day close")
    type_into(driver, "manager-code", "9001", enter=False)
    type_into(driver, "manager-pin", "9999")
    report = wait_text(driver, "shift-day-report", "按员工")
    assert "会员" in report and "散客" in report
    by_id(driver, "shift-day-close").click()
    wait_text(driver, "shift-done", "已日结")
    shot(driver, "shift-day-closed")
    press(driver, Keys.ESCAPE)
    by_id(driver, "signout").click()
    wait(driver, visible("login"), "signed out at the end of the shift")
