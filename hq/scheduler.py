"""``huiyuan-hq serve-scheduler``: HQ's periodic jobs, run by one node at a time.

The timetable is ``JOBS``; each job's logic lives with its capability. Adding a job is
one line there: ``Job("name", dt.timedelta(...), function)``, where the function takes
a ``JobContext`` (database, configuration, clock).

Several HQ nodes may run a scheduler (for availability); one leads and runs the jobs:

* PostgreSQL: the leader holds a session advisory lock on a connection of its own. If
  the leader dies, PostgreSQL drops its connection and the lock with it, and the next
  standby to try (every ``poll`` seconds) takes over.
* SQLite (one machine): a lease row (``scheduler_state`` ``leader``) that the leader
  renews every ``poll`` seconds and a standby takes once it has not been renewed for
  ``lease`` seconds.

Beneath leadership, every run is claimed in the database first: a job's row is moved
to "started now" only if its last start is at least half an interval ago (one UPDATE,
compare and set), so even two nodes that both believed they led (a leader paused past
its lease) cannot run one slot of a job twice, and a new leader picks up the timetable
where the old one left it instead of running everything at once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click
import peewee as pw
from playhouse.db_url import connect

from core.errors import HuiyuanError
from core.systemd import LoopPulse, service_ready
from hq.config import HqConfig
from hq.followups import tasks as followup_tasks  # -- follow-ups (issue 14)
from hq.marketing import lists as marketing_lists  # -- marketing: the monthly lists
from hq.marketing import sending as campaign_sending  # -- campaigns: the send loop
from hq.models import (
    JobRun,
    SchedulerState,
    bind,
    check_schema,
    is_postgres,
    open_database,
    utcnow,
)
from hq.programme import cards as programme_cards  # -- cards: card-expiry
from hq.programme import tiers
from hq.programme import upkeep as upkeep_jobs  # the upkeep part's job (profile-rescore)
from hq.programme.points import points_expiry_job  # points (docs/programme/points.md)
from hq.reports import rollup as reports_rollup  # -- reports: the KPIs' rollup

log = logging.getLogger("hq.scheduler")

LEADER = "leader"
LEADER_LOCK_KEY = 0x68795F7363686564  # "hy_sched": the PostgreSQL advisory lock
NEVER = dt.datetime(1970, 1, 1)


@dataclass
class JobContext:
    db: pw.Database
    config: HqConfig
    clock: Callable[[], dt.datetime] = utcnow

    def today(self) -> dt.date:
        """The chain's business day now (``HqConfig.timezone``): what a nightly programme
        job runs for. Such a job is idempotent per day, so a re-run after a crash, or a
        second node's run, changes nothing more."""
        return self.config.business_day(self.clock())


@dataclass(frozen=True)
class Job:
    name: str
    every: dt.timedelta
    # returns what it did as counts ({"expired_lots": 12, ...}), recorded in ``JobRun``
    run: Callable[[JobContext], dict[str, int] | None]


# ---- the jobs ---------------------------------------------------------------------


def check_hq_ledger(ctx: JobContext) -> dict[str, int]:
    """HQ's balances against HQ's ledger (hq/reconcile.py), whether or not a store reports."""
    from hq.reconcile import check_hq_ledger as check

    diffs = check(ctx.db, ctx.clock(), force=True) or []
    log.info("HQ ledger checked: %d differences", len(diffs))
    return {"differences": len(diffs)}


def ask_quiet_stores_for_digests(ctx: JobContext) -> dict[str, int]:
    """Ask every online store whose last balance digest is older than an hour (or that has
    sent none) for a fresh one: a store whose own timer is off still gets reconciled."""
    from core.protocol import down_topic
    from hq.cli import publish_down
    from hq.models import ReconcileRecord, Store
    from hq.reconcile import DIGEST_RECORD, digest_requests

    since = ctx.clock() - dt.timedelta(hours=1)
    online = [s.code for s in Store.select(Store.code).where(Store.online == True)]  # noqa: E712
    fresh = {
        r.name.removeprefix(DIGEST_RECORD.format(""))
        for r in ReconcileRecord.select(ReconcileRecord.name).where(
            ReconcileRecord.name.in_([DIGEST_RECORD.format(c) for c in online])
            & (ReconcileRecord.at >= since)
        )
    }
    quiet = sorted(set(online) - fresh)
    if not quiet:
        return {"asked": 0}
    requests = digest_requests(quiet)
    messages = [(down_topic(c, "digestreq"), r.to_dict()) for c, r in requests.items()]
    sent = publish_down(ctx.config, messages)
    log.info(
        "asked %d quiet stores for a digest (%s)", len(quiet), "sent" if sent else "broker away"
    )
    return {"asked": len(quiet) if sent else 0}


def rewrite_crl(ctx: JobContext) -> dict[str, int]:
    """Rewrite the broker's CRL (hq/pki.py) so it never expires; the broker host's
    huiyuan-broker-crl.path reloads Mosquitto when it changes."""
    from hq.pki import crl_path, rewrite_crl

    listed = rewrite_crl(ctx.config, ctx.clock())
    log.info("CRL %s rewritten: %d revoked certificates", crl_path(ctx.config), listed)
    return {"revoked": listed}


JOBS: list[Job] = [
    Job("hq-ledger-check", dt.timedelta(minutes=5), check_hq_ledger),
    Job("digest-sweep", dt.timedelta(minutes=15), ask_quiet_stores_for_digests),
    Job("crl-rewrite", dt.timedelta(days=1), rewrite_crl),
    # ---- the programme's jobs (issue 11): each job's logic in hq/programme/, one block
    # per part; nightly ones run for ``ctx.today()`` and are idempotent per day
    # -- tiers (tiers, growth value, member day)
    Job("tier-evaluation", dt.timedelta(days=1), tiers.tier_evaluation_job),
    # -- cards (card types as products, card replacement)
    Job("card-expiry", dt.timedelta(days=1), programme_cards.expire_cards),
    # -- points (points rules, gifts, referral)
    Job("points-expiry", dt.timedelta(days=1), points_expiry_job),
    # -- coupons (coupons)
    # -- upkeep (stored value, profile, password)
    Job("profile-rescore", dt.timedelta(days=1), upkeep_jobs.rescore_profiles_job),
    # -- staff (maintainers, categories and cost)
    # ---- end of the programme's jobs
    # -- follow-ups (issue 14: tasks from the chain's rules, overdue marking)
    Job("followups", dt.timedelta(hours=6), followup_tasks.make_tasks_job),
    # -- marketing (issue 14: the monthly and weekly lists on their day)
    Job("marketing-lists", dt.timedelta(hours=1), marketing_lists.lists_job),
    # -- campaigns (issue 14: due messages sent, delivery reports read; docs/campaigns.md)
    Job("campaigns", dt.timedelta(minutes=1), campaign_sending.send_job),
    # -- reports (the distinct-member KPIs of months, quarters, years: hq/reports/rollup.py)
    Job("reports-rollup", dt.timedelta(minutes=30), reports_rollup.rollup_job),
]


# ---- leadership ---------------------------------------------------------------------


class AdvisoryLockLeadership:
    """PostgreSQL: leader while holding a session advisory lock on our own connection."""

    def __init__(self, url: str, node: str) -> None:
        self.url = url
        self.node = node
        self.conn: pw.Database | None = None

    def hold(self, db: pw.Database, now: dt.datetime) -> bool:
        """Leader after this call? Takes the lock if free; checks our connection if held."""
        if self.conn is not None:
            try:
                self.conn.execute_sql("SELECT 1")
                return True
            except pw.DatabaseError:
                log.warning("lost the scheduler lock's connection; trying again")
                self.release()
        # one connection shared by whatever thread runs the next round
        conn = connect(self.url, thread_safe=False)
        try:
            got = conn.execute_sql("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,))
            if not got.fetchone()[0]:
                conn.close()
                return False
        except pw.DatabaseError:
            conn.close()
            raise
        self.conn = conn
        _record_leader(db, self.node, now)
        return True

    def release(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()  # the lock goes with the session
            except pw.DatabaseError:
                log.warning("closing the scheduler lock's connection failed", exc_info=True)
            self.conn = None


class LeaseLeadership:
    """SQLite: leader while our lease row is renewed within ``lease``."""

    def __init__(self, node: str, lease: dt.timedelta) -> None:
        self.node = node
        self.lease = lease

    def hold(self, db: pw.Database, now: dt.datetime) -> bool:
        with db.atomic():
            SchedulerState.insert(name=LEADER, holder="", at=NEVER).on_conflict_ignore().execute(db)
            taken = (
                SchedulerState.update(holder=self.node, at=now + self.lease)
                .where(
                    (SchedulerState.name == LEADER)
                    & ((SchedulerState.holder == self.node) | (SchedulerState.at < now))
                )
                .execute(db)
            )
        return taken == 1

    def release(self) -> None:
        """The lease runs out by itself; a clean stop could hand it over sooner, but
        nothing depends on that."""


def _record_leader(db: pw.Database, node: str, now: dt.datetime) -> None:
    with db.atomic():
        SchedulerState.insert(name=LEADER, holder=node, at=now).on_conflict(
            conflict_target=[SchedulerState.name],
            update={SchedulerState.holder: node, SchedulerState.at: now},
        ).execute(db)


# ---- the scheduler ------------------------------------------------------------------


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Scheduler:
    config: HqConfig
    db: pw.Database
    jobs: list[Job] = field(default_factory=lambda: list(JOBS))
    node: str = field(default_factory=default_node_id)
    poll: float = 5.0
    lease: float = 30.0
    clock: Callable[[], dt.datetime] = utcnow
    leading: bool = False
    pulse: LoopPulse = field(default_factory=LoopPulse)

    def __post_init__(self) -> None:
        bind(self.db, create=False)
        check_schema(self.db)
        self.leadership: AdvisoryLockLeadership | LeaseLeadership
        if is_postgres(self.db):
            self.leadership = AdvisoryLockLeadership(self.config.database_url, self.node)
        else:
            self.leadership = LeaseLeadership(self.node, dt.timedelta(seconds=self.lease))
        self._round_lock = threading.Lock()
        self._said: bool | None = None  # what the log last said about our leadership
        self._timetable: Any = None  # apscheduler's, while serve() runs

    def leadership_round(self) -> bool:
        """Take or keep the lead (or find another node has it); True while we lead."""
        with self._round_lock:
            self.pulse.tick()
            try:
                with self.db.connection_context():
                    leading = self.leadership.hold(self.db, self.clock())
            except pw.DatabaseError:
                log.warning("scheduler leadership round failed", exc_info=True)
                leading = False
            if leading != self._said:
                log.info("node %s %s", self.node, "leads" if leading else "stands by")
                self._said = leading
            if leading and not self.leading and self._timetable is not None:
                # just took over: look at every job now (its claim says whether it is due)
                for job in self.jobs:
                    self._timetable.modify_job(job.name, next_run_time=dt.datetime.now(dt.UTC))
            self.leading = leading
            return leading

    def claim(self, job: Job, now: dt.datetime) -> bool:
        """Compare and set: this slot of ``job`` is ours to run, or already run."""
        with self.db.atomic():
            SchedulerState.insert(name=f"job:{job.name}", at=NEVER).on_conflict_ignore().execute(
                self.db
            )
            claimed = (
                SchedulerState.update(holder=self.node, at=now, runs=SchedulerState.runs + 1)
                .where(
                    (SchedulerState.name == f"job:{job.name}")
                    & (SchedulerState.at <= now - job.every / 2)
                )
                .execute(self.db)
            )
        return claimed == 1

    def run_job(self, job: Job) -> bool:
        """Run ``job`` if we lead and its slot is unclaimed; True if it ran."""
        if not self.leading:
            return False
        with self.db.connection_context():
            if not self.claim(job, self.clock()):
                return False
            log.info("running %s", job.name)
            record_run(self.db, job, self.node, JobContext(self.db, self.config, self.clock))
        return True

    def serve(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set: apscheduler drives the leadership rounds and the jobs."""
        from apscheduler.schedulers.background import BackgroundScheduler

        scheduler = BackgroundScheduler(timezone=dt.UTC)
        scheduler.add_job(
            self.leadership_round,
            "interval",
            seconds=self.poll,
            id="leadership",
            max_instances=1,
            coalesce=True,
            next_run_time=dt.datetime.now(dt.UTC),
        )
        for job in self.jobs:
            scheduler.add_job(
                self.run_job,
                "interval",
                args=(job,),
                seconds=job.every.total_seconds(),
                id=job.name,
                max_instances=1,
                coalesce=True,
                next_run_time=dt.datetime.now(dt.UTC),  # a due job runs at start
            )
        scheduler.start()
        self._timetable = scheduler
        watchdog = service_ready([self.pulse.advanced], f"scheduler node {self.node}")
        try:
            stop.wait()
        finally:
            watchdog.stop()
            scheduler.shutdown(wait=True)
            self.leadership.release()


def record_run(db: pw.Database, job: Job, node: str, ctx: JobContext) -> JobRun:
    """Run ``job`` once and record it (``JobRun``): started, then ok with its counts or
    failed with the error. A failure is logged and recorded, never raised: the next slot
    runs the job again, and a failing job must not stop the others."""
    run = JobRun.create(job=job.name, node=node, started_at=utcnow(), status="running")
    try:
        counts = job.run(ctx) or {}
    except Exception as exc:
        log.exception("job %s failed", job.name)
        run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"[:2000]
    else:
        run.status, run.counts = "ok", dict(counts)
        log.info("job %s done: %s", job.name, counts)
    run.finished_at = utcnow()
    run.save()
    return run


def serve_scheduler(
    config: HqConfig, node: str, poll: float, lease: float, every: dict[str, float]
) -> None:
    """``huiyuan-hq serve-scheduler``; SIGTERM or SIGINT stop it."""
    jobs = [
        Job(j.name, dt.timedelta(seconds=every[j.name]), j.run) if j.name in every else j
        for j in JOBS
    ]
    unknown = set(every) - {j.name for j in JOBS}
    if unknown:
        raise ValueError(f"no such job: {', '.join(sorted(unknown))}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    scheduler = Scheduler(
        config, open_database(config.database_url), jobs, node or default_node_id(), poll, lease
    )
    scheduler.serve(stop)


@click.command("serve-scheduler")
@click.option("--node-id", default="", help="this node's name in the leader row (default host-pid)")
@click.option(
    "--poll",
    type=click.FloatRange(0.05, 600),
    default=5.0,
    show_default=True,
    help="seconds between leadership rounds (a standby takes over within about this)",
)
@click.option(
    "--lease",
    type=click.FloatRange(0.1, 3600),
    default=30.0,
    show_default=True,
    help="SQLite only: seconds a leader's lease lasts unless renewed",
)
@click.option(
    "--every",
    "every",
    multiple=True,
    metavar="JOB=SECONDS",
    help="run JOB at another interval (repeatable); jobs: " + ", ".join(j.name for j in JOBS),
)
@click.pass_context
def serve_scheduler_command(
    ctx: click.Context, node_id: str, poll: float, lease: float, every: tuple[str, ...]
) -> None:
    """Run HQ's periodic jobs; several nodes may run it, one leads (see docs/operations.md)."""
    intervals: dict[str, float] = {}
    for item in every:
        name, _, seconds = item.partition("=")
        try:
            intervals[name] = float(seconds)
        except ValueError:
            raise click.BadParameter(
                f"{item!r}: expected JOB=SECONDS", param_hint="--every"
            ) from None
    try:
        serve_scheduler(ctx.obj["config"], node_id, poll, lease, intervals)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--every") from None
    except HuiyuanError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(exc.code)


@click.command("job-runs")
@click.option("--job", default=None, help="only this job")
@click.option("--limit", type=click.IntRange(1, 10000), default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def job_runs_command(ctx: click.Context, job: str | None, limit: int, as_json: bool) -> None:
    """The scheduled jobs' latest runs (newest first): when, where, ok or failed, counts."""
    config: HqConfig = ctx.obj["config"]
    db = open_database(config.database_url)
    with bind(db, create=False):
        query = JobRun.select().order_by(JobRun.started_at.desc(), JobRun.id.desc())
        if job:
            query = query.where(JobRun.job == job)
        rows = [
            {
                "job": r.job,
                "node": r.node,
                "started_at": r.started_at.isoformat(),
                "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                "status": r.status,
                "counts": r.counts,
                "error": r.error,
            }
            for r in query.limit(limit)
        ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("(none)")
    for r in rows:
        counts = " ".join(f"{k}={v}" for k, v in (r["counts"] or {}).items())
        click.echo(
            f"{r['started_at']}  {r['job']}  {r['status']}  {r['node']}  {counts or r['error'] or ''}"
        )


@click.command("run-job")
@click.argument("name", type=click.Choice([j.name for j in JOBS]))
@click.pass_context
def run_job_command(ctx: click.Context, name: str) -> None:
    """Run one job now, here, and record the run (after a failure, or to catch up): every
    job is safe to run again, the nightly ones are idempotent for the business day."""
    config: HqConfig = ctx.obj["config"]
    (job,) = [j for j in JOBS if j.name == name]
    db = open_database(config.database_url)
    with bind(db, create=False):
        check_schema(db)
        run = record_run(db, job, f"{default_node_id()} (run-job)", JobContext(db, config))
    click.echo(
        json.dumps(
            {"job": name, "status": run.status, "counts": run.counts, "error": run.error},
            ensure_ascii=False,
        )
    )
    if run.status != "ok":
        sys.exit(1)
