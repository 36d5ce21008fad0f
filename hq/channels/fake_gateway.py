"""A fake SMS gateway: a small threaded HTTP server on 127.0.0.1 that records what it
received, for tests and the demo (the way OctoPrint ships a virtual printer).

    with FakeSmsGateway(token="t0ken") as gw:
        HttpSmsGateway(gw.url, "t0ken").send(...)
        gw.sent            # [{"to", "text", "idempotency_key", "authorization"}, ...]
        gw.fail_next(500)  # the next send answers HTTP 500
        gw.fail_next("timeout", seconds=2)  # the next send answers nothing for 2 s

A send repeated with an idempotency key it already accepted is answered with the first
send's id and not recorded again, as a real gateway's idempotency does. A wrong bearer
token gets a 401. ``python -m hq.channels.fake_gateway [port]`` runs one for the demo and
prints each message it receives.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from core.receipt import mask_phone


class FakeSmsGateway:
    def __init__(self, token: str = "fake-token", port: int = 0) -> None:  # noqa: S107 - a fake
        self.token = token
        self.sent: list[dict[str, Any]] = []
        self._faults: list[tuple[str | int, float]] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._ids: dict[str, str] = {}
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                gateway._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return  # the requests carry phone numbers: nothing to stderr

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = False  # server_close joins them: no socket left open
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/sms/send"

    def start(self) -> FakeSmsGateway:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()  # let a stalled request finish so shutdown returns
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

    def __enter__(self) -> FakeSmsGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, fault: str | int, seconds: float = 0.0) -> None:
        """The next send fails: an HTTP status (500, 400...) or "timeout" (no answer for
        ``seconds``, longer than the client's timeout)."""
        with self._lock:
            self._faults.append((fault, seconds))

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length)
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None and fault[0] == "timeout":
            self._release.wait(fault[1])
            return self._answer(req, 504, {"error": "stalled"})
        if fault is not None:
            return self._answer(req, int(fault[0]), {"error": "injected"})
        if req.headers.get("Authorization") != f"Bearer {self.token}":
            return self._answer(req, 401, {"error": "bad credentials"})
        try:
            body = json.loads(raw)
            to, text, key = body["to"], body["text"], body["idempotency_key"]
        except (ValueError, KeyError, TypeError):
            return self._answer(req, 400, {"error": "bad body"})
        with self._lock:
            if key not in self._ids:
                self._ids[key] = f"fake-{len(self._ids) + 1}"
                self.sent.append(
                    {
                        "to": to,
                        "text": text,
                        "idempotency_key": key,
                        "header_key": req.headers.get("Idempotency-Key"),
                    }
                )
            message_id = self._ids[key]
        self._answer(req, 200, {"id": message_id})

    @staticmethod
    def _answer(req: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        try:
            req.send_response(status)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(raw)))
            req.end_headers()
            req.wfile.write(raw)
        except OSError:
            return  # the client gave up (a timeout test): nothing to answer


def main() -> None:  # pragma: no cover - the demo's terminal
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8700
    with FakeSmsGateway(port=port) as gw:
        print(f"fake SMS gateway at {gw.url}, token {gw.token!r}", flush=True)
        seen = 0
        while True:
            time.sleep(0.5)
            for message in gw.sent[seen:]:
                print(f"{mask_phone(message['to'])}: {message['text']}", flush=True)
            seen = len(gw.sent)


if __name__ == "__main__":  # pragma: no cover
    main()
