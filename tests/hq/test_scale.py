"""What several HQ nodes on one PostgreSQL database must not do twice.

The end-to-end run (two worker processes sharing the subscription, one SIGKILLed
mid-run) is ``test_two_workers_ingest_three_stores_at_once_on_postgres`` in
tests/hq/test_processes.py; docs/operations.md, "Scale", lists what each node keeps
to itself and why that is safe.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from core.digest import Figures
from hq.models import HqException, bind, open_database
from hq.reconcile import KIND_STORE_BALANCE, MemberDifference, record_differences

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


@pytest.mark.postgres
def test_two_nodes_finding_one_difference_at_once_open_one_exception(pg_url):
    """Node A has opened the exception and not yet committed when node B looks for an
    open one: B must wait for A's commit and then find it, not open a second."""
    db = open_database(pg_url)
    bind(db, create=True)
    diff = MemberDifference(
        KIND_STORE_BALANCE, "m-1", "S001", Figures(100, 0, 5, 0), Figures(900, 0, 5, 0)
    )
    opened: dict[str, int] = {}
    b_done = threading.Event()

    def node_b() -> None:
        with db.atomic():
            opened["b"] = record_differences([diff], NOW)
        b_done.set()
        db.close()

    with db.atomic():
        opened["a"] = record_differences([diff], NOW)
        b = threading.Thread(target=node_b)
        b.start()
        # without the lock B is done at once (and has opened a second exception); with
        # it B waits for this commit
        b_done.wait(2.0)
    b.join(15)
    assert not b.is_alive()
    rows = HqException.select().where(HqException.member_id == "m-1")
    assert (opened, rows.count()) == ({"a": 1, "b": 0}, 1)
    db.close()
