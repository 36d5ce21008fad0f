"""Every refusal of the till API speaks Chinese first ("中文 (english)"): the cashier's
screen shows the part before the English (core.js ``chinese``), so a message that starts
in English reaches a cashier in English.

Every route the OpenAPI description names (edge/openapi.json and edge/openapi/*.json) is
sent the bad inputs a screen or a fuzzer sends: no token, a body that is not an object,
each field of its body in turn of the wrong type, out of range or missing, unknown ids in
its path, bad query values; then the refusals the cashier meets most (quantities, short
payments, empty baskets). Each 4xx answer's ``message`` must have Chinese before any
Latin letter."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import pytest

from edge.services import staff as staff_svc
from tests.edge.test_openapi import (  # noqa: F401 - hostile_client: a fixture
    GOOD,
    PATH_VALUES,
    SPEC,
    _put,
    _resolve,
    hostile_client,
)

# the technician's, waiting on hardware (tests/devices): a card read waits for a swipe
SKIPPED = {"/api/v1/devices/reader/next", "/api/v1/devices/scan"}
CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN = re.compile(r"[A-Za-z]")


# a message may name its field first, as the API calls it: "card_type 须为卡类型名 (...)"
FIELD_FIRST = re.compile(r"^(?:[a-z_][a-z0-9_.\[\]]*|[A-Z]{2,5})\s+")


def chinese_first(message: Any) -> bool:
    """Chinese before any English word (a field's name or PIN/SKU leading is no English)."""
    if not isinstance(message, str):
        return False
    message = FIELD_FIRST.sub("", message, count=1)
    cjk, latin = CJK.search(message), LATIN.search(message)
    return cjk is not None and (latin is None or cjk.start() < latin.start())


def _fields(node: dict, path: str = ""):
    """(path, type) of every field of a body schema, nested ones too (lists: item 0)."""
    node = _resolve(node)
    for part in node.get("allOf", []):
        yield from _fields(part, path)
    kind = node.get("type")
    if path:
        yield path, kind
    if kind == "object":
        for key, sub in node.get("properties", {}).items():
            yield from _fields(sub, f"{path}.{key}" if path else key)
    elif kind == "array" and isinstance(node.get("items"), dict):
        yield from _fields(node["items"], f"{path}[0]")


WRONG = {
    "string": [12345, ["x"], ""],
    "integer": ["x", -1, 0, 10**12, 1.5, True],
    "number": ["x", -1],
    "boolean": ["x", 2],
    "array": ["x", [], [7], [{}]],
    "object": ["x", [], {}],
    None: ["x", 7, None],
}


def _operations():
    for route, ops in SPEC["paths"].items():
        if route in SKIPPED:
            continue
        for method in ops:
            if method in ("get", "post", "put", "delete", "patch"):
                yield method, route


OPERATIONS = sorted(_operations())


@pytest.fixture(scope="module")
def message_till(request):
    """test_openapi's till (demo data, virtual devices, one sale): (till, client, sale id)."""
    client, _headers, sale_id = request.getfixturevalue("hostile_client")
    return client.application.extensions["huiyuan.till"], client, sale_id


def _headers(till, who=("1001", "1234")) -> dict[str, str]:
    staff_svc.client_address.set(None)
    token, _ = staff_svc.sign_in(till, *who)
    return {"Authorization": f"Bearer {token}"}


def _url(route: str, values: dict[str, str]) -> str:
    for key, text in values.items():
        route = route.replace("{" + key + "}", quote(str(text), safe=""))
    return re.sub(r"\{[^}]+\}", "X0", route)


def _requests(route: str, op: dict, sale_id: str):
    """(label, path values, query, body or the raw text, signed in) to send."""
    good_values = PATH_VALUES | {"sale_id": sale_id, "member_id": "M1"}
    good = GOOD.get(route, {})
    yield "no token", good_values, {}, good, False
    for param in op.get("parameters", []):
        if param["in"] == "path":
            for bad in ("NOPE", "0", "-1"):
                yield (
                    f"path {param['name']}={bad}",
                    good_values | {param["name"]: bad},
                    {},
                    good,
                    True,
                )
        elif param["in"] == "query":
            kind = param.get("schema", {}).get("type")
            for bad in ("x", "-1", "99999999999", ""):
                if kind == "string" and bad == "x":
                    continue
                yield f"query {param['name']}={bad}", good_values, {param["name"]: bad}, good, True
    content = op.get("requestBody", {}).get("content", {}).get("application/json")
    if not content:
        return
    yield "body []", good_values, {}, [], True
    yield "body text", good_values, {}, "not json", True
    for path, kind in _fields(content["schema"]):
        for bad in WRONG.get(kind, WRONG[None]):
            data = json.loads(json.dumps(good))
            _put(data, path, bad)
            yield f"{path}={bad!r}", good_values, {}, data, True


@pytest.mark.parametrize(("method", "route"), OPERATIONS)
def test_every_refusal_is_chinese_first(message_till, method, route):
    till, client, sale_id = message_till
    op = SPEC["paths"][route][method]
    english = []
    for label, values, query, data, signed in _requests(route, op, sale_id):
        headers = _headers(till, ("9001", "9999")) if signed else {}
        if isinstance(data, str):
            res = client.open(
                _url(route, values),
                method=method.upper(),
                headers=headers,
                query_string=query,
                data=data,
                content_type="application/json",
            )
        else:
            res = client.open(
                _url(route, values),
                method=method.upper(),
                headers=headers,
                query_string=query,
                json=data if method != "get" else None,
            )
        assert res.status_code < 500, (label, res.status_code, res.get_data(as_text=True)[:300])
        if 400 <= res.status_code < 500 and res.is_json:
            message = res.json.get("message")
            if not chinese_first(message):
                english.append(f"{label}: {res.status_code} {message!r}")
        res.close()
    assert english == [], "\n".join(english)


# ---- the refusals a cashier meets most, by name -------------------------------------

QUOTE = "/api/v1/sales/quote"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"lines": []}, "lines", "购物篮是空的"),
        ({"lines": [{"sku": "P0001", "qty": 0}]}, "lines[0].qty", "数量须在 1 到 99999 之间"),
        ({"lines": [{"sku": "P0001", "qty": -3}]}, "lines[0].qty", "数量须在 1 到 99999 之间"),
        ({"lines": [{"sku": "P0001", "qty": 100000}]}, "lines[0].qty", "数量须在 1 到 99999 之间"),
        ({"lines": [{"sku": "P0001", "qty": "2"}]}, "lines[0].qty", "数量须为整数"),
        ({"lines": [{"sku": "NOPE"}]}, "lines", "商品 NOPE 不存在"),
        (
            {"lines": [{"sku": "P0001"}], "order_discount_rate": 1200},
            "order_discount_rate",
            "整单折扣",
        ),
    ],
)
def test_basket_refusals_say_what_is_wrong_in_chinese(client, cashier, body, field, words):
    res = client.post(QUOTE, headers=cashier, json=body)
    assert 400 <= res.status_code < 500, res.json
    assert res.json["field"] == field, res.json
    assert words in res.json["message"], res.json
    assert chinese_first(res.json["message"]), res.json


def test_a_short_payment_is_told_in_yuan(client, cashier):
    res = client.post(
        "/api/v1/sales",
        headers=cashier,
        json={"lines": [{"sku": "P0003"}], "tenders": [{"kind": "cash", "amount": 1000}]},
    )
    assert res.status_code == 422, res.json
    message = res.json["message"]
    assert "应付 ¥69.90" in message and "实付 ¥10.00" in message, message
    assert " 分" not in message and chinese_first(message)
    assert res.json["details"] == {"due": 6990, "paid": 1000}  # the figures stay in fen


def test_flasks_own_refusals_are_chinese_first(client, cashier):
    """No such route, a method the route does not take, a body past 1 MiB."""
    answers = [
        client.get("/api/v1/no-such-thing", headers=cashier),
        client.put("/api/v1/sales/quote", headers=cashier, json={}),
        client.post(QUOTE, headers=cashier, data="x" * (1 << 21), content_type="application/json"),
    ]
    assert [res.status_code for res in answers] == [404, 405, 413]
    for res in answers:
        assert chinese_first(res.json["message"]), res.json
