"""The SMS channel: one protocol, one HTTP implementation.

A send is one POST of JSON ``{"to", "text", "idempotency_key"}`` to the configured URL,
with ``Authorization: Bearer <credential>`` read from the credentials file and the same
key in the ``Idempotency-Key`` header, so a gateway that saw a send before does not send
it twice when the caller retries with the same key. A 2xx answer is accepted (its JSON
``id``, if any, is the gateway's message id); anything else, a timeout, or a refused
connection raises ``SmsSendFailed``. The adapter never retries by itself: the caller
decides (the member page tells the member; a campaign run retries with backoff).

No phone number reaches a log or an exception message: they name it masked
(core.receipt.mask_phone).
"""

from __future__ import annotations

import http.client
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from core.errors import ConfigError, HuiyuanError
from core.receipt import mask_phone

log = logging.getLogger("hq.channels.sms")

MAX_TEXT = 500  # characters; a gateway splits long texts itself


class SmsSendFailed(HuiyuanError):
    """The gateway refused the message or could not be reached. ``kind``: refused (a 4xx:
    the gateway will not send it), failed (a 5xx or a bad answer), timeout, unreachable."""

    code = 30
    http_status = 502

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"短信发送失败, 请稍后再试 (SMS send {kind}: {detail})", kind=kind)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class SmsSent:
    idempotency_key: str
    gateway_id: str


class SmsGateway(Protocol):
    def send(self, phone: str, text: str, idempotency_key: str) -> SmsSent: ...


@dataclass(frozen=True)
class HttpSmsGateway:
    url: str
    credential: str
    timeout: float = 5.0

    def send(self, phone: str, text: str, idempotency_key: str) -> SmsSent:
        if not text or len(text) > MAX_TEXT:
            raise SmsSendFailed("refused", f"text must be 1..{MAX_TEXT} characters")
        body = json.dumps(
            {"to": phone, "text": text, "idempotency_key": idempotency_key}, ensure_ascii=False
        ).encode("utf-8")
        masked = mask_phone(phone)
        url = urlsplit(self.url)
        connection_class = (
            http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(url.hostname or "", url.port, timeout=self.timeout)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Authorization": f"Bearer {self.credential}",
            "Idempotency-Key": idempotency_key,
        }
        try:
            connection.request(
                "POST", (url.path or "/") + (f"?{url.query}" if url.query else ""), body, headers
            )
            resp = connection.getresponse()
            status, raw = resp.status, resp.read()
        except TimeoutError:
            log.warning(
                "sms to %s timed out after %ss (key %s)", masked, self.timeout, idempotency_key
            )
            raise SmsSendFailed("timeout", f"no answer in {self.timeout}s") from None
        except OSError as exc:
            log.warning("sms to %s: gateway unreachable (key %s)", masked, idempotency_key)
            raise SmsSendFailed("unreachable", type(exc).__name__) from None
        finally:
            connection.close()
        if not 200 <= status < 300:
            kind = "refused" if 400 <= status < 500 else "failed"
            log.warning("sms to %s %s: HTTP %s (key %s)", masked, kind, status, idempotency_key)
            raise SmsSendFailed(kind, f"HTTP {status}")
        answer = _json(raw)
        gateway_id = str(answer.get("id", "")) if isinstance(answer, dict) else ""
        log.info("sms to %s sent (key %s, gateway id %s)", masked, idempotency_key, gateway_id)
        return SmsSent(idempotency_key, gateway_id)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        return {}


def read_sms_credential(path: str) -> str:
    """The credential in ``path`` (one line, the trailing newline dropped)."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"sms_credentials_file {path!r} cannot be read: {exc.strerror}",
            field="sms_credentials_file",
        ) from None
    if not text:
        raise ConfigError(f"sms_credentials_file {path!r} is empty", field="sms_credentials_file")
    return text


def sms_gateway(config: Any) -> SmsGateway | None:
    """The gateway an ``HqConfig`` names, or None when ``sms_gateway_url`` is not set."""
    if not config.sms_gateway_url:
        return None
    return HttpSmsGateway(
        config.sms_gateway_url,
        read_sms_credential(config.sms_credentials_path()),
        config.sms_timeout,
    )
