"""`huiyuan-edge end-sessions`: end staff sign-ins from the box's own shell."""

from __future__ import annotations

import sys

import click

from core.errors import HuiyuanError


@click.command("end-sessions")
@click.option("--staff", "staff_code", default=None, help="only this staff member's sign-ins")
def end_sessions(staff_code: str | None) -> None:
    """End every staff sign-in on this till (or one staff member's): each screen signed in
    is asked to sign in again on its next request. As POST /api/v1/sessions/end-all."""
    from edge.cli import _open
    from edge.services.staff import end_sessions as end

    till = _open()
    try:
        ended = end(till, staff_code)
    except HuiyuanError as exc:
        click.echo(exc.message, err=True)
        sys.exit(exc.code)
    who = f"员工 {staff_code} 的" if staff_code else "所有"
    click.echo(f"已结束{who}登录 {ended} 个 (ended {ended} sessions)")
