"""Who may read ``/metrics``, for HQ and the edge alike (standard library only).

Prometheus sends a bearer token it reads from a file (``authorization: credentials_file``
in its scrape config); each service reads the same token from the file systemd hands it
(``LoadCredential=metrics-token``). The token is read at every scrape, so replacing the
file rotates it without a restart.

``MetricsListener`` serves a WSGI app (prometheus_client's) for the processes that have
no web server of their own: the HQ ingest workers and the store's sync agent. Bound to a
loopback address it may run without a token; bound to any other address it refuses to
start without one.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from core.credentials import credential_path
from core.errors import ConfigError

CREDENTIAL_NAME = "metrics-token"  # LoadCredential=metrics-token:/etc/huiyuan/metrics-token
MIN_TOKEN_CHARS = 16  # `openssl rand -hex 32` gives 64

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def token_path(configured: str) -> Path | None:
    """The token file: the one configured, else systemd's credential if it was handed one."""
    if configured:
        return Path(configured)
    handed = credential_path(CREDENTIAL_NAME)
    return Path(handed) if handed else None


def read_token(path: Path | None) -> str | None:
    """The token in ``path`` (surrounding whitespace dropped); None if no file is named.
    A named file that is missing, unreadable or too short is a ConfigError: a metrics
    endpoint must not quietly open because its secret went missing."""
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"metrics token file {str(path)!r} unreadable: {type(exc).__name__}",
            field="metrics_token_file",
        ) from None
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"metrics token in {str(path)!r} is shorter than {MIN_TOKEN_CHARS} characters",
            field="metrics_token_file",
        )
    return token


def bearer_matches(authorization: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    if not authorization or not authorization.startswith("Bearer "):
        return False
    offered = authorization.removeprefix("Bearer ").strip()
    return hmac.compare_digest(offered.encode(), token.encode())


def is_loopback(address: str | None) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``; anything unparsable is not."""
    if address is None:
        return False
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def require_token(app: WsgiApp, path: Path | None) -> WsgiApp:
    """``app`` behind the bearer token in ``path`` (read at each request). Without a
    token file every request passes: only for a listener bound to loopback."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if path is not None:
            try:
                token = read_token(path)
            except ConfigError as exc:
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return [f"{exc.message}\n".encode()]
            if not bearer_matches(environ.get("HTTP_AUTHORIZATION"), token or ""):
                start_response(
                    "401 Unauthorized",
                    [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")],
                )
                return [b"bearer token required\n"]
        return app(environ, start_response)

    return guarded


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Scrapes every 15 s would drown the journal."""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class MetricsListener:
    """A small HTTP listener for ``app`` on ``host:port`` in a daemon thread.

    ``listener = MetricsListener(app, "127.0.0.1", 9610, token_file).start()``;
    ``listener.stop()`` closes the socket. Port 0 picks a free one (``listener.port``)."""

    def __init__(self, app: WsgiApp, host: str, port: int, token_file: Path | None) -> None:
        if token_file is None and not is_loopback(host):
            raise ConfigError(
                f"metrics listener on {host}:{port} is not loopback-only: "
                f"it needs a token file ({CREDENTIAL_NAME})",
                field="metrics_host",
            )
        read_token(token_file)  # a named but bad token file stops the start, by name
        self.app = require_token(app, token_file)
        self.host = host
        self.port = port
        self.server: WSGIServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> MetricsListener:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_class = type("MetricsServer", (_Server,), {"address_family": family})
        try:
            self.server = make_server(
                self.host, self.port, self.app, server_class, handler_class=_QuietHandler
            )
        except OSError as exc:
            raise ConfigError(
                f"metrics listener cannot bind {self.host}:{self.port}: {exc.strerror}",
                field="metrics_port",
            ) from None
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="metrics-http", daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)
