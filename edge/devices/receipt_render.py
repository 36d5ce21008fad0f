"""A ``Receipt`` laid out for a paper width, then rendered for the profile's method.

Layout is pure and works in columns (a CJK character takes two). Rendering is
either GB18030 text inside the printer's Chinese mode (``gb18030_fs``) or one
raster image drawn with a CJK font on a fixed column grid (``raster``), for
printers without a Chinese font in ROM.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import DeviceError
from core.money import format_yuan
from core.receipt import Receipt

from . import escpos_commands as cmd
from ._hw import require
from .profiles import PrinterProfile
from .text import (
    YUAN,
    center,
    columns,
    gb_printable,
    left_right,
    normalize,
    pad_left,
    split_to_width,
    text_width,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TextLine:
    text: str
    align: str = "l"  # l | c | r; the text is already padded to the width
    bold: bool = False
    tall: bool = False  # double height (width unchanged, so columns still fit)


@dataclass(frozen=True, slots=True)
class QrBlock:
    data: str


@dataclass(frozen=True, slots=True)
class BarcodeBlock:
    """A CODE128 barcode, centred: the receipt number the till looks the sale up by."""

    data: str


Block = TextLine | QrBlock | BarcodeBlock


def money(amount: int) -> str:
    return format_yuan(amount, symbol=YUAN)


def signed(points: int) -> str:
    """Points with their sign, once: +9, -133, 0."""
    return f"{points:+d}" if points else "0"


def printable(text: str, method: str) -> str:
    """What the printer can print, column for column (ROM fonts hold GB2312/GBK only)."""
    return gb_printable(text) if method == "gb18030_fs" else normalize(text)


def _normalized(value: Any) -> Any:
    """A receipt (or any part of it) with every string normalized before it is measured."""
    if isinstance(value, str):
        return normalize(value)
    if isinstance(value, tuple):
        return tuple(_normalized(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _normalized(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)
    return value


def layout_receipt(receipt: Receipt, chars: int, header_lines: Iterable[str] = ()) -> list[Block]:
    """The receipt as lines exactly ``chars`` columns wide (plus a QR block)."""
    receipt = _normalized(receipt)
    rule = "-" * chars
    blocks = _heading(receipt, chars, header_lines)
    if receipt.kind in REPORT_KINDS:  # -- shifts and day close
        return blocks + _report_lines(receipt, chars)
    blocks += _item_lines(receipt, chars)
    blocks.append(TextLine(rule))
    refund = receipt.kind == "return"  # a return slip reads as a refund, line by line
    blocks.append(
        TextLine(left_right("退货合计" if refund else "商品合计", money(receipt.subtotal), chars))
    )
    if receipt.discount_total:
        blocks.append(TextLine(left_right("优惠", money(-receipt.discount_total), chars)))
    if receipt.rounding:
        blocks.append(TextLine(left_right("抹零", money(-receipt.rounding), chars)))
    blocks.append(
        TextLine(
            left_right("退款合计" if refund else "应付", money(receipt.total), chars), bold=True
        )
    )
    for tender in receipt.tenders:
        label = ("退" if refund else "") + tender.label
        if tender.points:
            label += f"({tender.points}分)"
        blocks.append(TextLine(left_right(label, money(tender.amount), chars)))
    if receipt.change:
        blocks.append(TextLine(left_right("找零", money(receipt.change), chars)))
    if receipt.barcode:
        blocks.append(BarcodeBlock(receipt.barcode))
    member = receipt.member
    if member is not None:
        blocks.append(TextLine(rule))
        blocks.append(
            TextLine(left_right(f"会员:{member.masked_name}", member.masked_phone, chars))
        )
        blocks.append(
            TextLine(left_right(f"等级:{member.tier}", f"卡号尾号:{member.card_no_tail}", chars))
        )
        blocks.append(TextLine(left_right("本次积分", signed(member.points_earned), chars)))
        blocks.append(TextLine(left_right("积分余额", str(member.points_balance), chars)))
        blocks.append(TextLine(left_right("储值余额", money(member.stored_value_balance), chars)))
        if member.self_service_url:
            blocks.append(QrBlock(member.self_service_url))
            blocks.append(TextLine(center("扫码查看积分与会员权益", chars), "c"))
    if receipt.footer:
        blocks.append(TextLine(rule))
        for text in receipt.footer:
            blocks += [TextLine(center(piece, chars), "c") for piece in split_to_width(text, chars)]
    return blocks


def _heading(receipt: Receipt, chars: int, header_lines: Iterable[str]) -> list[Block]:
    """Store, title, store code and staff, number and time, then a rule."""
    blocks: list[Block] = [
        TextLine(center(receipt.store_name, chars), "c", bold=True, tall=True),
    ]
    blocks += [TextLine(center(normalize(h), chars), "c") for h in header_lines]
    blocks.append(TextLine(center(receipt.title, chars), "c", bold=True))
    if receipt.reprint:
        blocks.append(TextLine(center("** 重打 REPRINT **", chars), "c", bold=True))
    blocks += [
        TextLine(left_right(f"门店:{receipt.store_code}", f"收银员:{receipt.cashier}", chars)),
        TextLine(left_right("单号:", receipt.document_no, chars)),
        TextLine(left_right("时间:", receipt.occurred_at, chars)),
        TextLine("-" * chars),
    ]
    return blocks


# -- shifts and day close: slips of labelled figures (edge.services.receipts.report_receipt)
REPORT_KINDS = ("shift", "day_close")


def _report_lines(receipt: Receipt, chars: int) -> list[Block]:
    """Each section's title in bold, then a line per figure: the label left, the amount in
    yuan (or the text) right; the footer under a rule."""
    out: list[Block] = []
    for section in receipt.extra.get("sections", ()):
        out.append(TextLine(normalize(f"[{section['title']}]"), bold=True))
        for row in section["rows"]:
            value = money(row["fen"]) if row.get("fen") is not None else row.get("text") or ""
            out.append(TextLine(left_right(normalize(row["label"]), normalize(value), chars)))
    if receipt.footer:
        out.append(TextLine("-" * chars))
        for text in receipt.footer:
            out += [TextLine(center(piece, chars), "c") for piece in split_to_width(text, chars)]
    return out


def _item_lines(receipt: Receipt, chars: int) -> list[Block]:
    out: list[Block] = []
    wide = chars >= 42
    if wide:
        # name | qty | unit price | amount
        amount_w, price_w, qty_w = 11, 10, 5
        name_w = chars - amount_w - price_w - qty_w
        out.append(
            TextLine(
                columns(
                    [
                        ("商品", name_w, "l"),
                        ("数量", qty_w, "r"),
                        ("单价", price_w, "r"),
                        ("金额", amount_w, "r"),
                    ]
                )
            )
        )
        for line in receipt.lines:
            pieces = split_to_width(line.name, name_w - 1)
            numbers = [
                (str(line.qty), qty_w, "r"),
                (money(line.unit_price), price_w, "r"),
                (money(line.amount), amount_w, "r"),
            ]
            out.append(TextLine(columns([(pieces[0], name_w, "l"), *numbers])))
            out += [TextLine(columns([(p, chars, "l")])) for p in pieces[1:]]
            out += _line_extras(line.discount, line.note, chars)
    else:
        # name on its own line(s); "  qty x price" and the amount under it
        out.append(TextLine(left_right("商品  数量x单价", "金额", chars)))
        for line in receipt.lines:
            out += [TextLine(columns([(p, chars, "l")])) for p in split_to_width(line.name, chars)]
            out.append(
                TextLine(
                    left_right(
                        f"  {line.qty} x {money(line.unit_price)}", money(line.amount), chars
                    )
                )
            )
            out += _line_extras(line.discount, line.note, chars)
    return out


def _line_extras(discount: int, note: str, chars: int) -> list[Block]:
    extras = []
    if discount:
        label = f"  优惠 {note}" if note else "  优惠"
        extras.append(TextLine(left_right(label, money(-discount), chars)))
    elif note:
        extras.append(TextLine(columns([(f"  {note}", chars, "l")])))
    return extras


def layout_test_page(profile: PrinterProfile, stamp: str) -> list[Block]:
    """The technician's test page: profile, width ruler, Chinese text, columns, QR."""
    chars = profile.paper_chars
    ruler = "".join(str(i % 10) for i in range(1, chars + 1))
    return [
        TextLine(center("打印测试 PRINTER TEST", chars), "c", bold=True, tall=True),
        TextLine(left_right("型号 model", profile.model, chars)),
        TextLine(left_right("配置 profile", profile.name, chars)),
        TextLine(left_right("中文 method", profile.chinese_method, chars)),
        TextLine(left_right("纸宽 paper", f"{profile.paper_width_mm}mm/{chars}", chars)),
        TextLine(left_right("时间 time", stamp, chars)),
        TextLine(ruler),
        TextLine(pad_left("右对齐 right", chars)),
        TextLine(left_right("会员积分与储值测试", money(123456), chars)),
        TextLine(left_right("标点：，。！", "OK", chars)),
        QrBlock("https://huiyuan.example/test"),
        TextLine(center("如能看到二维码与对齐的中文,打印正常", chars), "c"),
    ]


# ---------------------------------------------------------------- renderers


@dataclass(frozen=True)
class RenderOptions:
    open_drawer: bool = False
    qr_size: int = 6
    font_path: str = ""


def render(blocks: list[Block], profile: PrinterProfile, options: RenderOptions) -> bytes:
    if profile.chinese_method == "raster":
        body = render_raster_body(blocks, profile, options)
    else:
        body = render_text_body(blocks, profile, options)
    out = bytearray(cmd.INIT)
    if options.open_drawer and profile.drawer_pin is not None:
        out += cmd.drawer_kick(profile.drawer_pin, profile.drawer_on_ms, profile.drawer_off_ms)
    out += body
    out += cmd.feed(profile.feed_before_cut)
    out += cmd.cut(profile.cutter)
    return bytes(out)


def render_text_body(blocks: list[Block], profile: PrinterProfile, options: RenderOptions) -> bytes:
    """GB18030 text inside FS & ... FS . ; styles reset after each styled line."""
    out = bytearray(cmd.CHINESE_ON)
    for block in blocks:
        if isinstance(block, QrBlock):
            out += cmd.ALIGN["c"] + _qr_bytes(block.data, profile, options) + cmd.ALIGN["l"]
            continue
        if isinstance(block, BarcodeBlock):
            out += cmd.ALIGN["c"] + cmd.code128(block.data) + cmd.LF + cmd.ALIGN["l"]
            continue
        text = printable(block.text, profile.chinese_method)
        if block.bold:
            out += cmd.bold(True)
        if block.tall:
            out += cmd.char_size(double_height=True)
        out += text.rstrip().encode(profile.encoding, errors="replace") + cmd.LF
        if block.tall:
            out += cmd.char_size()
        if block.bold:
            out += cmd.bold(False)
    out += cmd.CHINESE_OFF
    return bytes(out)


def _qr_bytes(data: str, profile: PrinterProfile, options: RenderOptions) -> bytes:
    if not profile.has_quirk("native_qr_unsupported"):
        return cmd.qr_native(data, options.qr_size)
    return cmd.raster_image(*pack_bits(qr_image(data, options.qr_size)))


# ---------------------------------------------------------------- raster

CJK_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)


def find_cjk_font(configured: str = "") -> str:
    """The configured font, else a known system CJK font, else any fontconfig zh font."""
    if configured:
        if not Path(configured).is_file():
            raise DeviceError(
                f"CJK font not found: {configured}", field="devices.printer.font_path"
            )
        return configured
    for candidate in CJK_FONT_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    for directory in (Path("/usr/share/fonts"), Path("/usr/local/share/fonts")):
        if directory.is_dir():
            for path in sorted(directory.rglob("*")):
                lowered = path.name.lower()
                if path.suffix.lower() in (".ttc", ".ttf", ".otf") and any(
                    key in lowered for key in ("cjk", "wqy", "hei", "song", "ming", "kai")
                ):
                    return str(path)
    raise DeviceError(
        "no CJK font found for raster receipts; install one (apt-get install fonts-wqy-microhei)"
        " or set devices.printer.font_path",
        field="devices.printer.font_path",
    )


def render_raster_body(
    blocks: list[Block], profile: PrinterProfile, options: RenderOptions
) -> bytes:
    """The receipt as images on a grid of ``paper_chars`` columns, sent with GS v 0; a
    barcode between them is the printer's own (barcodes need no font)."""
    out, run = bytearray(), []
    for block in [*blocks, None]:
        if block is None or isinstance(block, BarcodeBlock):
            if run:
                out += cmd.raster_image(*pack_bits(render_raster_image(run, profile, options)))
                run = []
            if block is not None:
                out += cmd.ALIGN["c"] + cmd.code128(block.data) + cmd.LF + cmd.ALIGN["l"]
        else:
            run.append(block)
    return bytes(out)


def render_raster_image(blocks: list[Block], profile: PrinterProfile, options: RenderOptions):
    image_mod = require("PIL.Image")
    draw_mod = require("PIL.ImageDraw")
    font_mod = require("PIL.ImageFont")
    width = profile.paper_dots
    cell = width // profile.paper_chars  # one half-width column, in dots
    row_h = cell * 2 + 4
    font = font_mod.truetype(find_cjk_font(options.font_path), cell * 2)
    pieces = []
    for block in blocks:
        if isinstance(block, QrBlock):
            pieces.append(qr_image(block.data, options.qr_size))
            continue
        tall = 2 if block.tall else 1
        img = image_mod.new("1", (width, row_h * tall), 1)
        draw = draw_mod.Draw(img)
        col = 0
        for ch in printable(block.text, "raster"):
            w = text_width(ch)
            if ch != " ":
                draw.text((col * cell, 1), ch, font=font, fill=0)
            col += w
        if block.bold:  # emboss: draw the line again one dot to the right
            img = _embolden(img, image_mod)
        if tall > 1:
            img = img.crop((0, 0, width, row_h)).resize((width, row_h * 2))
        pieces.append(img)
    height = sum(p.height for p in pieces)
    sheet = image_mod.new("1", (width, height), 1)
    top = 0
    for piece in pieces:
        sheet.paste(piece, ((width - piece.width) // 2, top))
        top += piece.height
    return sheet


def _embolden(img, image_mod):
    shifted = image_mod.new("1", img.size, 1)
    shifted.paste(img.crop((0, 0, img.width - 1, img.height)), (1, 0))
    from PIL import ImageChops

    return ImageChops.logical_and(img, shifted)


def qr_image(data: str, module_size: int):
    qrcode = require("qrcode")
    qr = qrcode.QRCode(border=2, box_size=max(1, module_size))
    qr.add_data(data)
    qr.make(fit=True)
    return qr.make_image(fill_color="black", back_color="white").get_image().convert("1")


def pack_bits(image) -> tuple[int, int, bytes]:
    """A 1-bit PIL image as ESC/POS raster rows (width padded to 8 dots, bit 1 = black)."""
    if image.mode != "1":
        image = image.convert("1")
    if image.width % 8:
        image_mod = require("PIL.Image")
        padded = image_mod.new("1", ((image.width + 7) // 8 * 8, image.height), 1)
        padded.paste(image, (0, 0))
        image = padded
    packed = bytes(b ^ 0xFF for b in image.tobytes())  # PIL "1": bit 1 = white
    return image.width, image.height, packed
