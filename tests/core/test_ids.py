"""UUIDv7 ids: layout per RFC 9562, time order, and never the same random bits twice,
across threads and across a fork (the random bytes come from a pool)."""

from __future__ import annotations

import os
import threading
import uuid

import pytest

from core.ids import _POOL_BYTES, is_uuid, uuid7


def test_layout_version_variant_and_time() -> None:
    text = uuid7(now_ms=0x0192_3456_789A)
    parsed = uuid.UUID(text)
    assert str(parsed) == text
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert parsed.int >> 80 == 0x0192_3456_789A
    assert is_uuid(text)


def test_ids_sort_by_their_millisecond() -> None:
    ids = [uuid7(now_ms=ms) for ms in (1_700_000_000_000, 1_700_000_000_001, 1_800_000_000_000)]
    assert ids == sorted(ids)


def test_many_ids_across_pool_refills_are_distinct() -> None:
    n = 3 * _POOL_BYTES // 10 + 7  # past several refills of the pool
    ids = [uuid7(now_ms=1) for _ in range(n)]  # same millisecond: only random bits differ
    assert len(set(ids)) == n


def test_threads_never_share_random_bits() -> None:
    per_thread, out = 2000, []
    lock = threading.Lock()

    def mint() -> None:
        mine = [uuid7(now_ms=1) for _ in range(per_thread)]
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=mint) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == len(set(out)) == 8 * per_thread


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    uuid7()  # the pool now holds bytes the child must not reuse
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_end)
        os.write(write_end, ",".join(uuid7(now_ms=1) for _ in range(50)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child = pipe.read().split(",")
    os.waitpid(pid, 0)
    parent = [uuid7(now_ms=1) for _ in range(50)]
    assert len(child) == 50
    assert not set(child) & set(parent)
