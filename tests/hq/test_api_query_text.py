"""Issue 9 defect 8 at HQ: a query or id HQ cannot store as text (a NUL, which PostgreSQL
refuses in a string) or far longer than any id is a 400 naming the field, never a 500."""

from __future__ import annotations

import pytest

from hq.api import create_app
from hq.config import HqConfig
from tests.hq.signin import session_client


@pytest.fixture
def client(hq_db, hq_db_url):
    app = create_app(HqConfig(database_url=hq_db_url), db=hq_db)
    app.testing = True
    return session_client(app, hq_db, "admin")


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/members?q=%00", "q"),
        ("/api/members?q=13800000001%00", "q"),
        ("/api/members?q=" + "1" * 5000, "q"),
        ("/api/members/abc%00def", "member_id"),
        ("/api/members/" + "m" * 5000, "member_id"),
        ("/api/cards/C%0001/block", "card_no"),
    ],
)
def test_unstorable_text_is_a_400_naming_the_field(client, path, field):
    res = client.post(path, json={}) if path.endswith("/block") else client.get(path)
    assert res.status_code == 400, (res.status_code, res.get_data(as_text=True)[:300])
    assert res.get_json()["field"] == field
    assert len(res.get_json()["message"]) < 200


def test_an_unknown_member_is_still_a_404(client):
    assert client.get("/api/members?q=13800000001").status_code == 404
