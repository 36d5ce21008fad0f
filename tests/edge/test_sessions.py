"""The signed-in check every till request makes: right answers, at the cost of one query."""

from __future__ import annotations

import pytest

from core.errors import Unauthorized
from edge.models import Staff
from edge.services import staff as staff_svc


@pytest.fixture
def token(demo_till) -> str:
    token, _ = staff_svc.sign_in(demo_till, "1001", "1234")
    return token


def test_a_live_session_names_its_staff(demo_till, token):
    signed = staff_svc.session_staff(demo_till, token)
    assert (signed.code, signed.role) == ("1001", "cashier")
    assert signed.name


@pytest.mark.parametrize("token_given", [None, "", "not-a-token"])
def test_no_or_unknown_token_is_refused(demo_till, token_given):
    with pytest.raises(Unauthorized) as info:
        staff_svc.session_staff(demo_till, token_given)
    assert info.value.field == "token"


def test_an_expired_session_is_refused(demo_till, token, clock):
    clock.advance(hours=demo_till.config.till.session_hours, seconds=1)
    with pytest.raises(Unauthorized) as info:
        staff_svc.session_staff(demo_till, token)
    assert "过期" in info.value.message


def test_a_disabled_staff_member_s_session_is_refused(demo_till, token):
    Staff.update(active=False).where(Staff.code == "1001").execute()
    with pytest.raises(Unauthorized) as info:
        staff_svc.session_staff(demo_till, token)
    assert "停用" in info.value.message


def test_the_check_is_one_statement(demo_till, token):
    """Every request makes it: it was two peewee queries, a third of a millisecond of
    query building on a store box, as much as the sale's own statements cost."""
    statements: list[str] = []
    conn = demo_till.db.connection()
    conn.set_trace_callback(statements.append)
    try:
        staff_svc.session_staff(demo_till, token)
    finally:
        conn.set_trace_callback(None)
    assert len(statements) == 1, statements
