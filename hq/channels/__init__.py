"""Channels HQ reaches members through (docs/member-page.md, "The SMS adapter";
docs/operations.md, "Campaign channels").

``sms``: the ``SmsGateway`` protocol, its HTTP implementation (``HttpSmsGateway``) and
``sms_gateway(config)``, which the member page's verification codes use and the campaign
engine uses too. ``wechat``: official-account template messages through the chain's
adapter, and the member ↔ openid binding. ``registry``: the ``Channel`` protocol and
``channels_from_config``. ``fake_gateway``: local HTTP servers standing in for the real
gateways in tests and the demo, able to refuse, fail and stall on purpose.

Here: what every channel shares, the ``Sent`` answer, the one error a sender catches
(``ChannelSendFailed``) and the HTTP exchange itself (``exchange``).
"""

from __future__ import annotations

import http.client
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from core.errors import ConfigError, HuiyuanError

log = logging.getLogger("hq.channels")

KINDS = ("refused", "failed", "timeout", "unreachable")
DELIVERY = ("delivered", "failed")  # what ``statuses`` reports; anything else is not final
STATUS_BATCH = 100  # ids asked about in one status request


class ChannelSendFailed(HuiyuanError):
    """A channel did not take the message. ``kind``: refused (the gateway will not send
    it: a 4xx, a WeChat errcode; retrying will not help), failed (a 5xx or a bad answer),
    timeout, unreachable (the last three may succeed later with the same key)."""

    code = 30
    http_status = 502
    label = "消息"  # the Chinese name of what was not sent
    channel = "message"

    def __init__(self, kind: str, detail: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown send failure kind {kind!r}")
        super().__init__(
            f"{self.label}发送失败, 请稍后再试 ({self.channel} send {kind}: {detail})", kind=kind
        )
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Sent:
    """A gateway took the message: ``gateway_id`` is its id (what ``statuses`` asks about)."""

    idempotency_key: str
    gateway_id: str


def status_url_for(send_url: str) -> str:
    """The delivery-status URL beside a send URL: its last path segment replaced by
    ``status`` (``https://gw/v1/sms/send`` → ``https://gw/v1/sms/status``)."""
    parts = urlsplit(send_url)
    head = parts.path.rsplit("/", 1)[0] if "/" in parts.path else ""
    return urlunsplit((parts.scheme, parts.netloc, f"{head}/status", parts.query, ""))


def exchange(
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    timeout: float,
    error: type[ChannelSendFailed],
    what: str,
) -> tuple[int, Any]:
    """POST ``body`` as JSON to ``url``; the HTTP status and the answer's JSON (``{}`` when
    it is not JSON). A timeout or a connection that fails raises ``error`` (kind timeout,
    unreachable). ``what`` names the exchange in log lines (a masked recipient, never a
    phone)."""
    raw_body = json.dumps(body, ensure_ascii=False).encode("utf-8")
    parts = urlsplit(url)
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
    headers = {"Content-Type": "application/json; charset=utf-8", **headers}
    try:
        connection.request(
            "POST",
            (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
            raw_body,
            headers,
        )
        resp = connection.getresponse()
        status, raw = resp.status, resp.read()
    except TimeoutError:
        log.warning("%s timed out after %ss", what, timeout)
        raise error("timeout", f"no answer in {timeout}s") from None
    except OSError as exc:
        log.warning("%s: gateway unreachable (%s)", what, type(exc).__name__)
        raise error("unreachable", type(exc).__name__) from None
    finally:
        connection.close()
    try:
        answer = json.loads(raw or b"{}")
    except ValueError:
        answer = {}
    return status, answer


def check_http(status: int, error: type[ChannelSendFailed], what: str) -> None:
    """Raise ``error`` unless ``status`` is 2xx: a 4xx is refused (the gateway will not
    take it), anything else failed."""
    if 200 <= status < 300:
        return
    kind = "refused" if 400 <= status < 500 else "failed"
    log.warning("%s %s: HTTP %s", what, kind, status)
    raise error(kind, f"HTTP {status}")


def poll_statuses(
    url: str,
    credential: str,
    gateway_ids: list[str],
    timeout: float,
    error: type[ChannelSendFailed],
    what: str,
) -> dict[str, str]:
    """Ask a gateway's status URL what became of ``gateway_ids`` (the wire is one for
    every channel, docs/operations.md "Delivery reports"): POST ``{"ids": [...]}`` with
    the bearer credential, at most ``STATUS_BATCH`` ids a request; the answer
    ``{"statuses": {id: "delivered" | "failed" | anything else}}``. Returns the ids
    whose answer is final; ids the gateway does not know, or not yet, are left out."""
    out: dict[str, str] = {}
    ids = [str(i) for i in dict.fromkeys(gateway_ids) if i]
    for start in range(0, len(ids), STATUS_BATCH):
        batch = ids[start : start + STATUS_BATCH]
        status, answer = exchange(
            url,
            {"ids": batch},
            {"Authorization": f"Bearer {credential}"},
            timeout,
            error,
            f"{what} statuses ({len(batch)} ids)",
        )
        check_http(status, error, f"{what} statuses")
        found = answer.get("statuses") if isinstance(answer, dict) else None
        if not isinstance(found, dict):
            raise error("failed", "status answer without statuses")
        asked = set(batch)
        out |= {str(k): v for k, v in found.items() if str(k) in asked and v in DELIVERY}
    return out


def read_gateway_credential(path: str, field: str) -> str:
    """The bearer credential in ``path`` (one line, the trailing newline dropped);
    ``field`` names the config field in the ConfigError when it cannot be read."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{field} {path!r} cannot be read: {exc.strerror}", field=field) from None
    if not text:
        raise ConfigError(f"{field} {path!r} is empty", field=field)
    return text


class PollsStatuses:
    """``statuses`` for an HTTP channel (a dataclass with ``url``, ``credential``,
    ``timeout`` and ``status_url``; empty: the send URL's sibling ``status``)."""

    name: ClassVar[str]
    error: ClassVar[type[ChannelSendFailed]]
    url: str
    credential: str
    timeout: float
    status_url: str

    def statuses(self, gateway_ids: list[str]) -> dict[str, str]:
        """Delivery reports: ``{gateway id: "delivered" | "failed"}`` for the ids whose
        fate the gateway knows; the others left out (``poll_statuses`` has the wire)."""
        return poll_statuses(
            self.status_url or status_url_for(self.url),
            self.credential,
            gateway_ids,
            self.timeout,
            self.error,
            self.name,
        )
