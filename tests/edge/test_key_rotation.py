"""Member data key rotation while the till trades (issue 10, "Personal data"): old and new
keys both decrypt during it, what the till writes meanwhile is under the new key, and at
the end the old key decrypts nothing and the key file holds the new key."""

from __future__ import annotations

import stat
import threading

import pytest
from click.testing import CliRunner

from core.errors import ConfigError
from edge import key_rotation
from edge.api import create_app
from edge.cli import main
from edge.demo_data import load_demo
from edge.key_rotation import rotate_member_key
from edge.models import Member, Setting
from edge.phones import held_lookup_key
from edge.security import MemberKeys, blob_key_id
from edge.services import members as member_svc
from tests.edge.conftest import make_config, sign_in
from tests.lookup_keys import TEST_LOOKUP_KEY, give_lookup_key

NOW = "2026-12-04T10:00:00+08:00"


@pytest.fixture
def trading(till):
    """A store with the chain key and 60 registrations HQ has not acknowledged yet."""
    give_lookup_key(till, NOW)
    load_demo(till, members=60)
    return till


def held() -> dict[str, bytes]:
    return {m.id: bytes(m.phone_enc) for m in Member.select() if m.phone_enc is not None}


def key_ids(blobs: dict[str, bytes]) -> set[str | None]:
    return {blob_key_id(b) for b in blobs.values()}


def register(till, phone: str) -> str:
    reg = member_svc.Registration.from_request({"name": "新会员", "phone": phone})
    return member_svc.register(till, reg, "1001").id


def test_a_rotation_interleaved_with_trading_leaves_only_the_new_key(trading):
    till = trading
    path = till.config.key_path
    old_bytes = path.read_bytes()
    phones_before = {mid: member_svc.phone_of(till, Member.get_by_id(mid)) for mid in held()}
    assert len(phones_before) == 60 and key_ids(held()) == {till.keys.key_id}
    during: list[tuple[str, str]] = []

    def trade(rows: int) -> None:
        # between two of the rotation's transactions, the till registers, finds and reads
        blobs = held()
        assert len(key_ids(blobs)) == 2 or rows >= 60  # old and new side by side
        for mid, blob in blobs.items():  # every held phone reads, under either key
            assert till.keys.decrypt(blob, mid) == (phones_before.get(mid) or dict(during)[mid])
        phone = f"1370000{len(during):04d}"
        mid = register(till, phone)
        during.append((mid, phone))
        assert blob_key_id(bytes(Member.get_by_id(mid).phone_enc)) != till.keys.key_id
        assert member_svc.by_phone(till, phone).id == mid

    report = rotate_member_key(till.db, MemberKeys.load(path), path, batch=7, after_batch=trade)
    assert report.batches == len(during) >= 60 // 7
    new_keys = MemberKeys.load(path)
    assert path.read_bytes() != old_bytes and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (report.old_id, report.new_id) == (till.keys.key_id, new_keys.key_id)
    assert key_ids(held()) == {new_keys.key_id}
    # a process started now reads every phone, and the chain key, with the new key file alone
    everything = phones_before | dict(during)
    assert {mid: new_keys.decrypt(blob, mid) for mid, blob in held().items()} == everything
    assert held_lookup_key(new_keys)[1] == TEST_LOOKUP_KEY
    # the old key alone decrypts nothing any more: it is retired
    old_only = MemberKeys.from_master(old_bytes)
    some_id, some_blob = next(iter(held().items()))
    with pytest.raises(ConfigError):
        old_only.decrypt(some_blob, some_id)
    assert Setting.get_or_none(Setting.key == key_rotation.NEXT_SETTING) is None
    # and the till that traded through it goes on, holding both
    assert member_svc.phone_of(till, Member.get_by_id(some_id)) == everything[some_id]
    assert key_rotation.writing_keys(till.keys).key_id == new_keys.key_id


def test_a_rotation_that_stopped_is_finished_by_running_it_again(trading):
    till = trading
    path = till.config.key_path
    old_keys = MemberKeys.load(path)

    class Stop(Exception):
        pass

    def stop(rows: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        rotate_member_key(till.db, old_keys, path, batch=10, after_batch=stop)
    assert len(key_ids(held())) == 2 and MemberKeys.load(path).key_id == old_keys.key_id
    report = rotate_member_key(till.db, MemberKeys.load(path), path, batch=10)
    assert key_ids(held()) == {report.new_id} == {MemberKeys.load(path).key_id}
    assert Setting.get_or_none(Setting.key == key_rotation.NEXT_SETTING) is None


def test_a_process_that_cannot_read_the_new_key_refuses_to_write(trading, tmp_path):
    till = trading
    path = till.config.key_path
    stale = MemberKeys.from_master(path.read_bytes())  # no key file to read again
    rotate_member_key(till.db, MemberKeys.load(path), path)
    with pytest.raises(ConfigError, match="重启"):
        key_rotation.writing_keys(stale)
    # one that can read the key file again (not a systemd credential copy) carries on
    assert key_rotation.writing_keys(MemberKeys.from_master(b"\0" * 32, path)).key_id == (
        MemberKeys.load(path).key_id
    )


def test_the_till_keeps_serving_while_the_key_rotates(tmp_path, clock):
    """Real concurrency: the rotation in a thread, the till's API in this one, until the
    rotation ends (a bounded loop; nothing timed)."""
    from edge.services.context import open_till

    till = open_till(make_config(tmp_path), clock=clock, create_key=True)
    try:
        give_lookup_key(till, NOW)
        load_demo(till, members=80)
        client = create_app(till).test_client()
        auth = sign_in(client)
        path = till.config.key_path
        done = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            try:
                rotate_member_key(till.db, MemberKeys.load(path), path, batch=3)
            except BaseException as exc:  # handed to the test thread, which fails on it
                failed.append(exc)
            finally:
                till.db.close()  # this thread's connection
                done.set()

        worker = threading.Thread(target=run)
        worker.start()
        registered = {}
        for i in range(400):
            phone = f"1360000{i:04d}"
            res = client.post(
                "/api/v1/members", json={"name": "并发", "phone": phone}, headers=auth
            )
            assert res.status_code == 201, res.json
            registered[res.json["member"]["member_id"]] = phone
            found = client.get("/api/v1/members", query_string={"q": phone}, headers=auth)
            assert [m["member_id"] for m in found.json["members"]] == [
                res.json["member"]["member_id"]
            ]
            if done.is_set():
                break
        worker.join()
        assert failed == []
        assert done.is_set() and registered
        new_keys = MemberKeys.load(path)
        blobs = held()
        assert key_ids(blobs) == {new_keys.key_id}
        for mid, phone in registered.items():
            assert new_keys.decrypt(blobs[mid], mid) == phone
    finally:
        till.db.close()


def test_the_cli_rotates_and_says_so(trading, tmp_path):
    till = trading
    before = till.keys.key_id
    toml = tmp_path / "edge.toml"
    toml.write_text(
        f'data_dir = "{till.config.data_dir}"\n\n[security]\nscrypt_n = 1024\n', encoding="utf-8"
    )
    result = CliRunner().invoke(main, ["-c", str(toml), "rotate-member-key", "--batch", "5"])
    assert result.exit_code == 0, result.output
    assert before in result.output and "member key rotated" in result.output
    assert MemberKeys.load(till.config.key_path).key_id != before
    assert key_ids(held()) == {MemberKeys.load(till.config.key_path).key_id}
