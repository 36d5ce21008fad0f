"""The shift and day-close slips, printed through the till's receipt path (the print
queue, edge.devices.receipt_render) on the virtual printer: the bytes it received."""

from __future__ import annotations

from edge.api import create_app
from edge.devices.profiles import ProfileLibrary
from edge.devices.receipt_render import RenderOptions, layout_receipt, render
from tests.devices.conftest import make_receipt, wait_for
from tests.edge.conftest import sign_in
from tests.edge.test_till_devices import devices  # noqa: F401 (the virtual devices fixture)

P58 = ProfileLibrary().load("xprinter_xp58iih")


def gb(text: str) -> bytes:
    return text.encode("gb18030")


def test_exact_bytes_of_a_small_shift_slip():
    slip = make_receipt(
        kind="shift",
        title="交班单",
        store_name="小店",
        document_no="SH-1",
        occurred_at="2026-11-23 18:00:00",
        lines=(),
        tenders=(),
        member=None,
        opens_drawer=False,
        footer=("开班 2026-11-23 10:00:00",),
        extra={
            "sections": [
                {
                    "title": "现金",
                    "rows": [
                        {"label": "应有现金", "fen": 50200, "text": None},
                        {"label": "短款", "fen": -150, "text": None},
                        {"label": "笔数", "fen": None, "text": "3"},
                    ],
                }
            ]
        },
    )
    data = render(layout_receipt(slip, 32), P58, RenderOptions(open_drawer=False))
    expected = (
        b"\x1b@"  # initialise; a slip never opens the drawer
        + b"\x1c&"  # Chinese mode on
        + b"\x1bE\x01\x1d!\x01"
        + gb("              小店")
        + b"\n\x1d!\x00\x1bE\x00"
        + b"\x1bE\x01"
        + gb("             交班单")
        + b"\n\x1bE\x00"
        + gb("门店:S001            收银员:李四")
        + b"\n"
        + gb("单号:                       SH-1")
        + b"\n"
        + gb("时间:        2026-11-23 18:00:00")
        + b"\n"
        + b"-" * 32
        + b"\n\x1bE\x01"
        + gb("[现金]")
        + b"\n\x1bE\x00"
        + gb("应有现金                ￥502.00")
        + b"\n"
        + gb("短款                     -￥1.50")
        + b"\n"
        + gb("笔数                           3")
        + b"\n"
        + b"-" * 32
        + b"\n"
        + gb("    开班 2026-11-23 10:00:00")
        + b"\n"
        + b"\x1c."  # Chinese mode off
        + b"\x1bd\x04"  # feed; the XP-58IIH has no cutter
    )
    assert data == expected


def test_the_shift_and_day_close_slips_print_in_chinese_in_yuan(demo_till, devices, clock):  # noqa: F811
    client = create_app(demo_till, devices).test_client()
    headers = sign_in(client, "9001", "9999")
    client.post("/api/v1/shifts", headers=headers, json={"float": 50000, "shift_id": "SH-1"})
    clock.advance(minutes=1)
    sold = client.post(
        "/api/v1/sales",
        headers=headers,
        json={"lines": [{"sku": "P0001"}], "tenders": [{"kind": "cash", "amount": 1000}]},
    )
    assert sold.status_code == 201
    printer = devices.virtual_printer
    wait_for(lambda: any("销售小票" in line for line in printer.text_lines()))
    clock.advance(minutes=20)
    closed = client.post(
        "/api/v1/shifts/current/close",
        headers=headers,
        json={"denominations": {"10000": 5, "100": 1, "50": 1}},
    )
    assert closed.status_code == 200, closed.json
    wait_for(lambda: any("交班单" in line for line in printer.text_lines()))
    lines = [ln.rstrip() for ln in printer.text_lines()]
    start = lines.index(next(ln for ln in lines if "交班单" in ln)) - 1
    slip = lines[start : start + 38]
    assert slip == [
        "                   会员示范店",
        "                     交班单",
        "门店:S001                          收银员:李店长",
        "单号:                                       SH-1",
        "时间:                        2026-11-23 10:21:00",
        "------------------------------------------------",
        "[现金]",
        "备用金                                  ￥500.00",
        "现金收入                                  ￥2.00",
        "现金支出                                  ￥0.00",
        "应有现金                                ￥502.00",
        "实点现金                                ￥501.50",
        "短款                                     -￥0.50",
        "[销售]",
        "笔数                                           1",
        "金额                                      ￥2.00",
        "现金                                      ￥2.00",
        "找零                                      ￥8.00",
        "会员销售                                     0笔",
        "会员金额                                  ￥0.00",
        "散客销售                                     1笔",
        "散客金额                                  ￥2.00",
        "积分使用                                   0积分",
        "[退货与其他]",
        "退货                                         0笔",
        "退款金额                                  ￥0.00",
        "储值充值                                     0笔",
        "充值金额                                  ￥0.00",
        "充值赠送                                  ￥0.00",
        "卡费收入                                  ￥0.00",
        "储值退款                                  ￥0.00",
        "[点钞]",
        "100元 x 5                               ￥500.00",
        "1元 x 1                                   ￥1.00",
        "5角 x 1                                   ￥0.50",
        "------------------------------------------------",
        "            开班 2026-11-23 10:00:00",
        "            交班 2026-11-23 10:21:00",
    ]
    day = client.post("/api/v1/day-close", headers=headers, json={})
    assert day.status_code == 201, day.json
    wait_for(lambda: any("日结单" in line for line in printer.text_lines()))
    lines = [ln.rstrip() for ln in printer.text_lines()]
    slip = lines[lines.index(next(ln for ln in lines if "日结单" in ln)) - 1 :]
    assert "日结单" in slip[1] and "[按员工]" in slip
    assert "李店长 1笔                                ￥2.00" in slip
    assert "李店长 短款                              -￥0.50" in slip
    assert "散客销售                                     1笔" in slip
