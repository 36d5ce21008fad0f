"""The SMS channel: one protocol, one HTTP implementation.

A send is one POST of JSON ``{"to", "text", "idempotency_key"}`` to the configured URL,
with ``Authorization: Bearer <credential>`` read from the credentials file and the same
key in the ``Idempotency-Key`` header, so a gateway that saw a send before does not send
it twice when the caller retries with the same key. A 2xx answer is accepted (its JSON
``id``, if any, is the gateway's message id); anything else, a timeout, or a refused
connection raises ``SmsSendFailed`` (a ``hq.channels.ChannelSendFailed``). Delivery
reports: ``statuses(ids)`` (hq.channels.poll_statuses). The adapter never retries by
itself: the caller decides (the member page tells the member; a campaign run retries
with backoff).

No phone number reaches a log or an exception message: they name it masked
(core.receipt.mask_phone).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from core.receipt import mask_phone
from hq.channels import (
    ChannelSendFailed,
    PollsStatuses,
    Sent,
    check_http,
    exchange,
    read_gateway_credential,
)

log = logging.getLogger("hq.channels.sms")

MAX_TEXT = 500  # characters; a gateway splits long texts itself


class SmsSendFailed(ChannelSendFailed):
    """The gateway refused the message or could not be reached. ``kind``: refused (a 4xx:
    the gateway will not send it), failed (a 5xx or a bad answer), timeout, unreachable."""

    label = "短信"
    channel = "SMS"


SmsSent = Sent  # the SMS gateway's answer is every channel's (hq.channels.Sent)


class SmsGateway(Protocol):
    def send(self, phone: str, text: str, idempotency_key: str) -> Sent: ...


@dataclass(frozen=True)
class HttpSmsGateway(PollsStatuses):
    url: str
    credential: str
    timeout: float = 5.0
    status_url: str = ""  # empty: the send URL's sibling ``status`` (hq.channels.status_url_for)
    name: ClassVar[str] = "sms"
    error: ClassVar[type[ChannelSendFailed]] = SmsSendFailed

    def send(self, phone: str, text: str, idempotency_key: str) -> Sent:
        if not text or len(text) > MAX_TEXT:
            raise SmsSendFailed("refused", f"text must be 1..{MAX_TEXT} characters")
        masked = mask_phone(phone)
        status, answer = exchange(
            self.url,
            {"to": phone, "text": text, "idempotency_key": idempotency_key},
            {"Authorization": f"Bearer {self.credential}", "Idempotency-Key": idempotency_key},
            self.timeout,
            SmsSendFailed,
            f"sms to {masked} (key {idempotency_key})",
        )
        check_http(status, SmsSendFailed, f"sms to {masked} (key {idempotency_key})")
        gateway_id = str(answer.get("id", "")) if isinstance(answer, dict) else ""
        log.info("sms to %s sent (key %s, gateway id %s)", masked, idempotency_key, gateway_id)
        return Sent(idempotency_key, gateway_id)


def read_sms_credential(path: str) -> str:
    """The credential in ``path`` (one line, the trailing newline dropped)."""
    return read_gateway_credential(path, "sms_credentials_file")


def sms_gateway(config: Any) -> SmsGateway | None:
    """The gateway an ``HqConfig`` names, or None when ``sms_gateway_url`` is not set."""
    if not config.sms_gateway_url:
        return None
    return HttpSmsGateway(
        config.sms_gateway_url,
        read_sms_credential(config.sms_credentials_path()),
        config.sms_timeout,
        config.sms_status_url,
    )
