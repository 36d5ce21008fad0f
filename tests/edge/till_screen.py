"""Driving the cashier screen in a real browser (tests/browser.py): the till's app served
live, chromium at a till's size, and the few steps every screen test takes (sign in, scan,
wait for the API's answer to show)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from edge.api import create_app
from tests.browser import chromium, live_server, shot

WAIT_S = 10


@contextmanager
def till_screen(till, width: int = 1366, height: int = 768, devices=None) -> Iterator[tuple]:
    """(driver, base_url) with the till's screen open at ``base_url``."""
    app = create_app(till, devices)
    with live_server(app) as base, chromium(width, height) as driver:
        driver.get(base + "/")
        yield driver, base


def by_id(driver, element_id: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def wait(driver, condition, message: str, timeout: float = WAIT_S):
    """Wait until ``condition(driver)`` is truthy; on timeout a screenshot is kept and the
    failure says what was awaited."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(condition)
    except TimeoutException:
        path = shot(driver, "timeout-" + "".join(c if c.isalnum() else "-" for c in message)[:60])
        raise AssertionError(f"timed out waiting for: {message} (screenshot {path})") from None


def text_of(driver, element_id: str) -> str:
    return by_id(driver, element_id).text


def wait_receipt(driver, expected: str, timeout: float = WAIT_S) -> None:
    """Wait until the last receipt (``#receipt-view``) reads ``expected``, shown beside the
    basket or waiting behind a dialog that took the screen (the shift's float, a top-up)."""
    wait(
        driver,
        lambda d: expected in (d.find_element("id", "receipt-view").get_attribute("textContent")),
        f"the receipt reads {expected!r}",
        timeout,
    )


def wait_text(driver, element_id: str, expected: str, timeout: float = WAIT_S) -> str:
    """Wait until the element's text contains ``expected``; returns the text."""
    wait(
        driver,
        lambda d: expected in d.find_element("id", element_id).text,
        f"{element_id} shows {expected!r}",
        timeout,
    )
    return text_of(driver, element_id)


def type_into(driver, element_id: str, text: str, enter: bool = True) -> None:
    from selenium.webdriver.common.keys import Keys

    field = by_id(driver, element_id)
    field.clear()
    field.send_keys(text + (Keys.ENTER if enter else ""))


def sign_in(driver, code: str = "1001", pin: str = "1234") -> None:
    """Staff code, Enter, PIN, Enter: the till shows and the scan box has the focus."""
    type_into(driver, "staff", code)
    type_into(driver, "pin", pin)
    wait(driver, lambda d: d.find_element("id", "till").is_displayed(), "the till after sign-in")
    wait(
        driver,
        lambda d: d.switch_to.active_element.get_attribute("id") == "scan",
        "focus in the scan box",
    )


def scan(driver, code: str, lines_after: int) -> None:
    """A barcode typed (as a scanner does, Enter last), then the basket has that many lines."""
    type_into(driver, "scan", code)
    wait(
        driver,
        lambda d: len(d.find_elements("css selector", "#lines tr")) == lines_after,
        f"{lines_after} lines after scanning {code}",
    )
