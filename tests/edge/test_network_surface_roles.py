"""Every till route has the role it should (docs/operations.md, "The till's network surface").

The table below is the decision, one line per Flask endpoint; the test walks the app's
url_map, so a route added without a line here fails, and asks each route as nobody, as a
cashier and as a manager:

- public: answers without a token (never 401);
- cashier: 401 without a token, not 401 or 403 for a signed-in cashier;
- manager: 401 without a token, 403 for a cashier who gives no manager's PIN, and not
  401 or 403 for a signed-in manager or for a cashier giving a manager's code+PIN (the
  till's way for a manager to approve one action at a cashier's screen).
"""

from __future__ import annotations

import pytest

from edge.api import create_app
from edge.services import staff as staff_svc

PUBLIC, CASHIER, MANAGER = "public", "cashier", "manager"

ROLES = {
    # the cashier screen, its assets and this API's description: nothing of the store's
    "static": PUBLIC,
    "ui.static": PUBLIC,
    "ui.cashier_ui": PUBLIC,
    "ui.openapi": PUBLIC,
    # up or not, and the store's code: for monitoring and the screen before sign-in
    "health.health": PUBLIC,
    # Prometheus: not staff, so no sign-in; its own door instead (this box only, or the
    # metrics token once one is set: tests/edge/test_metrics.py)
    "metrics.metrics": PUBLIC,
    "session.sign_in": PUBLIC,
    "session.sign_out": CASHIER,
    "session.who": CASHIER,
    "members.search_members": CASHIER,
    "members.member_by_card": CASHIER,
    "members.get_member": CASHIER,
    "members.register_member": CASHIER,
    "members.change_member_consent": CASHIER,
    # upkeep (docs/programme/upkeep.md): profile and password by any staff; a password
    # reset and a stored value refund (cash out) need a manager
    "upkeep.get_profile": CASHIER,
    "upkeep.edit_member": CASHIER,
    "upkeep.set_password": CASHIER,
    "upkeep.change_password": CASHIER,
    "upkeep.reset_password": MANAGER,
    "upkeep.refund_stored_value": MANAGER,
    "upkeep.stored_value_statement": CASHIER,
    "products.search_products": CASHIER,
    "products.get_product": CASHIER,
    "sales.quote_sale": CASHIER,
    "sales.create_sale": CASHIER,
    "sales.get_sale": CASHIER,
    "sales.reprint_sale": CASHIER,
    # every return needs a manager (edge.services.sales); a top-up only past the limits
    "sales.return_sale": MANAGER,
    # -- returns and receipts: finding a sale and previewing its return (the return itself
    # needs the manager)
    "receipts.find_sales": CASHIER,
    "receipts.quote_return": CASHIER,
    "topups.create_topup": CASHIER,
    # outbox refusals, member count, offline limits, device states: the store's own staff
    "status.status": CASHIER,
    "sessions.end_sessions": MANAGER,
    # the devices: states, test pages, rehearsed faults and swipes, the USB scan, card reads
    "devices.states": CASHIER,
    "devices.printer_test": CASHIER,
    "devices.display_test": CASHIER,
    "devices.rehearse": CASHIER,
    "devices.scan": CASHIER,
    "devices.reader_next": CASHIER,
    # -- cards: a card product is sold as a top-up is; replacing and blocking need a manager
    "cards.sell_card_product": CASHIER,
    "cards.replace_member_card": MANAGER,
    "cards.block_lost_card": MANAGER,
    # -- staff: the maintainers a registration may name; a manager sees and decides the
    # store's maintainer transfers
    "staff.list_maintainers": CASHIER,
    "staff.list_transfers": MANAGER,
    "staff.request_transfer": CASHIER,
    "staff.approve_transfer": MANAGER,
    "staff.reject_transfer": MANAGER,
    # -- follow-ups (issue 14): any staff lists their calls and records outcomes; the
    # store's whole list (?all=1) is a manager's (tests/edge/test_followups.py)
    "followups.due_calls": CASHIER,
    "followups.member_calls": CASHIER,
    "followups.record_outcome": CASHIER,
    # -- coupons (issue 11): a member's coupons and one by code, for the cashier
    "coupons.member_coupons": CASHIER,
    "coupons.get_coupon": CASHIER,
    # -- points: a member's points, the gift catalogue, redeeming a gift (as a sale does)
    "points.member_points": CASHIER,
    "points.list_gifts": CASHIER,
    "points.redeem_gift": CASHIER,
    # -- members at the till (issue 13): the registration form's choices, a top-up previewed
    "till_members.member_form": CASHIER,
    "till_members.topup_preview": CASHIER,
    # -- shifts and day close: each staff member opens and closes their own shift; the
    # store's day close and its report are a manager's
    "shifts.current_shift": CASHIER,
    "shifts.open_shift": CASHIER,
    "shifts.count_shift": CASHIER,
    "shifts.close_shift": CASHIER,
    "shifts.reprint_shift": CASHIER,
    "shifts.day_close_preview": MANAGER,
    "shifts.close_day": MANAGER,
    # -- sale & pay: parked sales (挂单/取单), any cashier's
    "parked.park_sale": CASHIER,
    "parked.list_parked": CASHIER,
    "parked.recall_parked": CASHIER,
}

ARGS = {"filename": "till.html", "role": "printer", "action": "unplug"}


@pytest.fixture
def role_app(demo_till):
    return create_app(demo_till)


def _requests(app):
    for rule in app.url_map.iter_rules():
        path = rule.rule
        for arg in rule.arguments:
            converter = f"<path:{arg}>" if f"<path:{arg}>" in path else f"<{arg}>"
            path = path.replace(converter, ARGS.get(arg, "X0"))
        if "reader/next" in path:
            path += "?timeout=0"
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, path


APPROVAL = {"manager": {"code": "9001", "pin": "9999"}}


def _ask(app, till, method, path, who, body=None):
    headers = {}
    if who is not None:
        staff_svc.client_address.set(None)
        token, _ = staff_svc.sign_in(till, *who)
        headers["Authorization"] = f"Bearer {token}"
    if method != "GET":
        body = body or {}
    res = app.test_client().open(path, method=method, headers=headers, json=body)
    res.close()
    return res.status_code


def test_every_route_has_a_role_decided(role_app):
    endpoints = {endpoint for endpoint, _, _ in _requests(role_app)}
    assert endpoints - ROLES.keys() == set(), "a route with no role decided: add it to ROLES"
    assert ROLES.keys() - endpoints == set(), "a route in ROLES that the app no longer has"


def test_every_route_answers_only_the_role_it_should(role_app, demo_till):
    wrong = []
    for endpoint, method, path in _requests(role_app):
        role = ROLES.get(endpoint)
        nobody = _ask(role_app, demo_till, method, path, None)
        cashier = _ask(role_app, demo_till, method, path, ("1001", "1234"))
        manager = _ask(role_app, demo_till, method, path, ("9001", "9999"))
        approved = (
            _ask(role_app, demo_till, method, path, ("1001", "1234"), APPROVAL)
            if method != "GET"
            else manager
        )
        if role == PUBLIC:
            ok = nobody not in (401, 403)
        elif role == CASHIER:
            ok = nobody == 401 and cashier not in (401, 403) and manager not in (401, 403)
        else:
            ok = (
                nobody == 401
                and cashier == 403
                and manager not in (401, 403)
                and approved not in (401, 403)
            )
        if not ok:
            wrong.append((endpoint, method, path, role, nobody, cashier, manager, approved))
    assert wrong == []


def test_the_public_answers_say_nothing_of_members_sales_or_devices(client):
    health = client.get("/api/v1/health")
    assert health.status_code == 200
    assert health.json == {"ok": True, "store": "S001"}
    for path in ("/api/v1/status", "/api/v1/devices"):
        res = client.get(path)
        assert res.status_code == 401, path
        assert "请先登录" in res.json["message"]
