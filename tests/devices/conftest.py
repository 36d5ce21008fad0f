"""Receipts and helpers shared by the device tests."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from core.receipt import Receipt, ReceiptLine, ReceiptMember, ReceiptTender


def make_receipt(**overrides) -> Receipt:
    fields = dict(
        kind="sale",
        title="销售小票",
        store_name="会员便利店 人民路店",
        store_code="S001",
        document_no="S001-000123",
        occurred_at="2026-11-23 19:30:05",
        cashier="李四",
        lines=(
            ReceiptLine("农夫山泉矿泉水550ml", 2, 200, 400),
            ReceiptLine("康师傅红烧牛肉面超大桶装加量不加价", 1, 550, 500, 50, "会员价"),
        ),
        subtotal=950,
        discount_total=50,
        total=900,
        tenders=(ReceiptTender("cash", "现金", 1000),),
        change=100,
        member=ReceiptMember(
            "张*", "138****5678", "5678", "金卡", 9, 1009, 12345, "https://m.example/u/1"
        ),
        footer=("谢谢惠顾,欢迎再次光临!",),
        opens_drawer=True,
    )
    fields.update(overrides)
    return Receipt(**fields)


@pytest.fixture
def receipt() -> Receipt:
    return make_receipt()


def wait_for(predicate: Callable[[], object], timeout: float = 3.0, step: float = 0.01) -> None:
    """Poll ``predicate`` until true; bounded in time so a broken worker fails the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")
