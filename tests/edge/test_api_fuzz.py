"""Whatever a till client sends, the API answers with a 4xx message, never a 500."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.api import create_app
from tests.edge.conftest import sign_in

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
amounts = (
    st.integers(min_value=-(2**65), max_value=2**65)
    | st.sampled_from([0, 1, 100, 10**6, 10**10, 10**10 + 1, 2**63, 2**64])
    | scalars
)
skus = st.sampled_from(["P0001", "P0002", "P0006", "P0011", "6901234567003", "NOPE", ""]) | st.text(
    max_size=6
)
lines = (
    st.lists(
        st.fixed_dictionaries({"sku": skus}, optional={"qty": amounts, "line_discount": amounts}),
        max_size=4,
    )
    | json_values
)
tenders = (
    st.lists(
        st.fixed_dictionaries(
            {
                "kind": st.sampled_from(["cash", "stored_value", "points", "coupon"]) | scalars,
                "amount": amounts,
            }
        ),
        max_size=3,
    )
    | json_values
)
members = (
    st.none()
    | st.fixed_dictionaries(
        {},
        optional={
            "card_no": st.sampled_from(["C0001", "C0002", "X"]) | scalars,
            "phone": scalars,
            "member_id": scalars,
        },
    )
    | json_values
)
sale_bodies = st.fixed_dictionaries(
    {"lines": lines, "tenders": tenders},
    optional={
        "member": members,
        "order_discount_rate": amounts,
        "manual_adjustment": amounts,
        "member_password": scalars,
        "sale_id": scalars,
        "manager": st.just({"code": "9001", "pin": "9999"}) | json_values,
    },
)
registrations = st.fixed_dictionaries(
    {},
    optional={
        "name": scalars,
        "phone": st.sampled_from(["13800000009", "+8613800000008", "1380000"]) | scalars,
        "gender": st.sampled_from(["M", "F", "", "X"]) | scalars,
        "birthday": st.sampled_from(["1990-02-29", "1990-02-30", "08-15", "1990-13-01", "x"])
        | scalars,
        "birthday_calendar": st.sampled_from(["solar", "lunar", "mayan"]) | scalars,
        "birthday_leap_month": scalars,
        "card_no": scalars,
        "card_type": st.sampled_from(["金卡", "黑卡"]) | scalars,
        "password": scalars,
        "staff_code": scalars,
    },
)
topups = st.fixed_dictionaries(
    {}, optional={"member": members, "amount": amounts, "topup_id": scalars}
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    target=st.sampled_from(
        [
            "/api/v1/sales",
            "/api/v1/sales/quote",
            "/api/v1/members",
            "/api/v1/topups",
            "/api/v1/session",
        ]
    ),
    body=sale_bodies | registrations | topups | json_values,
)
def test_no_request_body_gets_a_500(demo_till, target, body):
    client = create_app(demo_till).test_client()
    headers = sign_in(client)
    res = client.post(target, headers=headers, json=body)
    assert res.status_code < 500, (target, body, res.json)
    if res.status_code >= 400:
        assert res.json["message"]
        # the last-resort 400 (edge/api.py _unreadable) means a check is missing
        assert res.json["error"] != "unreadable", (target, body, res.json)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=json_values
    | st.fixed_dictionaries(
        {}, optional={"lines": json_values, "return_id": scalars, "manager": json_values}
    )
)
def test_returns_never_500(demo_till, body):
    client = create_app(demo_till).test_client()
    headers = sign_in(client, "9001", "9999")
    sale = client.post(
        "/api/v1/sales",
        headers=headers,
        json={
            "lines": [{"sku": "P0002", "qty": 2}],
            "tenders": [{"kind": "cash", "amount": 20000}],
        },
    )
    res = client.post(f"/api/v1/sales/{sale.json['sale_id']}/returns", headers=headers, json=body)
    assert res.status_code < 500, (body, res.json)
    assert res.json is None or res.json.get("error") != "unreadable", (body, res.json)
