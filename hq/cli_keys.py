"""`huiyuan-hq init-lookup-key`: the chain's phone lookup key (hq/lookup.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from core.errors import ConfigError


@click.command("init-lookup-key")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False),
    default=None,
    help="where to make it (default: the configured lookup_key_file); under systemd, the "
    "credential's source, e.g. /etc/huiyuan/credentials/lookup.key",
)
@click.pass_context
def init_lookup_key(ctx: click.Context, path: str | None) -> None:
    """Make the chain's phone lookup key (32 random bytes, mode 0600) if it is absent."""
    from hq.lookup import ChainLookup, create_lookup_key

    try:
        target = Path(path) if path else ctx.obj["config"].lookup_key_path()
    except ConfigError as exc:
        click.echo(exc.message, err=True)
        sys.exit(exc.code)
    made = create_lookup_key(target)
    key_id = ChainLookup(lambda: (target, False)).key_id
    click.echo(f"lookup key {key_id}: {target} ({'made' if made else 'already there, kept'})")
