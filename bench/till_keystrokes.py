"""Cashier's screen benchmark: keystrokes and time for a five-line member sale paid in cash.

Through the browser (selenium, headless chromium, the till's real page and API served
on 127.0.0.1 in this process), each run: five products scanned, the member's card
swiped on the (virtual) card reader, Enter on the empty scan box (the cash field then
holds the amount due), the cash handed over typed (the next ¥100 note above the total),
Enter; timed from the first scan to the receipt on screen.

Counting: a scanner read or a card swipe is one *scan* each (the scanner types the code
and Enter by itself), not keystrokes; every key the cashier presses is one keystroke
(Enter included).

Baseline in the same run, through the same server: the same sale as raw HTTP calls on a
keep-alive connection (``POST /api/v1/sales/quote`` then ``POST /api/v1/sales``), timed
from the first byte sent to the last byte of the sale's answer.

Prints the figures and the ratio; the last line is one JSON object.

    .venv/bin/python bench/till_keystrokes.py            # 7 runs
    .venv/bin/python bench/till_keystrokes.py --runs 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.api import create_app  # noqa: E402
from edge.config import load_config  # noqa: E402
from edge.demo_data import load_demo  # noqa: E402
from edge.devices.config import DevicesConfig  # noqa: E402
from edge.devices.manager import DeviceManager  # noqa: E402
from edge.services.context import open_till  # noqa: E402
from tests.browser import CHROMEDRIVER, CHROMIUM, chromium, live_server  # noqa: E402

BARCODES = ["6901234567001", "6901234567002", "6901234567003", "6901234567005", "6901234567010"]
CARD = "C0001"
WAIT_S = 15


class Keys:
    """Sends keys to the page and counts them: text and Enter as a cashier types them,
    scans (a barcode and its Enter, from the scanner) apart."""

    def __init__(self, driver) -> None:
        self.driver = driver
        self.keystrokes = 0
        self.scans = 0

    def type(self, element_id: str, text: str, enter: bool = True) -> None:
        from selenium.webdriver.common.keys import Keys as K

        self.driver.find_element("id", element_id).send_keys(text + (K.ENTER if enter else ""))
        self.keystrokes += len(text) + (1 if enter else 0)

    def scan(self, element_id: str, code: str) -> None:
        from selenium.webdriver.common.keys import Keys as K

        self.driver.find_element("id", element_id).send_keys(code + K.ENTER)
        self.scans += 1

    def swipe(self, devices, card_no: str) -> None:
        devices.rehearse("reader", "swipe", card_no)
        self.scans += 1


def wait(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.01).until(condition)
    except Exception as exc:
        raise SystemExit(f"timed out waiting for {what}") from exc


def line_count(driver) -> int:
    return driver.execute_script("return document.querySelectorAll('#lines tr').length")


def browser_sale(driver, devices) -> tuple[float, int, int, int]:
    """One sale on the screen: (ms from the first scan to the receipt, keystrokes, scans,
    the total in fen)."""
    keys = Keys(driver)
    wait(driver, lambda d: d.switch_to.active_element.get_attribute("id") == "scan", "the scan box")
    started = time.perf_counter()
    for n, code in enumerate(BARCODES, start=1):
        keys.scan("scan", code)
        wait(driver, lambda d, n=n: line_count(d) == n, f"line {n}")
    keys.swipe(devices, CARD)
    wait(driver, lambda d: "会员" in d.find_element("id", "member").text, "the member")
    wait(
        driver,
        lambda d: "可得积分" in d.find_element("id", "breakdown").text,
        "the basket priced for the member",
    )
    keys.type("scan", "")  # Enter on the empty scan box: to the cash field
    wait(driver, lambda d: d.switch_to.active_element.get_attribute("id") == "cash", "cash")
    due = driver.find_element("id", "cash").get_attribute("value")
    total = round(float(due) * 100)
    handed = (total // 10000 + 1) * 100  # yuan: the next ¥100 note above
    keys.type("cash", str(handed), enter=False)  # the prefilled amount is selected: replaced
    typed = driver.find_element("id", "cash").get_attribute("value")
    if typed != str(handed):
        raise SystemExit(f"the cash field reads {typed!r}, not {handed}")
    keys.type("cash", "")  # Enter: the tenders cover the total, so it pays
    wait(driver, lambda d: "合计" in d.find_element("id", "receipt").text, "the receipt")
    elapsed = (time.perf_counter() - started) * 1000
    wait(driver, lambda d: line_count(d) == 0, "the basket cleared")
    return elapsed, keys.keystrokes, keys.scans, total


def api_sale(base: str, token: str) -> float:
    """The same sale as raw HTTP (quote, then sale): ms."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    basket = {"member": {"card_no": CARD}, "lines": [{"sku": code} for code in BARCODES]}
    started = time.perf_counter()
    conn.request("POST", "/api/v1/sales/quote", json.dumps(basket), headers)
    quote = json.loads(conn.getresponse().read())
    total = quote["total"]
    sale = basket | {
        "tenders": [{"kind": "cash", "amount": (total // 10000 + 1) * 10000}],
        "sale_id": str(uuid.uuid4()),
    }
    conn.request("POST", "/api/v1/sales", json.dumps(sale), headers)
    res = conn.getresponse()
    body = res.read()
    elapsed = (time.perf_counter() - started) * 1000
    conn.close()
    if res.status != 201:
        raise SystemExit(f"the API sale failed: {res.status} {body[:200]!r}")
    return elapsed


def api_screen_sequence(base: str, token: str) -> float:
    """The requests the screen makes for the same sale, as raw HTTP: per scan a product
    search and a quote, the member by card and a quote, then the sale: ms."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(method: str, path: str, body: object = None) -> dict:
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        return json.loads(conn.getresponse().read())

    started = time.perf_counter()
    lines: list[dict] = []
    for code in BARCODES:
        lines.append({"sku": call("GET", f"/api/v1/products?q={code}")["exact"]["sku"], "qty": 1})
        call("POST", "/api/v1/sales/quote", {"lines": lines})
    member = call("GET", f"/api/v1/members/by-card/{CARD}")["member"]
    basket = {"member": {"member_id": member["member_id"]}, "lines": lines}
    total = call("POST", "/api/v1/sales/quote", basket)["total"]
    tenders = [{"kind": "cash", "amount": (total // 10000 + 1) * 10000}]
    call("POST", "/api/v1/sales", basket | {"tenders": tenders, "sale_id": str(uuid.uuid4())})
    elapsed = (time.perf_counter() - started) * 1000
    conn.close()
    return elapsed


def sign_in_api(base: str) -> str:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request(
        "POST",
        "/api/v1/session",
        json.dumps({"staff_code": "1001", "pin": "1234"}),
        {"Content-Type": "application/json"},
    )
    token = json.loads(conn.getresponse().read())["token"]
    conn.close()
    return token


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    if not os.path.exists(CHROMIUM) or shutil.which(CHROMEDRIVER) is None:
        raise SystemExit("chromium and chromedriver are needed (Debian: chromium chromium-driver)")

    work = Path(tempfile.mkdtemp(prefix="hy-keys-"))
    config = load_config(overrides={"data_dir": str(work / "edge"), "store": {"code": "BENCH"}})
    till = open_till(config, create_key=True)
    load_demo(till, members=20)
    devices = DeviceManager.from_config(
        DevicesConfig.from_dict({"reconnect_min_s": 0.05, "reconnect_max_s": 0.2}),
        work / "devices",
    )
    devices.start()
    app = create_app(till, devices)
    try:
        with live_server(app) as base, chromium() as driver:
            driver.get(base + "/")
            Keys(driver).type("staff", "1001")
            Keys(driver).type("pin", "1234")
            wait(driver, lambda d: d.find_element("id", "till").is_displayed(), "sign-in")
            browser_ms, counts = [], set()
            browser_sale(driver, devices)  # warm-up: caches, the first quote, the JIT
            for _ in range(args.runs):
                ms, keystrokes, scans, _total = browser_sale(driver, devices)
                browser_ms.append(ms)
                counts.add((keystrokes, scans))
            token = sign_in_api(base)
            api_sale(base, token)  # warm-up
            api_ms = [api_sale(base, token) for _ in range(args.runs)]
            sequence_ms = [api_screen_sequence(base, token) for _ in range(args.runs)]
    finally:
        devices.stop()
        till.db.close()
        shutil.rmtree(work, ignore_errors=True)

    (keystrokes, scans), *others = sorted(counts)
    if others:
        raise SystemExit(f"keystrokes differ between runs: {sorted(counts)}")
    b_med, a_med = statistics.median(browser_ms), statistics.median(api_ms)
    print(
        f"five-line member sale paid in cash, {args.runs} runs ({platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()})"
    )
    print(f"  scans (5 products + 1 card swipe)       {scans}")
    print(f"  keystrokes (Enter, cash handed, Enter)  {keystrokes}")
    print(
        f"  browser, first scan to receipt: median {b_med:.0f} ms, "
        f"min {min(browser_ms):.0f}, max {max(browser_ms):.0f}"
    )
    print(
        f"  baseline, raw HTTP quote + sale: median {a_med:.1f} ms, "
        f"min {min(api_ms):.1f}, max {max(api_ms):.1f}"
    )
    s_med = statistics.median(sequence_ms)
    print(f"  the screen's 13 requests as raw HTTP: median {s_med:.1f} ms")
    print(f"  ratio browser / API (quote + sale): {b_med / a_med:.1f}x")
    print(
        json.dumps(
            {
                "bench": "till_keystrokes",
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "keystrokes": keystrokes,
                "scans": scans,
                "browser_ms_median": round(b_med, 1),
                "browser_ms": [round(x, 1) for x in browser_ms],
                "api_ms_median": round(a_med, 1),
                "api_ms": [round(x, 1) for x in api_ms],
                "ratio": round(b_med / a_med, 2),
                "api_screen_sequence_ms_median": round(s_med, 1),
                "runs": args.runs,
                "cores": os.cpu_count(),
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
