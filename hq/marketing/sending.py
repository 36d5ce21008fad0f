"""Sending campaigns (docs/campaigns.md, "Sending"): the crash-safe send loop, delivery
reports, the scheduler's ``campaigns`` job.

``send_due`` works in batches, each in three steps:

1. claim (one commit): the due rows (``pending``, or ``sending`` left by a run that died,
   whose lease has run out) are read, each member's consent, unsubscription, contact and
   the per-member cap across campaigns checked in bulk for the batch; those that may not
   be sent become ``skipped`` with the reason, the others ``sending`` with ``attempts``
   one more and a lease (``next_at`` = now + ``LEASE``).
2. send: a small thread pool hands each message to its channel with the row's
   idempotency key (``c<campaign>:<member>:<channel>``), the same on every retry; while
   it does, the next batch is claimed.
3. record (one commit): ``sent`` (and the benefit, with the member's first message) or
   back to ``pending`` after a backoff (``BACKOFF_MINUTES``) or ``failed`` (refused at
   once, anything else after ``MAX_ATTEMPTS``).

A run killed between 1 and 3 leaves rows ``sending``; once their lease is out the next
run sends them again with the same key, and the gateway, having seen the key, does not
send twice: nobody is messaged twice and nobody is missed. In the chain's quiet hours
nothing is sent: what is due waits for the end of them.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import peewee as pw

from hq import privacy
from hq.changes import ChangeSet, flush_changes
from hq.channels import ChannelSendFailed as SendFailed
from hq.channels.registry import channels_from_config
from hq.channels.wechat import openids_of
from hq.ledger import survivors
from hq.marketing import campaigns as camp
from hq.marketing import settings as marketing_settings
from hq.models import (
    Campaign,
    CampaignSend,
    CouponTemplate,
    Member,
    Store,
    is_postgres,
)
from hq.portal.links import page_url, unsubscribe_url
from hq.privacy import MEMBER_SOURCE

log = logging.getLogger("hq.marketing.sending")

BATCH = 200  # rows claimed at once
WORKERS = 8  # messages in flight at once
LEASE = dt.timedelta(minutes=10)  # a row ``sending`` longer than this is sent again
BACKOFF_MINUTES = (1, 2, 4, 8, 16)  # after the 1st..5th failed attempt
MAX_ATTEMPTS = 6
RETRYABLE = ("failed", "timeout", "unreachable")  # "refused" is final
# the member's own "no" (the unsubscribe page, an SMS reply: hq/portal/unsubscribe.py)
UNSUBSCRIBE_SOURCES = (MEMBER_SOURCE,)
POLL_MAX = 10_000  # sent rows asked about per poll
STATUS_BATCH = 100  # gateway ids per ``statuses`` call


def backoff(attempts: int) -> dt.timedelta:
    """How long a message waits after its ``attempts``-th failed attempt."""
    return dt.timedelta(minutes=BACKOFF_MINUTES[min(attempts, len(BACKOFF_MINUTES)) - 1])


# ---- quiet hours ------------------------------------------------------------------------


def quiet_until(now: dt.datetime, zone: Any, start_hour: int, end_hour: int) -> dt.datetime | None:
    """When the quiet hours around ``now`` (naive UTC) end, as naive UTC; None when ``now``
    is outside them. Hours are the chain's local time; start == end: no quiet hours."""
    local = now.replace(tzinfo=dt.UTC).astimezone(zone)
    h = local.hour
    if start_hour == end_hour:
        return None
    inside = (
        (start_hour <= h < end_hour) if start_hour < end_hour else (h >= start_hour or h < end_hour)
    )
    if not inside:
        return None
    end = local.replace(hour=end_hour, minute=0, second=0, microsecond=0)
    if end <= local:
        end = (local + dt.timedelta(days=1)).replace(
            hour=end_hour, minute=0, second=0, microsecond=0
        )
    # a wall-clock hour: rebuild it in the zone so a DST change lands on the right instant
    end = dt.datetime(end.year, end.month, end.day, end_hour, tzinfo=zone)
    return end.astimezone(dt.UTC).replace(tzinfo=None)


# ---- the batch --------------------------------------------------------------------------


@dataclass
class Message:
    row_id: int
    campaign: int
    member_id: str
    channel: str
    key: str
    attempts: int  # after this claim
    to: str = ""
    text: str = ""
    outcome: str = ""  # sent | the failure kind
    gateway_id: str = ""
    error: str = ""


def _active_campaigns() -> dict[int, Campaign]:
    rows = Campaign.select().where(Campaign.status.in_(("scheduled", "sending")))
    return {c.id: c for c in rows}


def _due(
    db: pw.Database, channels: list[str], active: list[int], now: dt.datetime, n: int
) -> list[CampaignSend]:
    S = CampaignSend
    pending = (S.status == "pending") & S.campaign.in_(active) if active else (S.id < 0)
    query = (
        S.select()
        .where((pending | (S.status == "sending")) & (S.next_at <= now) & S.channel.in_(channels))
        .order_by(S.next_at, S.id)
        .limit(n)
    )
    if is_postgres(db):
        query = query.for_update(skip_locked=True)
    return list(query)


def _recent_campaigns(
    ids: list[str], batch_rows: list[int], since: dt.datetime
) -> dict[str, set[int]]:
    """Per member, the campaigns that messaged them since ``since`` (sent or delivered),
    or are messaging them now (``sending`` rows not in this batch)."""
    S = CampaignSend
    rows = (
        S.select(S.member_id, S.campaign)
        .where(
            S.member_id.in_(ids)
            & (
                (S.status.in_(("sent", "delivered")) & (S.sent_at >= since))
                | ((S.status == "sending") & S.id.not_in(batch_rows))
            )
        )
        .distinct()
        .tuples()
    )
    out: dict[str, set[int]] = defaultdict(set)
    for mid, campaign in rows:
        out[mid].add(campaign)
    return out


def _why_not(
    row: CampaignSend,
    member: Member | None,
    consent: dict[str, dict[str, tuple[bool, str]]],
    openids: dict[str, str],
) -> str:
    """The reason a row may not be sent now ("" if it may)."""
    if member is None or member.status == "erased":
        return "consent"
    granted, source = consent[row.channel].get(member.id, (False, ""))
    if not granted:
        return "unsubscribed" if source in UNSUBSCRIBE_SOURCES else "consent"
    if row.channel == "sms" and not member.phone:
        return "no_contact"
    if row.channel == "wechat" and not openids.get(member.id):
        return "no_contact"
    return ""


class Renderer:
    """A message's text: placeholders filled, and every SMS ends with the unsubscribe link."""

    def __init__(self, config: Any, now: dt.datetime) -> None:
        self.config, self.now = config, now
        self.stores = dict(Store.select(Store.code, Store.name).tuples())
        self.coupons: dict[str, str] = {}

    def coupon(self, template_id: str) -> str:
        if template_id not in self.coupons:
            row = CouponTemplate.get_or_none(CouponTemplate.id == template_id)
            self.coupons[template_id] = (
                camp.CouponRules.from_dict(row.data).describe() if row is not None else ""
            )
        return self.coupons[template_id]

    def text(self, campaign: Campaign, member: Member, channel: str) -> str:
        fields = camp.placeholders_in(campaign.text)
        values = {
            "name": (member.name or "会员") if "name" in fields else "",
            "coupon": self.coupon(campaign.benefit["coupon"]) if "coupon" in fields else "",
            "points": str(campaign.benefit.get("points", "")),
            "link": page_url(self.config, member.id, self.now) if "link" in fields else "",
            "store": self.stores.get(member.registered_store or "", "")
            if "store" in fields
            else "",
        }
        text = campaign.text.format(**values)
        if channel == "sms":
            text += f" 退订: {unsubscribe_url(self.config, member.id, self.now)}"
        return text


def _claim(
    db: pw.Database,
    channels: list[str],
    now: dt.datetime,
    values: dict[str, int],
    n: int,
    renderer: Renderer,
) -> tuple[list[Message], dict[str, int]]:
    """Step 1, one commit: the batch's messages to send, and what was skipped and why."""
    skipped: dict[str, int] = defaultdict(int)
    lock = {} if is_postgres(db) else {"lock_type": "IMMEDIATE"}  # one claimer at a time
    with db.atomic(**lock):
        active = _active_campaigns()
        rows = _due(db, channels, list(active), now, n)
        if not rows:
            return [], {}
        ids = sorted({r.member_id for r in rows})
        members = survivors(ids)  # a merged member's survivor: whose phone and name count
        live = sorted({m.id for m in members.values()})  # consent and contact: the survivor's
        consent = {ch: privacy.consent_answers(live, ch) for ch in {r.channel for r in rows}}
        openids: dict[str, str] = {}
        if any(r.channel == "wechat" for r in rows):
            openids = openids_of(live)
        since = now - dt.timedelta(days=values["cap_days"])
        recent = _recent_campaigns(ids, [r.id for r in rows], since)
        campaigns_of = {**active, **_campaigns_of_leftovers(rows, active)}
        taken = _survivors_reached(rows, members)
        messages: list[Message] = []
        skips: dict[str, list[int]] = defaultdict(list)
        for r in rows:
            member = members.get(r.member_id)
            reason = _why_not(r, member, consent, openids)
            if member is not None and member.id != r.member_id:
                target = (r.campaign, member.id, r.channel)
                reason = reason or ("merged" if target in taken else "")
                taken.add(target)
            if not reason:
                seen = recent[r.member_id]
                if r.campaign not in seen and len(seen) >= values["cap_campaigns"]:
                    reason = "cap"
                else:
                    seen.add(r.campaign)
            if reason or member is None:  # (_why_not refuses a missing member)
                skips[reason].append(r.id)
                skipped[reason] += 1
                continue
            m = Message(r.id, r.campaign, r.member_id, r.channel, r.key, r.attempts + 1)
            m.to = member.phone if r.channel == "sms" else openids[member.id]
            m.text = renderer.text(campaigns_of[r.campaign], member, r.channel)
            messages.append(m)
        S = CampaignSend
        for reason, row_ids in skips.items():
            S.update(status="skipped", reason=reason, updated_at=now).where(
                S.id.in_(row_ids)
            ).execute()
        if messages:
            S.update(
                status="sending", attempts=S.attempts + 1, next_at=now + LEASE, updated_at=now
            ).where(S.id.in_([m.row_id for m in messages])).execute()
            Campaign.update(status="sending").where(
                Campaign.id.in_({m.campaign for m in messages}) & (Campaign.status == "scheduled")
            ).execute()
    return messages, dict(skipped)


def _survivors_reached(
    rows: list[CampaignSend], members: dict[str, Member]
) -> set[tuple[int, str, str]]:
    """(campaign, member, channel) already reached or to be reached directly, for the
    members that ids in the batch were merged into since launch: the survivor's own row,
    or another merged id's message already handed over. A merged id's row is then
    skipped (``merged``): one member, one message per campaign and channel."""
    S = CampaignSend
    merged = [r for r in rows if r.member_id in members and members[r.member_id].id != r.member_id]
    if not merged:
        return set()
    survivors = {members[r.member_id].id for r in merged}
    own = {camp.send_key(r.campaign, members[r.member_id].id, r.channel) for r in merged}
    taken = {
        (c, m, ch)
        for c, m, ch in S.select(S.campaign, S.member_id, S.channel).where(S.key.in_(own)).tuples()
    }
    via = (
        S.select(S.campaign, Member.merged_into, S.channel)
        .join(Member, on=(Member.id == S.member_id))
        .where(
            Member.merged_into.in_(survivors)
            & S.campaign.in_({r.campaign for r in merged})
            & S.status.in_(("sending", "sent", "delivered"))
            & S.id.not_in([r.id for r in rows])
        )
        .tuples()
    )
    return taken | set(via)


def _campaigns_of_leftovers(
    rows: list[CampaignSend], active: dict[int, Campaign]
) -> dict[int, Campaign]:
    """The campaigns of ``sending`` rows left behind in a campaign no longer active
    (cancelled after they were handed over): they are sent again to learn the answer."""
    missing = {r.campaign for r in rows} - set(active)
    return {c.id: c for c in Campaign.select().where(Campaign.id.in_(missing))} if missing else {}


def _send_one(channel: Any, m: Message) -> Message:
    try:
        sent = channel.send(m.to, m.text, m.key)
    except SendFailed as exc:
        m.outcome, m.error = exc.kind, exc.message[:200]
        return m
    except Exception as exc:  # an adapter's bug must not lose the batch's other answers
        log.exception("campaign send %s: %s", m.key, type(exc).__name__)
        m.outcome, m.error = "failed", f"{type(exc).__name__}"[:200]
        return m
    m.outcome, m.gateway_id = "sent", str(getattr(sent, "gateway_id", "") or "")[:64]
    return m


def _record(
    db: pw.Database, messages: list[Message], now: dt.datetime, today: dt.date
) -> dict[str, int]:
    """Step 3, one commit: each answer, and the benefit with a member's first message."""
    counts: dict[str, int] = defaultdict(int)
    S = CampaignSend
    sent_by_campaign: dict[int, list[str]] = defaultdict(list)
    sent = [m for m in messages if m.outcome == "sent"]
    with db.atomic():
        # the sent rows in one statement (each row's gateway id by a CASE on its id): a
        # batch's answers are one round trip, not one per message
        for first in range(0, len(sent), 500):
            chunk = sent[first : first + 500]
            S.update(
                status="sent", sent_at=now, last_error="", updated_at=now,
                gateway_id=pw.Case(S.id, [(m.row_id, m.gateway_id) for m in chunk]),
            ).where(S.id.in_([m.row_id for m in chunk])).execute()  # fmt: skip
        for m in messages:
            if m.outcome == "sent":
                sent_by_campaign[m.campaign].append(m.member_id)
                counts["sent"] += 1
            elif m.outcome in RETRYABLE and m.attempts < MAX_ATTEMPTS:
                S.update(
                    status="pending", next_at=now + backoff(m.attempts), last_error=m.error,
                    updated_at=now,
                ).where(S.id == m.row_id).execute()  # fmt: skip
                counts["retry"] += 1
            else:
                S.update(status="failed", last_error=m.error, updated_at=now).where(
                    S.id == m.row_id
                ).execute()
                counts["failed"] += 1
        changes = ChangeSet()
        for campaign_id, member_ids in sent_by_campaign.items():
            campaign = camp.get(campaign_id)
            counts["benefits"] += camp.give_benefits(
                db, campaign, member_ids, "scheduler", now, today, changes
            )
        flush_changes(db, changes, now)
    return dict(counts)


def _finish(db: pw.Database, now: dt.datetime) -> int:
    """Campaigns past their send time with nothing pending or sending: done."""
    S = CampaignSend
    open_rows = S.select(S.id).where(
        (S.campaign == Campaign.id) & S.status.in_(("pending", "sending"))
    )
    return (
        Campaign.update(status="done", finished_at=now)
        .where(
            Campaign.status.in_(("scheduled", "sending"))
            & (Campaign.send_at <= now)
            & ~pw.fn.EXISTS(open_rows)
        )
        .execute()
    )


def defer_quiet(db: pw.Database, now: dt.datetime, until: dt.datetime) -> int:
    """In quiet hours: everything due waits for their end (one UPDATE)."""
    S = CampaignSend
    return (
        S.update(next_at=until, updated_at=now)
        .where(S.status.in_(("pending", "sending")) & (S.next_at <= now))
        .execute()
    )


def send_due(
    db: pw.Database,
    channels: dict[str, Any],
    now: dt.datetime,
    settings: dict[str, int] | None = None,
    limit: int = 1000,
    *,
    config: Any = None,
) -> dict[str, int]:
    """Send what is due at ``now`` through ``channels`` ({"sms": ..., "wechat": ...}), at
    most ``limit`` rows (sent, retried, failed or skipped); returns the counts.
    ``config``: the HQ configuration (time zone, member links); from the environment
    when not given."""
    if config is None:
        from hq.config import HqConfig

        config = HqConfig.from_env()
    values = settings or marketing_settings.current(db)
    counts: dict[str, int] = defaultdict(int)
    until = quiet_until(now, config.zone(), values["quiet_start_hour"], values["quiet_end_hour"])
    if until is not None:
        counts["deferred_quiet"] = defer_quiet(db, now, until)
        return dict(counts)
    names = sorted(ch for ch in channels if ch in camp.MESSAGE_CHANNELS)
    renderer = Renderer(config, now)
    today = config.business_day(now)
    handled, more = 0, bool(names)
    # a pipeline: while one batch is with the gateways, the next is claimed, then the
    # first recorded; each step is still its own commit
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        inflight: list[Future[Message]] = []
        while more or inflight:
            messages: list[Message] = []
            if more:
                messages, skipped = _claim(
                    db, names, now, values, min(BATCH, limit - handled), renderer
                )
                for reason, n in skipped.items():
                    counts[f"skipped_{reason}"] += n
                handled += len(messages) + sum(skipped.values())
                more = handled < limit and bool(messages or skipped)
            if inflight:
                answers = [f.result() for f in inflight]
                for key, n in _record(db, answers, now, today).items():
                    counts[key] += n
            inflight = [pool.submit(_send_one, channels[m.channel], m) for m in messages]
    counts["done"] = _finish(db, now)
    return dict(counts)


# ---- delivery reports -------------------------------------------------------------------


def poll_deliveries(db: pw.Database, channels: dict[str, Any], now: dt.datetime) -> dict[str, int]:
    """Ask each channel that reports deliveries (``statuses(ids)``) about its sent
    messages, oldest first, at most ``POLL_MAX`` a call: delivered or failed."""
    counts: dict[str, int] = defaultdict(int)
    S = CampaignSend
    for name, channel in sorted(channels.items()):
        statuses: Callable[[list[str]], dict[str, str]] | None = getattr(channel, "statuses", None)
        if statuses is None:
            continue
        after = 0
        for _ in range(POLL_MAX // STATUS_BATCH):
            rows = list(
                S.select(S.id, S.gateway_id)
                .where(
                    (S.channel == name) & (S.status == "sent") & (S.gateway_id != "")
                    & (S.id > after)
                )
                .order_by(S.id)
                .limit(STATUS_BATCH)
                .tuples()
            )  # fmt: skip
            if not rows:
                break
            after = rows[-1][0]
            answers = statuses([gid for _, gid in rows])
            with db.atomic():
                for row_id, gid in rows:
                    answer = answers.get(gid)
                    if answer == "delivered":
                        S.update(status="delivered", delivered_at=now, updated_at=now).where(
                            S.id == row_id
                        ).execute()
                    elif answer == "failed":
                        S.update(
                            status="failed", last_error="delivery failed", updated_at=now
                        ).where(S.id == row_id).execute()
                    else:
                        continue
                    counts[answer] += 1
    return dict(counts)


# ---- the scheduler's job ----------------------------------------------------------------


def channels_for(config: Any) -> dict[str, Any]:
    """The channels ``config`` names (hq.channels.registry)."""
    return dict(channels_from_config(config))


def send_job(ctx: Any) -> dict[str, int]:
    """The scheduler's ``campaigns`` job (every minute): send what is due, then read the
    delivery reports."""
    now = ctx.clock()
    channels = channels_for(ctx.config)
    counts = send_due(ctx.db, channels, now, config=ctx.config)
    for key, n in poll_deliveries(ctx.db, channels, now).items():
        counts[key] = counts.get(key, 0) + n
    return counts
