"""Demo data for a store that runs out of the box: staff, products, members."""

from __future__ import annotations

import random

from core.errors import Conflict
from edge.models import Member, Product, Staff
from edge.phones import phone_hash
from edge.services import members as member_svc
from edge.services import staff as staff_svc
from edge.services.context import Till
from edge.services.products import search_keys

DEMO_STAFF = [("1001", "王收银", "cashier", "1234"), ("9001", "李店长", "manager", "9999")]

DEMO_PRODUCTS = [
    # sku, barcode, name, price fen, promo fen, no member discount, no points
    ("P0001", "6901234567001", "农夫山泉 550ml", 200, None, False, False),
    ("P0002", "6901234567002", "蒙牛纯牛奶 250ml×12", 5990, 4990, False, False),
    ("P0003", "6901234567003", "金龙鱼调和油 5L", 6990, None, False, False),
    ("P0004", "6901234567004", "维达抽纸 3层×10包", 3290, 2790, False, False),
    ("P0005", "6901234567005", "云南白药牙膏 180g", 3380, None, False, False),
    ("P0006", "6901234567006", "999感冒灵颗粒 10袋", 1850, None, True, False),
    ("P0007", "6901234567007", "板蓝根颗粒 20袋", 1500, None, True, False),
    ("P0008", "6901234567008", "医用外科口罩 50只", 2500, 1990, False, True),
    ("P0009", "6901234567009", "苹果 红富士 500g", 799, None, False, False),
    ("P0010", "6901234567010", "五常大米 5kg", 8900, None, False, False),
    ("P0011", "6901234567011", "雅诗兰黛小棕瓶 50ml", 89000, None, True, False),
    ("P0012", "6901234567012", "百雀羚水乳套装", 29900, 25900, False, False),
    ("P0013", "6901234567013", "汽车精洗服务", 8800, None, False, False),
    ("P0014", "6901234567014", "玻璃水 2L", 1500, None, False, False),
    ("P0015", "6901234567015", "购物袋 大号", 50, None, True, True),
]

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉兰萍红娥玲芬燕彬鹏辉飞鑫宇浩然子涵梓轩欣怡雨桐思远俊杰"


def demo_name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


def load_demo(till: Till, members: int = 200, seed: int = 7) -> dict[str, int]:
    """Idempotent: what exists is left alone."""
    rng = random.Random(seed)  # noqa: S311 - repeatable demo names, not secrets
    added = {"staff": 0, "products": 0, "members": 0}
    for code, name, role, pin in DEMO_STAFF:
        if Staff.get_or_none(Staff.code == code) is None:
            staff_svc.add_staff(till, code, name, role, pin)
            added["staff"] += 1
    now = till.now().isoformat(timespec="seconds")
    with till.db.atomic():
        for sku, barcode, name, price, promo, no_md, no_pts in DEMO_PRODUCTS:
            if Product.get_or_none(Product.sku == sku) is None:
                Product.create(
                    sku=sku,
                    barcode=barcode,
                    name=name,
                    price=price,
                    promo_price=promo,
                    no_member_discount=no_md,
                    no_points=no_pts,
                    updated_at=now,
                    **search_keys(name),
                )
                added["products"] += 1
    fixed = [
        ("张三", "13800000001", "C0001", "金卡", "123456"),
        ("李四", "13800000002", "C0002", "银卡", None),
    ]
    people = fixed + [
        (
            demo_name(rng),
            f"139{i:08d}",
            f"C{i + 10000:05d}",
            rng.choice(["普通卡", "银卡", "金卡"]),
            None,
        )
        for i in range(max(0, members - len(fixed)))
    ]
    for name, phone, card, card_type, password in people:
        if Member.get_or_none(Member.phone_hash == phone_hash(till.keys, phone)):
            continue
        reg = member_svc.Registration(
            name=name,
            phone=phone,
            card_no=card,
            card_type=card_type,
            staff_code="1001",
            password=password,
        )
        try:
            member_svc.register(till, reg, "demo")
            added["members"] += 1
        except Conflict:
            continue  # its card was issued to someone else in an earlier demo load
    return added
