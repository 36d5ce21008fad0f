"""Renewing the store's certificate before it expires, over MQTT.

The store asks with the certificate it holds: the broker has checked it at connect and
its ACL lets the store publish only on its own topics, so that check is the
authentication. When fewer than ``[sync] renew_days`` days remain and the certificate in
use is the one enrolment wrote (``enrolled``), the agent makes a new key and CSR and
publishes ``hy/v1/{store}/up/certreq``; HQ answers on
``hy/v1/{store}/down/cert`` with a certificate for the new key. The agent checks that it
fits (its pending key, its store, the chain CA it trusts), writes store.key and store.pem
atomically into ``[sync] credentials_dir`` (where enrolment wrote them and systemd's
``LoadCredential=`` reads them) and reconnects with them. The till's online authorizer
picks the new files up when huiyuan-edge restarts (docs/operations.md).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import HuiyuanError, ProtocolError
from core.protocol import CertRequest, decode_json, validate_cert_reply
from edge.enrol import (
    CERT_FILE,
    KEY_FILE,
    cert_not_after,
    check_identity,
    make_key_and_csr,
    write_identity,
)
from edge.sync.config import SyncConfig

log = logging.getLogger("edge.sync.renewal")

CHECK_S = 3600.0  # how often the expiry is looked at
RETRY_S = 600.0  # how long an unanswered request waits before a new one


class CertRenewer:
    """Owned by the sync agent's worker thread: ``check`` from its timers, ``on_cert`` for
    a down/cert message; ``renewed`` is called with the new (cert, key) paths."""

    def __init__(
        self,
        store: str,
        cfg: SyncConfig,
        publish: Callable[[str, dict[str, Any]], None],
        renewed: Callable[[str, str], None],
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store = store
        self.cfg = cfg
        self.publish = publish
        self.renewed = renewed
        self.clock = clock
        self.pending_key: bytes | None = None
        self.asked_at = 0.0
        self.checked_at = 0.0
        self.check_s = CHECK_S
        self.retry_s = RETRY_S

    @property
    def enabled(self) -> bool:
        return bool(self.cfg.tls and self.cfg.cert and self.cfg.renew_days > 0)

    def due(self) -> bool:
        """The certificate in use expires within ``renew_days``."""
        try:
            not_after = cert_not_after(Path(self.cfg.cert).read_bytes())
        except (OSError, ValueError) as exc:
            log.error("cannot read the certificate %s: %s", self.cfg.cert, exc)
            return False
        return not_after - self.clock() < dt.timedelta(days=self.cfg.renew_days)

    def enrolled(self) -> bool:
        """The certificate in use is the one in ``credentials_dir`` (itself, or systemd's
        copy of it): only an identity enrolment wrote is renewed, never files put
        elsewhere by hand (a lab's, a test's)."""
        try:
            in_use = Path(self.cfg.cert).read_bytes()
            return in_use == (Path(self.cfg.credentials_dir) / CERT_FILE).read_bytes()
        except OSError:
            return False

    def check(self, connected: bool) -> None:
        now = time.monotonic()
        if not (self.enabled and connected):
            return
        if self.pending_key is not None and now - self.asked_at < self.retry_s:
            return
        if self.pending_key is None and self.checked_at and now - self.checked_at < self.check_s:
            return
        self.checked_at = now
        if not self.due():
            return
        if not self.enrolled():
            log.warning(
                "certificate %s expires within %d days but is not the one enrolment wrote "
                "in %s: not renewed here",
                self.cfg.cert,
                self.cfg.renew_days,
                self.cfg.credentials_dir,
            )
            return
        key_pem, csr_pem = make_key_and_csr(self.store)
        self.pending_key, self.asked_at = key_pem, now
        self.publish("certreq", CertRequest(self.store, csr_pem.decode()).to_dict())
        log.info("certificate expires within %d days: asked HQ for a new one", self.cfg.renew_days)

    def on_cert(self, payload: bytes) -> None:
        reply = validate_cert_reply(decode_json(payload, "cert"))
        if reply.store != self.store:
            raise ProtocolError(f"cert: for store {reply.store!r}, not {self.store!r}")
        if self.pending_key is None:
            log.warning("a certificate arrived that was not asked for: ignored")
            return
        cert_pem = reply.certificate.encode()
        try:
            ca_pem = Path(self.cfg.ca).read_bytes()
            identity = check_identity(self.pending_key, cert_pem, ca_pem, self.store)
        except (OSError, HuiyuanError) as exc:
            message = getattr(exc, "message", str(exc))
            log.error("the renewed certificate does not fit (%s): kept the current one", message)
            return
        directory = Path(self.cfg.credentials_dir)
        try:
            write_identity(directory, self.pending_key, cert_pem, None)
        except OSError as exc:
            log.error("cannot write the renewed identity to %s: %s", directory, exc)
            return
        self.pending_key = None
        log.info(
            "certificate renewed, valid until %s: written to %s",
            f"{identity.not_after:%Y-%m-%d}",
            directory,
        )
        self.renewed(str(directory / CERT_FILE), str(directory / KEY_FILE))
