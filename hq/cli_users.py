"""``huiyuan-hq add-user | set-role | reset-password | users | deactivate-user |
add-token | revoke-token | tokens | store-area``: HQ staff accounts and integration
tokens from the command line, for the first admin and for scripts (docs/console.md).

A password is never an argument (it would show in ``ps`` and the shell history): it is
typed at a hidden prompt, read from ``--password-file``, or generated with
``--generate`` and printed once.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import click

from core.errors import HuiyuanError, ValidationError
from hq.access import sessions, users
from hq.access.roles import ROLES
from hq.models import HqUser, Store, bind, open_database


def _db(ctx: click.Context) -> Any:
    """HQ's database for this command, closed when the command ends."""
    from hq.cli import _config

    db = bind(open_database(_config(ctx).database_url), create=False)
    ctx.call_on_close(db.close)
    return db


def _by(by: str | None) -> str:
    return by or f"cli:{getpass.getuser()}"


def _password(password_file: str | None, generate: bool) -> tuple[str, bool]:
    """(the password, whether it was generated and must be shown)."""
    if password_file and generate:
        raise ValidationError("--password-file and --generate do not go together")
    if password_file:
        return Path(password_file).read_text(encoding="utf-8").rstrip("\n"), False
    if generate:
        return users.generate_password(), True
    text = click.prompt("password", hide_input=True, confirmation_prompt=True)
    return text, False


def _guarded(work: Any) -> Any:
    from hq.cli import _fail

    try:
        return work()
    except HuiyuanError as exc:
        _fail(exc)


ROLE_HELP = ", ".join(f"{r.name} ({r.label})" for r in ROLES.values())
_password_options = [
    click.option("--password-file", type=click.Path(exists=True, dir_okay=False), default=None),
    click.option("--generate", is_flag=True, help="generate a password and print it once"),
]


def _with_password(fn: Any) -> Any:
    for option in reversed(_password_options):
        fn = option(fn)
    return fn


@click.command("add-user")
@click.argument("username")
@click.option("--role", required=True, help=ROLE_HELP)
@click.option("--scope", default=None, help="store code (store) or area (area)")
@click.option("--name", "display_name", default="", help="the name the console shows")
@click.option("--by", default=None, help="who adds it (default cli:<login>)")
@_with_password
@click.pass_context
def add_user(ctx, username, role, scope, display_name, by, password_file, generate) -> None:
    """Add an HQ staff account (the first admin is made here)."""
    db = _db(ctx)
    password, shown = _guarded(lambda: _password(password_file, generate))
    user = _guarded(
        lambda: users.add_user(
            db, username, password, role, scope=scope, display_name=display_name, by=_by(by)
        )
    )
    click.echo(f"added {user.username} ({ROLES[user.role].label}{_scope_text(user.scope)})")
    if shown:
        click.echo(f"password: {password}")


@click.command("set-role")
@click.argument("username")
@click.option("--role", required=True, help=ROLE_HELP)
@click.option("--scope", default=None, help="store code (store) or area (area)")
@click.option("--by", default=None)
@click.pass_context
def set_role(ctx, username, role, scope, by) -> None:
    """Change an account's role (audited)."""
    db = _db(ctx)
    user = _guarded(lambda: users.set_role(db, username, role, scope=scope, by=_by(by)))
    click.echo(f"{user.username}: {ROLES[user.role].label}{_scope_text(user.scope)}")


@click.command("reset-password")
@click.argument("username")
@click.option("--by", default=None)
@_with_password
@click.pass_context
def reset_password(ctx, username, by, password_file, generate) -> None:
    """Set a new password; unlocks the account and ends its sessions (audited)."""
    db = _db(ctx)
    password, shown = _guarded(lambda: _password(password_file, generate))
    _guarded(lambda: users.reset_password(db, username, password, by=_by(by)))
    click.echo(f"{username}: password reset, sessions ended")
    if shown:
        click.echo(f"password: {password}")


@click.command("deactivate-user")
@click.argument("username")
@click.option("--activate", is_flag=True, help="let the account sign in again")
@click.option("--by", default=None)
@click.pass_context
def deactivate_user(ctx, username, activate, by) -> None:
    """Stop an account signing in (its sessions end), or with --activate let it again."""
    db = _db(ctx)
    user = _guarded(lambda: users.set_active(db, username, activate, by=_by(by)))
    click.echo(f"{user.username}: {'active' if user.active else 'deactivated'}")


@click.command("users")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_users(ctx, as_json) -> None:
    """The HQ staff accounts."""
    _db(ctx)
    rows = [
        {
            "username": u.username,
            "name": u.display_name,
            "role": u.role,
            "scope": u.scope,
            "active": u.active,
            "locked_until": u.locked_until.isoformat() if u.locked_until else None,
            "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None,
        }
        for u in HqUser.select().order_by(HqUser.username)
    ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for r in rows:
        state = "active" if r["active"] else "deactivated"
        click.echo(f"{r['username']:<20} {r['role']:<11} {r['scope'] or '-':<8} {state}")


@click.command("add-token")
@click.argument("name")
@click.option("--role", required=True, help=ROLE_HELP)
@click.option("--scope", default=None, help="store code (store) or area (area)")
@click.option("--days", type=int, default=None, help="expires after this many days")
@click.option("--by", default=None)
@click.pass_context
def add_token(ctx, name, role, scope, days, by) -> None:
    """A bearer token for an integration; printed once, only its hash is kept."""
    db = _db(ctx)
    token, row = _guarded(
        lambda: sessions.issue_token(db, name, role, scope=scope, days=days, by=_by(by))
    )
    click.echo(f"token {row.token_id} ({row.role}{_scope_text(row.scope)}): {token}")


@click.command("revoke-token")
@click.argument("token_id")
@click.option("--by", default=None)
@click.pass_context
def revoke_token(ctx, token_id, by) -> None:
    db = _db(ctx)
    row = _guarded(lambda: sessions.revoke_token(db, token_id, by=_by(by)))
    click.echo(f"token {row.token_id}: revoked")


@click.command("tokens")
@click.pass_context
def list_tokens(ctx) -> None:
    _db(ctx)
    for t in sessions.list_tokens():
        state = "revoked" if t.revoked_at else "live"
        click.echo(f"{t.token_id} {t.name:<24} {t.role:<11} {t.scope or '-':<8} {state}")


@click.command("store-area")
@click.argument("store")
@click.argument("area", required=False)
@click.pass_context
def store_area(ctx, store, area) -> None:
    """Put a store in an area (an area manager sees its stores); no AREA takes it out."""
    db = _db(ctx)

    def work() -> None:
        if area is not None and not 1 <= len(area) <= 32:
            raise ValidationError("area must be 1-32 characters", field="area")
        with db.atomic():
            done = Store.update(area=area).where(Store.code == store).execute()
        if not done:
            raise ValidationError(f"no store {store}", field="store")

    _guarded(work)
    click.echo(f"{store}: area {area or '-'}")


def _scope_text(scope: str | None) -> str:
    return f", {scope}" if scope else ""


COMMANDS = [
    add_user,
    set_role,
    reset_password,
    deactivate_user,
    list_users,
    add_token,
    revoke_token,
    list_tokens,
    store_area,
]


def register(main: click.Group) -> None:
    for command in COMMANDS:
        main.add_command(command)
