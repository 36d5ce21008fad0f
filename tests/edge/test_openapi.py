"""Every till route, fuzzed from its OpenAPI description (edge/openapi.json, served at
GET /api/v1/openapi.json) with schemathesis: valid and invalid requests alike get no 5xx,
a status and content type the description lists, and a body that matches its schema.
No answer is the last-resort 400 (``error: unreadable``): that would be a check missing."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from edge.api import create_app, openapi_document
from edge.demo_data import load_demo
from edge.devices.config import DevicesConfig
from edge.devices.manager import DeviceManager
from edge.services import staff as staff_svc
from edge.services.context import open_till
from tests.edge.conftest import CN, Clock, make_config

# fuzzed guesses must not lock the codes and the address the test signs in with
UNLOCKED = {"pin_max_failures": 10**9, "address_max_failures": 0}


@pytest.fixture
def till_app(tmp_path, clock):
    till = open_till(make_config(tmp_path, till=UNLOCKED), clock=clock, create_key=True)
    load_demo(till, members=5)
    devices = DeviceManager.from_config(
        DevicesConfig.from_dict({"reconnect_min_s": 0.05, "reconnect_max_s": 0.2}),
        tmp_path / "devices",
    )
    devices.start()
    app = create_app(till, devices)
    # schemathesis calls the WSGI app without a REMOTE_ADDR, which the till's door refuses
    # (waitress always sets it): these requests come from the box itself
    wsgi_app = app.wsgi_app
    app.wsgi_app = lambda environ, start: wsgi_app(  # type: ignore[method-assign]
        {"REMOTE_ADDR": "127.0.0.1"} | environ, start
    )
    yield app
    devices.stop()
    till.db.close()


# A reader waits up to 30 s for a card, and a scan walks the machine's USB buses: both are
# the technician's, tested in tests/devices.
schema = schemathesis.openapi.from_dict(openapi_document()).exclude(
    path_regex="^/api/v1/devices/(reader/next|scan)$"
)


def no_last_resort(ctx, response, case) -> bool | None:
    """No request gets past the checks to the last-resort 400 handler."""
    if response.status_code == 400:
        assert response.json().get("error") != "unreadable", (case.path, case.body)
    return None


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_route_answers_as_described(case, till_app):
    # a fresh manager's session per request: a fuzzed DELETE /session ends the last one
    till = till_app.extensions["huiyuan.till"]
    staff_svc.client_address.set(None)
    token, _ = staff_svc.sign_in(till, "9001", "9999")
    case.call_and_validate(
        app=till_app,
        headers={"Authorization": f"Bearer {token}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            no_last_resort,
        ],
    )


def test_the_description_is_served_and_valid_json(client):
    res = client.get("/api/v1/openapi.json")
    assert res.status_code == 200 and res.mimetype == "application/json"
    assert res.json == openapi_document()
    assert res.json["openapi"].startswith("3.")


def test_every_route_of_the_app_is_described(app):
    described = set(openapi_document()["paths"])
    routes = {
        rule.rule.replace("<", "{").replace(">", "}")
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
    }
    assert routes - described == set()


# ---- hostile values in every text field the description names ------------------------
# schemathesis generates what the description allows, and a little past it; the texts that
# gave 500s in the field (issue 9 defect 8) were far past it: a lone surrogate, 70,000
# characters, a NUL, a list or an object where a text belongs. Each is put into every text
# field of every route the description names, one at a time, into a request that is
# otherwise good.

SPEC = openapi_document()
MANAGER = {"code": "9001", "pin": "9999"}
GOOD = {
    "/api/v1/session": {"staff_code": "1001", "pin": "1234"},
    "/api/v1/members": {"name": "王五", "phone": "13700000009", "card_no": "K9"},
    "/api/v1/sales/quote": {
        "lines": [{"sku": "P0002"}],
        "member": {"card_no": "C0001"},
        "manager": MANAGER,
    },
    "/api/v1/sales": {
        "lines": [{"sku": "P0002"}],
        "member": {"card_no": "C0001"},
        "tenders": [{"kind": "cash", "amount": 100000}],
        "manager": MANAGER,
    },
    "/api/v1/sales/{sale_id}/returns": {
        "lines": [{"line_no": 1, "qty": 1}],
        "return_id": "R1",
        "manager": MANAGER,
    },
    "/api/v1/topups": {"member": {"card_no": "C0001"}, "amount": 100, "manager": MANAGER},
    "/api/v1/devices/virtual/{role}/{action}": {"card_no": "C0001"},
    # -- sale & pay: a basket parked with a note
    "/api/v1/parked": {"lines": [{"sku": "P0001"}], "note": "顾客去取钱包"},
    # -- staff: a list of texts needs an entry for the hostile one to replace
    "/api/v1/maintainers/transfers": {
        "from_staff": "1001",
        "to_staff": "9001",
        "member_ids": ["01936f5e-0000-7000-8000-000000000001"],
        "reason": "调岗",
    },
}
PATH_VALUES = {"role": "reader", "action": "swipe", "card_no": "C0001", "code": "P0002"}
HOSTILE_TEXTS = {"lone surrogate": "\ud800", "70k characters": "%" * 70_000, "NUL": "a\x00b"}


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        node = SPEC["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _text_fields(node: dict, path: str = ""):
    node = _resolve(node)
    for part in node.get("allOf", []):
        yield from _text_fields(part, path)
    if node.get("type") == "object":
        for key, sub in node.get("properties", {}).items():
            yield from _text_fields(sub, f"{path}.{key}" if path else key)
    elif node.get("type") == "array":
        yield from _text_fields(node["items"], f"{path}[0]")
    elif node.get("type") == "string":
        yield path


def _places():
    for route, ops in SPEC["paths"].items():
        for method, op in ops.items():
            for param in op.get("parameters", []):
                if param["schema"].get("type") == "string" and "enum" not in param["schema"]:
                    yield method, route, param["in"], param["name"]
            content = op.get("requestBody", {}).get("content", {}).get("application/json")
            if content:
                for field in _text_fields(content["schema"]):
                    yield method, route, "body", field


PLACES = list(_places())


def _put(data: dict, path: str, value: object) -> None:
    tokens = [t for part in path.split(".") for t in part.replace("]", "").split("[")]
    node: Any = data
    for token, after in zip(tokens[:-1], tokens[1:], strict=True):
        key = int(token) if token.isdigit() else token
        if isinstance(node, list):
            while len(node) <= key:
                node.append({})
        elif key not in node or not isinstance(node[key], (dict, list)):
            node[key] = [] if after.isdigit() else {}
        node = node[key]
    last = tokens[-1]
    if isinstance(node, list):  # a list of texts (e.g. a sale's coupon codes) grows to it
        node.extend([value] * (int(last) + 1 - len(node)))
        node[int(last)] = value
    else:
        node[last] = value


@pytest.fixture(scope="module")
def hostile_client(tmp_path_factory):
    """One till for every hostile request (each is refused, or harmless to the next)."""
    tmp_path = tmp_path_factory.mktemp("hostile")
    clock = Clock(dt.datetime(2026, 11, 23, 10, 0, tzinfo=CN))
    till = open_till(make_config(tmp_path, till=UNLOCKED), clock=clock, create_key=True)
    load_demo(till, members=5)
    devices = DeviceManager.from_config(DevicesConfig.from_dict({}), tmp_path / "devices")
    devices.start()
    client = create_app(till, devices).test_client()
    res = client.post("/api/v1/session", json={"staff_code": "9001", "pin": "9999"})
    headers = {"Authorization": f"Bearer {res.json['token']}"}
    sale = client.post("/api/v1/sales", headers=headers, json=GOOD["/api/v1/sales"])
    assert sale.status_code == 201, sale.json
    yield client, headers, sale.json["sale_id"]
    devices.stop()
    till.db.close()


def _send(hostile_client, method, route, where, name, value):
    client, headers, sale_id = hostile_client
    values = PATH_VALUES | {"sale_id": sale_id, "member_id": "M1"}
    query: dict[str, object] = {}
    data = json.loads(json.dumps(GOOD.get(route, {})))
    if where == "path":
        values[name] = value
    elif where == "query":
        query[name] = value
    else:
        _put(data, name, value)
    url = route
    for key, text in values.items():
        url = url.replace("{" + key + "}", quote(str(text), safe=""))
    return client.open(
        url,
        method=method.upper(),
        headers=headers,
        query_string=query,
        data=json.dumps(data) if where == "body" or route in GOOD else None,
        content_type="application/json",
    )


# every hostile text in every place, but a lone surrogate only in a body: a URL is bytes,
# so a path or a query string cannot carry one
HOSTILE_CASES = [
    (*place, hostile)
    for place in PLACES
    for hostile in HOSTILE_TEXTS
    if place[2] == "body" or hostile != "lone surrogate"
]


@pytest.mark.parametrize(("method", "route", "where", "name", "hostile"), HOSTILE_CASES)
def test_a_hostile_text_anywhere_is_a_400_naming_the_field(
    hostile_client, method, route, where, name, hostile
):
    value = HOSTILE_TEXTS[hostile]
    res = _send(hostile_client, method, route, where, name, value)
    assert res.status_code == 400, (res.status_code, res.get_data(as_text=True)[:300])
    assert res.json["field"] == name, res.json
    assert len(res.json["message"]) < 300


@pytest.mark.parametrize("hostile", [["cash"], {"kind": "cash"}, 7, True])
@pytest.mark.parametrize(
    ("method", "route", "where", "name"), [p for p in PLACES if p[2] == "body"]
)
def test_a_value_of_another_type_where_a_text_belongs_is_no_5xx(
    hostile_client, method, route, where, name, hostile
):
    res = _send(hostile_client, method, route, where, name, hostile)
    assert res.status_code < 500, (res.status_code, res.get_data(as_text=True)[:300])
    assert res.json is None or res.json.get("error") != "unreadable", res.json
    if res.status_code == 400 and not route.startswith("/api/v1/devices/"):
        # (the devices API, edge/devices/api.py, names no field in its refusals)
        assert res.json.get("field"), res.json
