"""/api/reports: the KPIs as JSON, each principal limited to its stores."""

from __future__ import annotations

import pytest

from hq.api import create_app
from hq.config import HqConfig
from tests.hq.signin import bearer_client, session_client
from tests.hq.test_kpis import chain  # noqa: F401 (the fixture)

Q = "kind=month&period=2026-11"


@pytest.fixture
def app(hq_db, hq_db_url, chain):  # noqa: F811
    app = create_app(HqConfig(database_url=hq_db_url), db=hq_db)
    app.testing = True
    return app


def test_anonymous_is_refused(app):
    assert app.test_client().get(f"/api/reports/figures?{Q}").status_code == 401


def test_chain_figures_compare_series_and_breakdown(app, hq_db):
    client = session_client(app, hq_db, "analyst")
    body = client.get(f"/api/reports/figures?{Q}").get_json()
    assert body["scope"]["kind"] == "chain" and body["period"]["label"] == "2026年11月"
    assert body["figures"]["sales_fen"] == 70000
    assert body["figures"]["member_sales_share"] == round(43000 / 70000, 4)
    body = client.get(f"/api/reports/compare?{Q}&keys=sales_fen,buyers").get_json()
    assert body["current"] == {"sales_fen": 70000, "buyers": 3}
    assert body["periods"]["previous"]["key"] == "2026-10"
    assert body["periods"]["last_year"]["key"] == "2025-11"
    body = client.get(f"/api/reports/series?{Q}&n=2").get_json()
    assert [p["period"]["key"] for p in body["points"]] == ["2026-10", "2026-11"]
    rows = client.get(f"/api/reports/breakdown?{Q}&by=store").get_json()["rows"]
    assert [r["key"] for r in rows] == ["S001", "S002", "S003"]
    kpis = client.get("/api/reports/kpis").get_json()["kpis"]
    assert {"key": "member_sales_share", "zh": "会员交易额占有率"}.items() <= kpis[2].items()


def test_store_manager_sees_only_their_store(app, hq_db):
    client = session_client(app, hq_db, "store", "S001")
    body = client.get(f"/api/reports/figures?{Q}").get_json()
    assert body["scope"] == {"kind": "store", "key": "S001", "label": "门店 S001"}
    assert body["figures"]["sales_fen"] == 49000
    for query in ("scope=chain", "scope=store&key=S002", "scope=area&key=华东"):
        resp = client.get(f"/api/reports/figures?{Q}&{query}")
        assert resp.status_code == 403, query
        assert "无权" in resp.get_json()["message"]
    rows = client.get(f"/api/reports/breakdown?{Q}&by=store").get_json()["rows"]
    assert [r["key"] for r in rows] == ["S001"]
    staff = client.get(f"/api/reports/breakdown?{Q}&by=staff").get_json()["rows"]
    assert {r["key"] for r in staff} == {"E01", "E02"}
    assert client.get(f"/api/reports/figures?{Q}&scope=staff&key=E03").status_code == 403


def test_area_manager_sees_their_area(app, hq_db):
    client = bearer_client(app, hq_db, "area", "华东")
    body = client.get(f"/api/reports/figures?{Q}").get_json()
    assert body["scope"]["kind"] == "area" and body["figures"]["sales_fen"] == 67000
    assert client.get(f"/api/reports/figures?{Q}&scope=store&key=S002").status_code == 200
    assert client.get(f"/api/reports/figures?{Q}&scope=store&key=S003").status_code == 403
    assert client.get(f"/api/reports/figures?{Q}&scope=chain").status_code == 403
    rows = client.get(f"/api/reports/breakdown?{Q}&by=store").get_json()["rows"]
    assert [r["key"] for r in rows] == ["S001", "S002"]


@pytest.mark.parametrize(
    "query, field",
    [
        ("kind=month&period=2026-13", "period"),
        ("kind=fortnight", "kind"),
        ("kind=month&period=2026-11&scope=galaxy", "scope"),
        ("kind=month&period=2026-11&keys=nonsense", "keys"),
        ("kind=month&period=2026-11&scope=store", "key"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(app, hq_db, query, field):
    client = session_client(app, hq_db, "admin")
    resp = client.get(f"/api/reports/figures?{query}")
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.get_json()["field"] == field
    assert client.get("/api/reports/breakdown?by=planet").get_json()["field"] == "by"
    assert client.get("/api/reports/series?n=999").get_json()["field"] == "n"
