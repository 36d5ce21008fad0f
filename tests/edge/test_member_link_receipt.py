"""The receipt's QR code is the member's signed, expiring link to HQ's page, which HQ
verifies with the key it derives from the same chain lookup key (docs/member-page.md)."""

from __future__ import annotations

import datetime as dt

import pytest

from core.member_link import LINK_DAYS, LinkRefused, link_key, verify_link
from edge.models import Member
from edge.services import receipts
from edge.services import staff as staff_svc
from tests.edge.test_receipt_dict import AT, _body
from tests.lookup_keys import TEST_LOOKUP_KEY, give_lookup_key


def _receipt_url(till) -> tuple[str, str]:
    _, staff = staff_svc.sign_in(till, "1001", "1234")
    member = Member.select().first()
    built = receipts.sale_receipt_dict(till, _body(), member, staff, AT, till.now().date())
    return member.id, built["member"]["self_service_url"]


def test_the_receipt_carries_a_link_hq_verifies_for_that_member_only(demo_till):
    give_lookup_key(demo_till, AT)
    member_id, url = _receipt_url(demo_till)
    assert url.startswith("https://m.example.cn/m/") and member_id not in url
    token = url.rsplit("/", 1)[1]
    now = demo_till.now()
    link = verify_link(link_key(TEST_LOOKUP_KEY), token, now)
    assert link.member_id == member_id
    assert link.expires_at - now.astimezone(dt.UTC) <= dt.timedelta(days=LINK_DAYS)
    assert link.expires_at - now.astimezone(dt.UTC) > dt.timedelta(days=LINK_DAYS - 1)
    with pytest.raises(LinkRefused, match="expired"):
        verify_link(link_key(TEST_LOOKUP_KEY), token, now + dt.timedelta(days=LINK_DAYS))
    with pytest.raises(LinkRefused):
        verify_link(link_key(bytes(32)), token, now)


def test_a_store_without_the_chain_key_prints_no_qr_code(demo_till):
    _member_id, url = _receipt_url(demo_till)
    assert url == ""  # an unsigned link would only open HQ's refusal page
