"""Till API routes added for the membership programme (issue 11): one module per part,
each with a Blueprint ``bp`` under /api/v1/..., described in edge/openapi/<part>.json
and listed in tests/edge/test_network_surface_roles.py. Routes use edge.api's helpers
(``signed_in``, ``manager_signed_in``, ``body``, ``till``)."""

from __future__ import annotations

from flask import Blueprint


def blueprints() -> list[Blueprint]:
    parts: list[Blueprint] = []
    # ---- one block per part: `from edge.routes import <part>` then parts.append(<part>.bp)
    # -- tiers

    # -- cards
    from edge.routes import cards

    parts.append(cards.bp)

    # -- points
    from edge.routes import points

    parts.append(points.bp)

    # -- coupons
    from edge.routes import coupons

    parts.append(coupons.bp)

    # -- upkeep
    from edge.routes import upkeep

    parts.append(upkeep.bp)

    # -- staff
    from edge.routes import staff

    parts.append(staff.bp)

    # ---- the cashier's screen (issue 13) and follow-ups (issue 14)
    # -- sale & pay
    from edge.routes import parked

    parts.append(parked.bp)

    # -- members at the till
    from edge.routes import till_members

    parts.append(till_members.bp)

    # -- returns and receipts
    from edge.routes import receipts

    parts.append(receipts.bp)

    # -- shifts and day close
    from edge.routes import shifts

    parts.append(shifts.bp)

    # -- follow-ups
    from edge.routes import followups

    parts.append(followups.bp)

    # ---- end of the parts
    return parts
