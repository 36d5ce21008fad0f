"""paho-mqtt 2.x (MQTT v5) clients built from ``MqttSettings``: TLS-ready, with a will."""

from __future__ import annotations

import os
import socket
import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.sockets import no_delay
from hq.config import MqttSettings


def default_client_id(role: str) -> str:
    return f"hq-{role}-{socket.gethostname()}-{os.getpid()}"


def make_client(settings: MqttSettings, role: str, manual_ack: bool = False) -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=settings.client_id or default_client_id(role),
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if settings.tls:
        client.tls_set(
            ca_certs=settings.ca or None,
            certfile=settings.cert or None,
            keyfile=settings.key or None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    client.on_socket_open = no_delay  # paho leaves Nagle on: 40 ms waits per leg
    return client


def connect_properties(settings: MqttSettings) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = settings.session_expiry
    return props


def publish_properties(
    response_topic: str | None = None, correlation: bytes | None = None
) -> Properties | None:
    if response_topic is None and correlation is None:
        return None
    props = Properties(PacketTypes.PUBLISH)
    if response_topic is not None:
        props.ResponseTopic = response_topic
    if correlation is not None:
        props.CorrelationData = correlation
    return props
