"""The member's signed link (core.member_link): signed, expiring, refused when edited."""

from __future__ import annotations

import base64
import datetime as dt

import pytest

from core.member_link import LinkRefused, link_key, link_key_id, sign_link, verify_link

KEY = link_key(bytes(range(1, 33)))
OTHER_KEY = link_key(bytes(range(2, 34)))
MEMBER = "0193a0c2-6a4e-7c11-8f00-1234567890ab"
NOW = dt.datetime(2026, 12, 5, 10, 0, tzinfo=dt.UTC)
EXPIRES = NOW + dt.timedelta(days=30)


def _raw(token: str) -> bytearray:
    return bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def _token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_a_signed_link_names_its_member_until_it_expires():
    token = sign_link(KEY, MEMBER, EXPIRES)
    assert len(token) == 55 and token.isascii() and "=" not in token
    link = verify_link(KEY, token, NOW)
    assert link.member_id == MEMBER and link.expires_at == EXPIRES
    just_before = EXPIRES - dt.timedelta(seconds=1)
    assert verify_link(KEY, token, just_before.replace(tzinfo=None)).member_id == MEMBER
    with pytest.raises(LinkRefused) as refused:
        verify_link(KEY, token, EXPIRES)
    assert refused.value.reason == "expired"


def test_a_member_id_that_is_not_a_uuid_round_trips():
    token = sign_link(KEY, "M-0001", EXPIRES)
    assert verify_link(KEY, token, NOW).member_id == "M-0001"


@pytest.mark.parametrize("index", range(41))
def test_flipping_any_byte_is_refused(index):
    raw = _raw(sign_link(KEY, MEMBER, EXPIRES))
    raw[index] ^= 0x01
    with pytest.raises(LinkRefused) as refused:
        verify_link(KEY, _token(raw), NOW)
    assert refused.value.reason in ("signature", "key", "malformed")


def test_another_members_id_or_a_later_expiry_spliced_in_is_refused():
    raw = _raw(sign_link(KEY, MEMBER, EXPIRES))
    other = _raw(sign_link(KEY, "0193a0c2-6a4e-7c11-8f00-ffffffffffff", EXPIRES))
    spliced = raw[:9] + other[9:25] + raw[25:]
    with pytest.raises(LinkRefused, match="signature"):
        verify_link(KEY, _token(spliced), NOW)
    expired = _raw(sign_link(KEY, MEMBER, NOW - dt.timedelta(days=1)))
    later = _raw(sign_link(KEY, MEMBER, EXPIRES))
    with pytest.raises(LinkRefused, match="signature"):
        verify_link(KEY, _token(expired[:5] + later[5:9] + expired[9:]), NOW)


def test_a_link_signed_with_another_key_is_refused_as_such():
    with pytest.raises(LinkRefused) as refused:
        verify_link(KEY, sign_link(OTHER_KEY, MEMBER, EXPIRES), NOW)
    assert refused.value.reason == "key"
    assert link_key_id(KEY) != link_key_id(OTHER_KEY)


@pytest.mark.parametrize(
    "token",
    ["", "short", "A" * 300, "not base64 !!", "é" * 20, sign_link(KEY, MEMBER, EXPIRES) + "A"],
)
def test_garbage_is_refused_not_a_crash(token):
    with pytest.raises(LinkRefused):
        verify_link(KEY, token, NOW)


def test_the_refusal_is_chinese_first():
    with pytest.raises(LinkRefused) as refused:
        verify_link(KEY, "garbage-garbage", NOW)
    assert refused.value.message.startswith("链接无效或已过期 (")
