"""Receipt bytes: exact ESC/POS, decoded layout in Chinese, raster structure."""

from __future__ import annotations

import pytest

from core.receipt import ReceiptLine, ReceiptMember, ReceiptTender
from edge.devices import escpos_commands as cmd
from edge.devices.escpos_decode import DecodeError, decode
from edge.devices.profiles import ProfileLibrary
from edge.devices.receipt_render import (
    RenderOptions,
    TextLine,
    find_cjk_font,
    layout_receipt,
    layout_test_page,
    printable,
    render,
)
from edge.devices.text import char_width, normalize, text_width

from .conftest import make_receipt

LIB = ProfileLibrary()
P80 = LIB.load("virtual_printer_80mm")
P58 = LIB.load("xprinter_xp58iih")
RASTER58 = LIB.load("virtual_printer_58mm_raster")


def gb(text: str) -> bytes:
    return text.encode("gb18030")


def small_receipt(**overrides):
    """One apple for ¥3.50 at 小店, no member, no footer: the receipts whose bytes are spelt out."""
    fields = dict(
        store_name="小店",
        lines=(ReceiptLine("苹果", 1, 350, 350),),
        subtotal=350,
        discount_total=0,
        total=350,
        tenders=(ReceiptTender("cash", "现金", 350),),
        change=0,
        member=None,
        footer=(),
    )
    return make_receipt(**(fields | overrides))


def test_exact_bytes_of_a_small_receipt():
    receipt = small_receipt(
        tenders=(ReceiptTender("cash", "现金", 500),), change=150, opens_drawer=True
    )
    data = render(layout_receipt(receipt, 32), P58, RenderOptions(open_drawer=True))
    rule = b"-" * 32 + b"\n"
    expected = (
        b"\x1b@"  # ESC @ initialise
        + b"\x1bp\x00\x32\x32"  # ESC p 0 100ms 100ms: drawer kick, pin 2
        + b"\x1c&"  # FS &: Chinese mode on
        + b"\x1bE\x01\x1d!\x01"
        + gb("              小店")
        + b"\n\x1d!\x00\x1bE\x00"
        + b"\x1bE\x01"
        + gb("            销售小票")
        + b"\n\x1bE\x00"
        + gb("门店:S001            收银员:李四")
        + b"\n"
        + gb("单号:                S001-000123")
        + b"\n"
        + gb("时间:        2026-11-23 19:30:05")
        + b"\n"
        + rule
        + gb("商品  数量x单价             金额")
        + b"\n"
        + gb("苹果")
        + b"\n"
        + gb("  1 x ￥3.50              ￥3.50")
        + b"\n"
        + rule
        + gb("商品合计                  ￥3.50")
        + b"\n"
        + b"\x1bE\x01"
        + gb("应付                      ￥3.50")
        + b"\n\x1bE\x00"
        + gb("现金                      ￥5.00")
        + b"\n"
        + gb("找零                      ￥1.50")
        + b"\n"
        + b"\x1c."  # FS .: Chinese mode off
        + b"\x1bd\x04"  # feed 4 lines
        # XP-58IIH has no cutter: no GS V
    )
    assert data == expected


def test_80mm_layout_decodes_to_aligned_chinese_columns(receipt):
    data = render(layout_receipt(receipt, 48), P80, RenderOptions(open_drawer=True))
    out = decode(data)
    lines = out.lines
    assert all(text_width(line) <= 48 for line in lines)
    assert lines[0].strip() == "会员便利店 人民路店"
    assert "商品                   数量      单价       金额" in lines
    assert "农夫山泉矿泉水550ml       2    ￥2.00     ￥4.00" in lines
    # a long name wraps under itself, numbers stay in their columns on the first line
    i = lines.index("康师傅红烧牛肉面超大      1    ￥5.50     ￥5.00")
    assert lines[i + 1] == "桶装加量不加价"
    assert lines[i + 2] == "  优惠 会员价" + " " * 28 + "-￥0.50"
    for label, amount in (
        ("商品合计", "￥9.50"),
        ("应付", "￥9.00"),
        ("找零", "￥1.00"),
        ("储值余额", "￥123.45"),
        ("积分余额", "1009"),
        ("本次积分", "+9"),
    ):
        line = next(x for x in lines if x.startswith(label))
        assert line.endswith(amount) and text_width(line) == 48, line
    assert any(x.startswith("会员:张*") and x.endswith("138****5678") for x in lines)
    assert out.qr_codes == ["https://m.example/u/1"]
    assert out.drawer_kicks == 1
    assert out.cuts == 1


def test_every_text_line_fits_58mm(receipt):
    out = decode(render(layout_receipt(receipt, 32), P58, RenderOptions()))
    assert out.lines
    assert all(text_width(line) <= 32 for line in out.lines)
    assert out.drawer_kicks == 0  # not asked for
    # XP-58IIH cannot print native QR codes: the QR comes as a raster image instead
    assert out.qr_codes == []
    assert len(out.images) == 1 and out.images[0][0] % 8 == 0
    assert "康师傅红烧牛肉面超大桶装加量不加" in out.lines


def test_reprint_marker_and_no_member():
    receipt = make_receipt(reprint=True, member=None)
    out = decode(render(layout_receipt(receipt, 48), P80, RenderOptions()))
    assert any("重打 REPRINT" in line for line in out.lines)
    assert not any(line.startswith("会员") for line in out.lines)
    assert out.qr_codes == []


def test_points_tender_shows_points_used():
    receipt = make_receipt(
        tenders=(
            ReceiptTender("points", "积分抵扣", 500, points=500),
            ReceiptTender("stored_value", "储值", 400),
        ),
        change=0,
    )
    lines = decode(render(layout_receipt(receipt, 48), P80, RenderOptions())).lines
    assert any(line.startswith("积分抵扣(500分)") and line.endswith("￥5.00") for line in lines)
    assert not any(line.startswith("找零") for line in lines)


def test_header_lines_are_centred(receipt):
    blocks = layout_receipt(receipt, 48, header_lines=("电话 0571-8888",))
    assert isinstance(blocks[1], TextLine)
    assert blocks[1].text.strip() == "电话 0571-8888"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("¥12", "￥12"),  # one GB2312 character instead of a 4-byte GB18030 sequence
        ("会员：张三，您好！", "会员：张三，您好！"),  # Chinese punctuation prints
        ("😀ok", "？ok"),  # no ROM glyph: a placeholder as wide as the emoji
        ("𠮷野家", "？野家"),  # a four-byte GB18030 ideograph: two columns kept
        ("ｱｲ", "??"),  # half-width katakana: four-byte GB18030, one column each
        ("cafe\u0301", "cafe"),  # a combining accent takes no column and has no glyph
        ("500ml×12…“特价”·—", "500ml×12…“特价”·—"),  # double-byte GB symbols print
        ("a\tb", "a b"),
    ],
)
def test_printable(text, expected):
    assert printable(text, "gb18030_fs") == expected
    assert text_width(printable(text, "gb18030_fs")) == text_width(normalize(text))


@pytest.mark.parametrize(
    ("ch", "width"),
    [
        ("a", 1),
        ("中", 2),
        ("，", 2),
        ("￥", 2),
        ("×", 2),  # Unicode says ambiguous; a GB printer prints it full width
        ("…", 2),
        ("“", 2),
        ("·", 2),
        ("é", 2),  # GB18030 A8A6, printed full width
        ("ｱ", 1),
        ("\u0301", 0),
    ],
)
def test_char_width_counts_what_a_gb_printer_prints(ch, width):
    assert char_width(ch) == width


def test_symbols_in_product_names_keep_the_columns_aligned():
    receipt = make_receipt(
        store_name="¥9.9 特价店",
        lines=(
            ReceiptLine("可乐330ml×24“整箱”…", 1, 6990, 6990),
            ReceiptLine("𠮷野家¥牛肉饭", 2, 2500, 5000),
        ),
        subtotal=11990,
        discount_total=0,
        total=11990,
        tenders=(ReceiptTender("stored_value", "储值", 11990),),
        change=0,
        member=None,
        footer=(),
    )
    for profile, chars in ((P80, 48), (P58, 32)):
        lines = decode(render(layout_receipt(receipt, chars), profile, RenderOptions())).lines
        assert all(text_width(line) <= chars for line in lines), lines
        assert lines[0].strip() == "￥9.9 特价店"
        amounts = [x for x in lines if x.endswith(("￥69.90", "￥50.00"))]
        assert len(amounts) == 2 and all(text_width(x) == chars for x in amounts), amounts
    lines = decode(render(layout_receipt(receipt, 48), P80, RenderOptions())).lines
    i = lines.index("可乐330ml×24“整箱”     1   ￥69.90    ￥69.90")
    assert lines[i + 1] == "…"  # the name wraps; the numbers stay in their columns
    assert "？野家￥牛肉饭            2   ￥25.00    ￥50.00" in lines


def test_native_qr_bytes():
    assert cmd.qr_native("AB", 6) == (
        b"\x1d(k\x04\x001A2\x00"
        b"\x1d(k\x03\x001C\x06"
        b"\x1d(k\x03\x001E1"
        b"\x1d(k\x05\x001P0AB"
        b"\x1d(k\x03\x001Q0"
    )


def test_raster_band_structure():
    packed = bytes(range(6)) * 3  # 16 dots wide (2 bytes) x 9 rows
    data = cmd.raster_image(16, 9, packed, band_rows=4)
    assert data.count(b"\x1dv0\x00") == 3
    assert data.startswith(b"\x1dv0\x00\x02\x00\x04\x00" + packed[:8])
    with pytest.raises(ValueError):
        cmd.raster_image(16, 10, packed)


def test_decoder_rejects_unknown_commands():
    with pytest.raises(DecodeError):
        decode(b"\x1b\x99")


def test_test_page_names_the_profile():
    lines = decode(render(layout_test_page(P80, "2026-11-23 10:00:00"), P80, RenderOptions())).lines
    assert any("virtual_printer_80mm" in line for line in lines)
    assert any(line.startswith("123456789012345678901234567890") for line in lines)


def _cjk_font_or_skip() -> str:
    pytest.importorskip("PIL")
    pytest.importorskip("qrcode")
    try:
        return find_cjk_font()
    except Exception as exc:
        pytest.skip(f"no CJK font on this machine ({exc}); apt-get install fonts-wqy-microhei")


def test_raster_receipt_is_paper_wide_bands_without_text(receipt):
    font = _cjk_font_or_skip()
    data = render(
        layout_receipt(receipt, 32), RASTER58, RenderOptions(open_drawer=True, font_path=font)
    )
    out = decode(data)
    assert out.lines == [] or all(line == "" for line in out.lines)  # only the feed's LFs
    assert out.images and all(width == 384 for width, _ in out.images)
    assert all(rows <= 256 for _, rows in out.images)
    assert sum(rows for _, rows in out.images) > 25 * 24  # ~30 text rows of 24+ dots
    assert out.drawer_kicks == 1
    assert b"\x1c&" not in data  # no Chinese text mode for raster printers


def test_raster_rows_grow_with_the_receipt(receipt):
    font = _cjk_font_or_skip()
    short = make_receipt(lines=receipt.lines[:1], member=None, footer=())
    opts = RenderOptions(font_path=font)
    rows_short = sum(r for _, r in decode(render(layout_receipt(short, 32), RASTER58, opts)).images)
    rows_long = sum(
        r for _, r in decode(render(layout_receipt(receipt, 32), RASTER58, opts)).images
    )
    assert rows_long > rows_short


def test_missing_configured_font_is_a_device_error():
    with pytest.raises(Exception, match="CJK font not found"):
        find_cjk_font("/nonexistent/font.ttc")


def test_member_block_uses_masked_values_only():
    member = ReceiptMember("欧***", "139****0000", "0001", "银卡", 0, 0, 0)
    lines = decode(
        render(layout_receipt(make_receipt(member=member), 48), P80, RenderOptions())
    ).lines
    assert any(line.startswith("会员:欧***") for line in lines)
    assert any(line.startswith("等级:银卡") and line.endswith("卡号尾号:0001") for line in lines)


@pytest.mark.parametrize(
    "profile",
    [p for p in LIB.load_all()[0] if p.kind == "printer" and p.chinese_method == "gb18030_fs"],
    ids=lambda p: p.name,
)
def test_every_text_printer_gets_lines_that_fit_its_paper(receipt, profile):
    data = render(layout_receipt(receipt, profile.paper_chars), profile, RenderOptions())
    lines = decode(data, profile.encoding).lines
    assert max(text_width(line) for line in lines) == profile.paper_chars
    assert all(text_width(line) <= profile.paper_chars for line in lines), profile.name


# ---- returns and receipts: the receipt's barcode, the return slip


def test_code128_bytes_are_python_escpos_own():
    """cmd.code128 sends what python-escpos's CODE128 (code set B, no HRI) sends after its
    alignment and font commands: the printer sees the library's bytes."""
    escpos_printer = pytest.importorskip("escpos.printer", reason="python-escpos not installed")
    dummy = escpos_printer.Dummy()
    dummy.barcode(
        "{BS001-000123", "CODE128", height=64, width=2, pos="OFF", align_ct=False, function_type="B"
    )
    assert cmd.code128("S001-000123") == dummy.output
    with pytest.raises(ValueError):
        cmd.code128("单号")


def test_exact_bytes_of_a_receipts_barcode():
    receipt = small_receipt(barcode="S001-000123", opens_drawer=False)
    data = render(layout_receipt(receipt, 32), P58, RenderOptions())
    expected_tail = (
        gb("现金                      ￥3.50")
        + b"\n"
        + b"\x1ba\x01"  # ESC a 1: centre
        + b"\x1dh\x40"  # GS h 64: 64 dots high
        + b"\x1dw\x02"  # GS w 2: module 2 dots
        + b"\x1df\x00"  # GS f 0: font A (for text under it, which there is none of)
        + b"\x1dH\x00"  # GS H 0: no human-readable text (单号 is printed above)
        + b"\x1dkI\x0d{BS001-000123"  # GS k 73 n: CODE128, code set B
        + b"\n"
        + b"\x1ba\x00"  # ESC a 0: left again
        + b"\x1c."
        + b"\x1bd\x04"
    )
    assert data.endswith(expected_tail)
    out = decode(data)
    assert out.barcodes == ["S001-000123"]
    assert any(line.endswith("S001-000123") and line.startswith("单号:") for line in out.lines)


def test_a_raster_receipt_keeps_its_barcode_in_place():
    receipt = make_receipt(barcode="S001-000123")
    out = decode(render(layout_receipt(receipt, 32), RASTER58, RenderOptions()))
    assert out.barcodes == ["S001-000123"]
    assert len(out.images) >= 2  # the text above the barcode, and below it


def test_exact_bytes_of_a_return_slip_points_line_and_labels():
    receipt = small_receipt(
        kind="return",
        title="退货退款单",
        member=ReceiptMember("张*", "", "5678", "金卡", -133, 867, 0),
        opens_drawer=True,
    )
    data = render(layout_receipt(receipt, 32), P58, RenderOptions())
    rule = b"-" * 32 + b"\n"
    middle = (
        rule
        + gb("退货合计                  ￥3.50")
        + b"\n\x1bE\x01"
        + gb("退款合计                  ￥3.50")
        + b"\n\x1bE\x00"
        + gb("退现金                    ￥3.50")
        + b"\n"
        + rule
        + gb("会员:张*")
        + b"\n"
        + gb("等级:金卡          卡号尾号:5678")
        + b"\n"
        + gb("本次积分                    -133")
        + b"\n"
    )
    assert middle in data
    assert b"+-" not in data and gb("应付") not in data
    assert b"\x1bE\x01" + gb("           退货退款单") + b"\n\x1bE\x00" in data
