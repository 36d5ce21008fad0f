"""HQ's scheduler: one leader across nodes, each slot of a job run once, failover."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hq.config import HqConfig
from hq.models import HqException, JobRun, SchedulerState, bind, open_database
from hq.scheduler import JOBS, Job, JobContext, Scheduler
from tests.hq.edge_sim import wait_until

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 12, 4, 12, 0, 0)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def db(hq_db_url):
    database = bind(open_database(hq_db_url), create=True)
    yield database
    database.close()


def nodes(hq_db_url, jobs, clock, count=2):
    config = HqConfig(database_url=hq_db_url)
    return [
        Scheduler(config, open_database(hq_db_url), jobs, f"node-{i}", lease=30.0, clock=clock)
        for i in range(count)
    ]


def test_one_node_leads_and_each_slot_of_a_job_runs_once(db, hq_db_url):
    ran: list[str] = []
    job = Job("probe", dt.timedelta(minutes=5), lambda ctx: ran.append(ctx.clock().isoformat()))
    clock = Clock()
    a, b = nodes(hq_db_url, [job], clock)
    try:
        assert a.leadership_round() is True
        assert b.leadership_round() is False
        assert a.run_job(job) is True
        assert b.run_job(job) is False  # a standby runs nothing
        assert ran == [T0.isoformat()]

        # two nodes that both believe they lead still run one slot once
        b.leading = True
        assert b.run_job(job) is False and a.run_job(job) is False
        clock.now += dt.timedelta(minutes=5)
        assert b.run_job(job) is True and a.run_job(job) is False
        assert len(ran) == 2
        row = SchedulerState.get_by_id("job:probe")
        assert (row.holder, row.runs, row.at) == ("node-1", 2, clock.now)
    finally:
        for node in (a, b):
            node.leadership.release()
            node.db.close()


def test_a_standby_takes_over_when_the_leader_goes(db, hq_db_url):
    clock = Clock()
    a, b = nodes(hq_db_url, [], clock)
    try:
        assert a.leadership_round() and not b.leadership_round()
        clock.now += dt.timedelta(seconds=10)
        assert a.leadership_round() and not b.leadership_round()  # renewed, still a's
        # the leader dies: on PostgreSQL its session (and lock) ends; on SQLite its
        # lease is no longer renewed and runs out
        a.leadership.release()
        clock.now += dt.timedelta(seconds=31)
        assert b.leadership_round() is True
        assert SchedulerState.get_by_id("leader").holder == "node-1"
    finally:
        for node in (a, b):
            node.leadership.release()
            node.db.close()


def test_a_failing_job_is_logged_and_the_next_one_runs(db, hq_db_url, caplog):
    def boom(ctx):  # noqa: ANN001, ANN202
        raise RuntimeError("job broke")

    ran = []
    broken = Job("broken", dt.timedelta(minutes=1), boom)
    fine = Job("fine", dt.timedelta(minutes=1), lambda ctx: ran.append(1))
    (a,) = nodes(hq_db_url, [broken, fine], Clock(), count=1)
    try:
        assert a.leadership_round()
        assert a.run_job(broken) is True and a.run_job(fine) is True
        assert ran == [1] and "job broken failed" in caplog.text
        # each run is recorded: the failure with its error, the other as done
        runs = {r.job: r for r in JobRun.select()}
        assert runs["broken"].status == "failed"
        assert runs["broken"].error == "RuntimeError: job broke"
        assert (runs["fine"].status, runs["fine"].node) == ("ok", "node-0")
        assert runs["fine"].finished_at is not None
    finally:
        a.leadership.release()
        a.db.close()


def test_the_hq_ledger_job_opens_an_exception_for_a_balance_off_its_ledger(db, hq_db_url):
    from hq.models import Member

    Member.create(
        id="m-1",
        phone="13800000000",
        name="张三",
        created_at=T0,
        updated_at=T0,
        registered_store="S001",
        sv_principal=500,
    )  # a balance no ledger entry explains
    (job,) = [j for j in JOBS if j.name == "hq-ledger-check"]
    (a,) = nodes(hq_db_url, [job], Clock(), count=1)
    try:
        assert a.leadership_round() and a.run_job(job)
        opened = HqException.select().where(HqException.member_id == "m-1")
        assert [e.kind for e in opened] == ["ledger_mismatch"]
    finally:
        a.leadership.release()
        a.db.close()


# ---- real processes: kill the leader ------------------------------------------------


def start_node(url: str, node: str, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hq.cli",
                "--database-url",
                url,
                "serve-scheduler",
                "--node-id",
                node,
                "--poll",
                "0.2",
                "--lease",
                "1",
                "--every",
                "hq-ledger-check=0.5",
                "--every",
                "digest-sweep=3600",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


def test_two_scheduler_processes_one_runs_and_the_other_takes_over_when_it_is_killed(
    db, hq_db_url, tmp_path
):
    def job_row() -> SchedulerState | None:
        """the hq-ledger-check job's row"""
        with db.connection_context():
            return SchedulerState.get_or_none(SchedulerState.name == "job:hq-ledger-check")

    first = start_node(hq_db_url, "first", tmp_path / "first.log")
    procs = [first]
    try:
        wait_until(lambda: (r := job_row()) is not None and r.holder == "first" and r.runs >= 1, 30)
        second = start_node(hq_db_url, "second", tmp_path / "second.log")
        procs.append(second)
        second_log = tmp_path / "second.log"
        wait_until(lambda: "node second stands by" in second_log.read_text(), 30)
        start = job_row().runs
        wait_until(lambda: job_row().runs >= start + 3, 30)
        assert job_row().holder == "first"
        standby = second_log.read_text()
        assert "running" not in standby and "node second leads" not in standby

        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        wait_until(lambda: (r := job_row()).holder == "second" and r.runs >= start + 5, 30)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)
    second_says = second_log.read_text()
    # the second ran nothing until it led, and led only after the first was killed
    assert second_says.index("node second leads") < second_says.index("running hq-ledger-check")
    assert "node first leads" in (tmp_path / "first.log").read_text()
    assert second.returncode == 0


def test_a_run_is_recorded_with_what_the_job_counted(db, hq_db_url):
    job = Job("counter", dt.timedelta(hours=1), lambda ctx: {"expired_lots": 3, "members": 2})
    (a,) = nodes(hq_db_url, [job], Clock(), count=1)
    try:
        assert a.leadership_round() and a.run_job(job)
        (run,) = JobRun.select().where(JobRun.job == "counter")
        assert (run.status, run.counts, run.error) == (
            "ok",
            {"expired_lots": 3, "members": 2},
            None,
        )
    finally:
        a.leadership.release()
        a.db.close()


@pytest.mark.parametrize(
    ("zone", "utc", "day"),
    [
        # 23:30 UTC is already the next day in Shanghai (UTC+8), not yet in London
        ("Asia/Shanghai", dt.datetime(2026, 12, 31, 23, 30), dt.date(2027, 1, 1)),
        ("Europe/London", dt.datetime(2026, 12, 31, 23, 30), dt.date(2026, 12, 31)),
        ("Asia/Shanghai", dt.datetime(2026, 12, 31, 15, 59), dt.date(2026, 12, 31)),
    ],
)
def test_nightly_jobs_run_for_the_chains_business_day(db, zone, utc, day):
    ctx = JobContext(db, HqConfig(timezone=zone), lambda: utc)
    assert ctx.today() == day


def test_an_unknown_time_zone_is_refused_by_name():
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="Asia/Shangai"):
        HqConfig(timezone="Asia/Shangai").validate()


def test_an_operator_runs_a_job_now_and_sees_the_runs(tmp_path):
    """``huiyuan-hq run-job`` runs one job here and records it; ``job-runs`` lists the runs
    with their counts, newest first."""
    import json

    from click.testing import CliRunner

    from hq.cli import main

    base = ["--database-url", f"sqlite:///{tmp_path / 'hq.sqlite3'}"]
    runner = CliRunner()
    assert runner.invoke(main, [*base, "init-db"]).exit_code == 0
    for name in ("points-expiry", "tier-evaluation"):
        ran = runner.invoke(main, [*base, "run-job", name])
        assert ran.exit_code == 0, ran.output
        assert json.loads(ran.output.splitlines()[-1])["status"] == "ok"
    listed = runner.invoke(main, [*base, "job-runs", "--json"])
    assert listed.exit_code == 0, listed.output
    runs = json.loads(listed.output)
    assert [r["job"] for r in runs] == ["tier-evaluation", "points-expiry"]
    assert runs[1]["counts"] == {"expired_lots": 0, "members": 0}
    only = json.loads(
        runner.invoke(main, [*base, "job-runs", "--job", "points-expiry", "--json"]).output
    )
    assert [r["job"] for r in only] == ["points-expiry"]
    unknown = runner.invoke(main, [*base, "run-job", "no-such-job"])
    assert unknown.exit_code == 2 and "no-such-job" in unknown.output
