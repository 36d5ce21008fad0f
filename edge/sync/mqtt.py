"""paho-mqtt 2.x (MQTT v5) clients for the edge, built from ``SyncConfig``: TLS-ready."""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.sockets import no_delay
from edge.sync.config import SyncConfig


def make_client(cfg: SyncConfig, client_id: str) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    if cfg.tls:
        client.tls_set(
            ca_certs=cfg.ca or None,
            certfile=cfg.cert or None,
            keyfile=cfg.key or None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    client.on_socket_open = no_delay  # paho leaves Nagle on: 40 ms waits per leg
    return client


def session_properties(expiry: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry
    return props


def request_properties(response_topic: str, correlation: bytes) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = response_topic
    props.CorrelationData = correlation
    return props
