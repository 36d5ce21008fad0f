"""`huiyuan-edge rotate-member-key`: a new member data key while the till trades."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from core.errors import HuiyuanError


@click.command("rotate-member-key")
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="the member key file to replace (default: the one the config names); under "
    "systemd, the credential's source, e.g. /etc/huiyuan/credentials/member.key",
)
@click.option("--batch", type=click.IntRange(1, 10000), default=100, help="rows per transaction")
def rotate_member_key(key_file: str | None, batch: int) -> None:
    """Encrypt every held phone under a new member key, then retire the old key."""
    from edge.cli import _load
    from edge.key_rotation import rotate_member_key as rotate
    from edge.models import open_database
    from edge.security import MemberKeys

    cfg = _load()
    path = Path(key_file) if key_file else cfg.key_path
    try:
        db = open_database(cfg.db_path)
        report = rotate(db, MemberKeys.load(path), path, batch=batch)
    except HuiyuanError as exc:
        click.echo(exc.message, err=True)
        sys.exit(exc.code)
    click.echo(
        f"会员数据密钥已更换 (member key rotated): {report.old_id} -> {report.new_id}, "
        f"{report.rows} 条重新加密 (blobs encrypted again) in {report.batches} batches"
    )
