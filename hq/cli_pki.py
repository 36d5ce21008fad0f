"""``huiyuan-hq`` commands of the chain CA and the broker: init-ca, issue-identity,
broker-config, revoke-store, write-crl, certificates (docs/operations.md, Transport
security). Registered on the main group by hq/cli.py."""

from __future__ import annotations

import grp
import sys
from pathlib import Path

import click

from core.errors import HuiyuanError
from hq import pki
from hq.broker_config import DEFAULT_PORT, insecure_anonymous_conf, write_secure_broker
from hq.ca import CA_CERT_FILE, ChainCA, write_private
from hq.config import HqConfig
from hq.models import Certificate, bind, open_database


def _config(ctx: click.Context) -> HqConfig:
    return ctx.obj["config"]


def _fail(exc: HuiyuanError) -> None:
    click.echo(f"error: {exc.message}", err=True)
    sys.exit(exc.code)


def _load_ca(config: HqConfig) -> ChainCA:
    try:
        return ChainCA.load(Path(config.ca_dir))
    except HuiyuanError as exc:
        _fail(exc)
        raise  # _fail exits; this keeps type checkers and readers sure


def _with_db(config: HqConfig, work):  # noqa: ANN001, ANN202
    """``work()`` in one transaction on HQ's database (made by `huiyuan-hq init-db`)."""
    db = bind(open_database(config.database_url), create=False)
    try:
        with db.atomic():
            return work()
    except HuiyuanError as exc:
        _fail(exc)
    finally:
        db.close()


@click.command("init-ca")
@click.option("--name", default="Huiyuan chain CA", help="the CA certificate's common name")
@click.pass_context
def init_ca(ctx: click.Context, name: str) -> None:
    """Create the chain CA in ca_dir (once), and an empty CRL beside it."""
    config = _config(ctx)
    try:
        ca = ChainCA.create(Path(config.ca_dir), name)
    except HuiyuanError as exc:
        _fail(exc)
    pki.crl_path(config).write_bytes(ca.crl_pem([]))
    click.echo(f"CA created: {Path(config.ca_dir).resolve() / CA_CERT_FILE} (key ca.key, 0600)")


@click.command("issue-identity")
@click.argument("common_name")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="directory")
@click.option("--days", type=click.IntRange(1, 3650), default=pki.IDENTITY_DAYS)
@click.pass_context
def issue_identity(ctx: click.Context, common_name: str, out: str, days: int) -> None:
    """Issue a client identity: `hq` for HQ's services (key, certificate and ca.pem in
    OUT). A store's identity is made on its box at enrolment; issuing one here puts
    its key on this machine (labs and laptops only)."""
    config = _config(ctx)
    ca = _load_ca(config)
    kind = "hq" if common_name == pki.HQ_COMMON_NAME else "store"
    key_pem, cert_pem = _with_db(
        config, lambda: pki.issue_identity(ca, common_name, kind, days=days)
    )
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    write_private(folder / f"{common_name}.key", key_pem)
    (folder / f"{common_name}.pem").write_bytes(cert_pem)
    (folder / CA_CERT_FILE).write_bytes(ca.ca_pem)
    click.echo(
        f"{kind} identity {common_name}: {folder / (common_name + '.pem')}, "
        f"{folder / (common_name + '.key')} (0600), {folder / CA_CERT_FILE}"
    )


def _default_group() -> str | None:
    try:
        return grp.getgrnam("mosquitto").gr_name
    except KeyError:
        return None


@click.command("broker-config")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False))
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="default 8883")
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="the broker's name as clients dial it (repeatable; the first is the CN)",
)
@click.option("--bind", "bind_address", default=None, help="listen address (default: all)")
@click.option("--persistence-dir", default="/var/lib/mosquitto/", show_default=True)
@click.option(
    "--key-group",
    default=_default_group,
    help="group the broker runs as, which reads broker.key (default: mosquitto if it exists)",
)
@click.option(
    "--insecure-anonymous",
    is_flag=True,
    help="INSECURE: plaintext, anonymous, no ACL, on 127.0.0.1; for a laptop demo only",
)
@click.pass_context
def broker_config(
    ctx: click.Context,
    out: str,
    port: int | None,
    hosts: tuple[str, ...],
    bind_address: str | None,
    persistence_dir: str,
    key_group: str | None,
    insecure_anonymous: bool,
) -> None:
    """Write Mosquitto's configuration for the chain in OUT: TLS listener requiring a
    certificate of the chain CA, its CN as user name, the ACL, the CRL; and the broker's
    server certificate. Run Mosquitto with `-c OUT/mosquitto.conf`."""
    config = _config(ctx)
    folder = Path(out)
    if insecure_anonymous:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "mosquitto.conf").write_text(
            insecure_anonymous_conf(port or 1883, bind_address or "127.0.0.1", persistence_dir)
        )
        click.echo(
            f"INSECURE broker config written: {folder / 'mosquitto.conf'} "
            "(any client may act as any store or as HQ; never use it for a chain)",
            err=True,
        )
        return
    if not hosts:
        click.echo("error: --host NAME is needed (the name the stores dial)", err=True)
        sys.exit(11)
    ca = _load_ca(config)
    crl = pki.crl_path(config)
    key_pem, cert_pem = _with_db(
        config,
        lambda: (
            pki.write_crl(ca, crl),
            pki.issue_identity(ca, hosts[0], "broker", server_names=hosts),
        )[1],
    )
    files = write_secure_broker(
        folder,
        ca_pem=ca.ca_pem,
        cert_pem=cert_pem,
        key_pem=key_pem,
        crl=crl,
        port=port or DEFAULT_PORT,
        bind_address=bind_address,
        persistence_dir=persistence_dir,
        key_group=key_group,
    )
    click.echo(f"broker config written: {files.conf} (ACL {files.acl}, CRL {files.crl})")
    click.echo(f"run: mosquitto -c {files.conf}")


@click.command("revoke-store")
@click.argument("store_code")
@click.option("--reason", required=True, help="why (recorded): retired, stolen, ...")
@click.pass_context
def revoke_store(ctx: click.Context, store_code: str, reason: str) -> None:
    """Revoke every certificate of STORE_CODE and rewrite the CRL. Then reload the
    broker (systemctl reload mosquitto): it refuses the certificate from then on; a
    connection already open stays until the broker restarts."""
    config = _config(ctx)
    ca = _load_ca(config)

    def work() -> tuple[int, int]:
        pki.check_store_code(store_code)
        return pki.revoke(store_code, reason), pki.write_crl(ca, pki.crl_path(config))

    count, listed = _with_db(config, work)
    click.echo(
        f"store {store_code}: {count} certificate(s) revoked; CRL {pki.crl_path(config)} "
        f"lists {listed}. Now: systemctl reload mosquitto (and restart it to cut an open "
        "connection)"
    )


@click.command("write-crl")
@click.pass_context
def write_crl(ctx: click.Context) -> None:
    """Rewrite the CRL (it is valid for a year: rewrite it before then, e.g. monthly)."""
    config = _config(ctx)
    listed = _with_db(config, lambda: pki.rewrite_crl(config))
    click.echo(f"CRL {pki.crl_path(config)} lists {listed} revoked certificate(s)")


@click.command("certificates")
@click.option("--name", "common_name", default=None, help="only this common name")
@click.pass_context
def certificates(ctx: click.Context, common_name: str | None) -> None:
    """List the certificates issued: serial, CN, kind, validity, revocation."""

    def rows() -> list[Certificate]:
        query = Certificate.select().order_by(Certificate.issued_at, Certificate.serial)
        if common_name:
            query = query.where(Certificate.common_name == common_name)
        return list(query)

    for row in _with_db(_config(ctx), rows) or []:
        state = f"revoked {row.revoked_at} ({row.revoke_reason})" if row.revoked_at else "live"
        click.echo(
            f"{row.serial}  {row.common_name}  {row.kind}  "
            f"{row.not_before:%Y-%m-%d}..{row.not_after:%Y-%m-%d}  {state}"
        )


PKI_COMMANDS = [init_ca, issue_identity, broker_config, revoke_store, write_crl, certificates]
