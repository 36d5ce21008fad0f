"""Member and product imports: bad rows reported by number, good rows load, re-import is a no-op."""

from __future__ import annotations

from openpyxl import Workbook

from edge.importer import import_members, import_products
from edge.models import Card, Member, Outbox, Product
from edge.services import members as member_svc

PRODUCTS_CSV = """商品编码,条码,名称,售价,促销价,不参与会员折扣,不积分
A1,690001,矿泉水,2.00,,否,否
A2,690002,感冒灵,18.5,,是,否
A3,,坏价格,abc,,否,否
,690004,没有编码,3,,否,否
A5,690005,特价纸巾,32.90,27.90,否,是
A6,690001,条码重复,5,,否,否
A7,690007,标记错,5,,也许,否
"""


def test_product_import_reports_bad_rows_and_loads_good_ones(till, tmp_path):
    path = tmp_path / "products.csv"
    path.write_text(PRODUCTS_CSV, encoding="utf-8")
    report = import_products(till, path)
    assert (report.added, report.updated, report.unchanged) == (3, 0, 0)
    rows = {row: reason for row, reason in report.errors}
    assert sorted(rows) == [4, 5, 7, 8]
    # each reason in Chinese first, for the store's staff, with the English after it
    assert rows[4].startswith("不是金额: 'abc'")
    assert rows[5].startswith("商品编码为空")
    assert rows[7].startswith("条码 690001 已属于商品 A1")
    assert "也许" in rows[8] and rows[8].startswith("no_member_discount 须为 是/否")
    a2 = Product.get_by_id("A2")
    assert (a2.price, a2.no_member_discount) == (1850, True)
    a5 = Product.get_by_id("A5")
    assert (a5.price, a5.promo_price, a5.no_points) == (3290, 2790, True)

    again = import_products(till, path)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 3)
    assert len(again.errors) == 4

    path.write_text(PRODUCTS_CSV.replace("矿泉水,2.00", "矿泉水,2.50"), encoding="utf-8")
    changed = import_products(till, path)
    assert (changed.added, changed.updated, changed.unchanged) == (0, 1, 2)
    assert Product.get_by_id("A1").price == 250


def test_gb18030_csv_from_excel_is_read(till, tmp_path):
    path = tmp_path / "products.csv"
    path.write_bytes(PRODUCTS_CSV.encode("gb18030"))
    assert import_products(till, path).added == 3


def _members_xlsx(path):
    wb = Workbook()
    ws = wb.active
    ws.append(["姓名", "手机号", "性别", "生日", "历法", "卡号", "卡类型"])
    ws.append(["张三", "13800000001", "男", "1990-05-12", "公历", "C1", "金卡"])
    ws.append(["李四", "138-0000-0002", "女", "1988-08-15", "农历", "C2", "银卡"])
    ws.append(["王五", "12345", "男", "", "", "C3", "普通卡"])  # bad phone
    ws.append(["赵六", "13800000004", "男", "1990-02-30", "公历", "C4", "普通卡"])  # no such date
    ws.append(["钱七", "13800000001", "男", "", "", "C5", "普通卡"])  # phone repeats row 2
    ws.append(["孙八", "13800000006", "未知", "", "", "C6", "普通卡"])  # bad gender
    ws.append(["周九", "13800000007", "女", "", "", "C7", "黑卡"])  # unknown card type
    ws.append([None, None, None, None, None, None, None])  # blank row is skipped
    ws.append(["吴十", 13800000010, "女", None, None, "C10", "普通卡"])  # a number cell
    wb.save(path)


def test_member_import_from_xlsx(till, tmp_path):
    path = tmp_path / "members.xlsx"
    _members_xlsx(path)
    report = import_members(till, path)
    rows = {row: reason for row, reason in report.errors}
    assert report.added == 3, report.errors
    assert sorted(rows) == [4, 5, 6, 7, 8]
    assert "phone" in rows[4] or "手机号" in rows[4]
    assert rows[6].startswith("手机号与第 2 行重复") and "row 2" in rows[6]
    assert Member.select().count() == 3
    lisi = member_svc.by_phone(till, "13800000002")
    assert (lisi.birthday, lisi.birthday_calendar, lisi.gender) == ("1988-08-15", "lunar", "F")
    assert Card.get_by_id("C10").member_id == member_svc.by_phone(till, "13800000010").id
    assert Outbox.select().where(Outbox.kind == "registration").count() == 3

    again = import_members(till, path)
    assert (again.added, again.unchanged) == (0, 3)
    assert Member.select().count() == 3
    assert Outbox.select().count() == 3


def test_a_stolen_box_leaks_no_phone_numbers_once_hq_has_them(till, tmp_path):
    path = tmp_path / "members.xlsx"
    _members_xlsx(path)
    import_members(till, path)
    stored = [bytes(r[0]) for r in till.db.execute_sql("SELECT phone_enc FROM member")]
    assert stored and all(b"1380000" not in blob for blob in stored)
    pending = Outbox.select().where(Outbox.payload.contains("13800000002")).count()
    assert pending == 1  # on its way to HQ

    with till.db.atomic():  # what the sync agent does on HQ's acknowledgement
        Outbox.update(acked=True).execute()
    till.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    files = [till.config.db_path, till.config.db_path.with_name(till.config.db_path.name + "-wal")]
    raw = b"".join(f.read_bytes() for f in files if f.exists())
    assert b"13800000002" not in raw
    assert member_svc.phone_of(till, member_svc.by_phone(till, "13800000002")) == "13800000002"


def test_a_promotion_price_not_below_the_price_is_a_bad_row(till, tmp_path):
    path = tmp_path / "products.csv"
    path.write_text(
        "商品编码,名称,售价,促销价\nA1,甲,5.00,9.00\nA2,乙,5.00,5.00\nA3,丙,5.00,4.50\n",
        encoding="utf-8",
    )
    report = import_products(till, path)
    assert report.added == 1
    assert [row for row, _ in report.errors] == [2, 3]
    assert all(reason.startswith("促销价") for _, reason in report.errors)


# -- staff: categories and cost (docs/programme/staff.md, "Categories and cost")

GOODS_CSV = """商品编码,名称,售价,品类,成本
B1,洗发水,39.90,日化,21.50
B2,纸巾,12,日化,
B3,感冒药,18.5,药品,-1
B4,口罩,9.9,防护,abc
B5,牛奶,6.5,乳品乳品乳品乳品乳品乳品乳品乳品乳品乳品乳品乳品乳品乳品乳品乳品乳品,3
B6,面包,5,,2.005
B7,苹果,8,生鲜,4
"""


def test_category_and_cost_load_and_each_bad_value_names_its_row(till, tmp_path):
    path = tmp_path / "goods.csv"
    path.write_text(GOODS_CSV, encoding="utf-8")
    report = import_products(till, path)
    rows = {row: reason for row, reason in report.errors}
    assert sorted(rows) == [4, 5, 6, 7]
    assert rows[4].startswith("成本不能为负")
    assert rows[5].startswith("成本 'abc' 不是金额")
    assert rows[6].startswith("品类过长")
    assert rows[7].startswith("成本 '2.005' 不是金额")
    assert report.added == 3
    got = {p.sku: (p.category, p.cost) for p in Product.select().order_by(Product.sku)}
    assert got == {"B1": ("日化", 2150), "B2": ("日化", None), "B7": ("生鲜", 400)}

    again = import_products(till, path)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 3)
    path.write_text(GOODS_CSV.replace("日化,21.50", "洗护,22"), encoding="utf-8")
    changed = import_products(till, path)
    assert (changed.added, changed.updated, changed.unchanged) == (0, 1, 2)
    assert (Product.get_by_id("B1").category, Product.get_by_id("B1").cost) == ("洗护", 2200)


def test_a_file_without_the_columns_keeps_the_category_and_cost_hq_sent(till, tmp_path):
    path = tmp_path / "goods.csv"
    path.write_text(GOODS_CSV, encoding="utf-8")
    import_products(till, path)
    path.write_text("商品编码,名称,售价\nB1,洗发水,42\n", encoding="utf-8")
    report = import_products(till, path)
    assert (report.updated, report.errors) == (1, [])
    b1 = Product.get_by_id("B1")
    assert (b1.price, b1.category, b1.cost) == (4200, "日化", 2150)


def test_a_member_import_checks_each_maintainer_as_registration_does(till, tmp_path):
    from edge.services import staff as staff_svc

    staff_svc.add_staff(till, "1001", "王收银", "cashier", "1234")  # the till's own staff
    path = tmp_path / "members.csv"
    path.write_text(
        "姓名,手机号,专属导购\n张三,13800000001,1001\n李四,13800000002,7777\n王五,13800000003,\n",
        encoding="utf-8",
    )
    report = import_members(till, path)
    assert report.added == 2
    assert [(row, reason.split(" (")[0]) for row, reason in report.errors] == [
        (3, "维护人 7777 不是本店员工")
    ]
    assert sorted((m.name, m.staff_code) for m in Member.select()) == [
        ("张三", "1001"),
        ("王五", None),
    ]
