"""The membership programme at HQ: tiers and growth value, card types as products,
points expiry and reset, coupons, stored-value upkeep, maintainers (issue 11).

Each module is a capability: plain functions that take the database and a clock (or a
date), used by the CLI (hq/cli_programme*.py), the scheduler's jobs (hq/scheduler.py,
which keeps only the timetable) and, later, the console. The rules themselves live in
``core`` so stores apply them the same way offline."""
