"""The channels a campaign sends through, as one protocol (docs/operations.md "Campaign
channels"). The campaign engine (hq/marketing/sending.py) holds the dict
``channels_from_config`` returns and calls ``send(to, text, key)``, where ``to`` is the
member's phone (``sms``) or openid (``wechat``, hq.channels.wechat.openid_of), and
``statuses(ids)`` for delivery reports. Every send failure is a
``hq.channels.ChannelSendFailed`` with ``kind`` refused | failed | timeout | unreachable.
"""

from __future__ import annotations

from typing import Any, Protocol

from hq.channels import Sent
from hq.channels.sms import sms_gateway
from hq.channels.wechat import wechat_channel


class Channel(Protocol):
    name: str  # "sms" | "wechat"

    def send(self, to: str, text: str, idempotency_key: str) -> Sent: ...

    def statuses(self, gateway_ids: list[str]) -> dict[str, str]: ...


def channels_from_config(config: Any) -> dict[str, Channel]:
    """The message channels an ``HqConfig`` configures, by name; an unconfigured one is
    absent (a campaign naming it skips its sends). Reads the credential files now: a
    missing one is a ConfigError at start, not at the first send."""
    found: dict[str, Channel] = {}
    sms = sms_gateway(config)
    if sms is not None:
        found["sms"] = sms  # type: ignore[assignment] - HttpSmsGateway is a Channel
    wechat = wechat_channel(config)
    if wechat is not None:
        found["wechat"] = wechat
    return found
