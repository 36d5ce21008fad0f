"""Fake gateways: small threaded HTTP servers on 127.0.0.1 that record what they received,
for tests and the demo (the way OctoPrint ships a virtual printer).

    with FakeSmsGateway(token="t0ken") as gw:
        HttpSmsGateway(gw.url, "t0ken").send(...)
        gw.sent            # [{"to", "text", "idempotency_key", "header_key"}, ...]
        gw.fail_next(500)  # the next request answers HTTP 500
        gw.fail_next("timeout", seconds=2)  # the next request answers nothing for 2 s
        gw.fail_delivery()         # the next accepted message will be reported failed
        gw.fail_delivery("fake-3") # this one is

    with FakeWechatGateway(token="t0ken") as wx:
        WechatChannel(wx.url, "t0ken", "TPL").send(openid, text, key)
        wx.sent            # [{"touser", "template_id", "data", "url", "idempotency_key"}]
        wx.fail_next("errcode", errcode=43004)  # HTTP 200 with WeChat's errcode 43004

A send repeated with an idempotency key the fake already accepted is answered with the
first send's id and not recorded again, as a real gateway's idempotency does. A wrong
bearer token gets a 401. Each accepted message is reported ``delivered`` on the status
URL (the send URL's sibling ``status``, hq.channels.poll_statuses has the wire) unless
``fail_delivery`` said otherwise; ids the fake never issued are left out of the answer.
An injected fault is spent by the next request, a send or a status poll.

``python -m hq.channels.fake_gateway [port]`` runs both for the demo (SMS on ``port``,
WeChat on ``port + 1``) and prints each message it receives, the phone masked.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from core.receipt import mask_phone

Fault = tuple[str | int, float, int]


class _Server(ThreadingHTTPServer):
    # a real gateway takes many connections at once; http.server's accept queue of 5
    # made a sender with 8 threads wait a second (the kernel's SYN retry) now and then
    request_queue_size = 128


class _FakeGateway:
    """The server, the fault queue, the bearer check, idempotency and delivery reports;
    a subclass reads its send body (``_accept``) and says what its answers look like."""

    path = "/send"
    prefix = "fake"

    def __init__(self, token: str = "fake-token", port: int = 0) -> None:  # noqa: S107 - a fake
        self.token = token
        self.sent: list[dict[str, Any]] = []
        self.delivery: dict[str, str] = {}  # gateway id -> delivered | failed
        self.status_polls = 0
        self._faults: list[Fault] = []
        self._fail_next_delivery = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._ids: dict[str, str] = {}
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                gateway._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return  # the requests carry phone numbers: nothing to stderr

        self.server = _Server(("127.0.0.1", port), Handler)
        self.server.daemon_threads = False  # server_close joins them: no socket left open
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"

    @property
    def status_url(self) -> str:
        return self.url.rsplit("/", 1)[0] + "/status"

    def start(self) -> _FakeGateway:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()  # let a stalled request finish so shutdown returns
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, fault: str | int, seconds: float = 0.0, errcode: int = 0) -> None:
        """The next request fails: an HTTP status (500, 400...) or "timeout" (no answer
        for ``seconds``, longer than the client's timeout); the WeChat fake also takes
        "errcode" (HTTP 200 with that nonzero ``errcode``)."""
        if fault == "errcode" and not errcode:
            raise ValueError("fail_next('errcode') needs a nonzero errcode")
        with self._lock:
            self._faults.append((fault, seconds, errcode))

    def fail_delivery(self, gateway_id: str | None = None) -> None:
        """Report ``gateway_id`` (or, without one, the next message accepted) as failed."""
        with self._lock:
            if gateway_id is None:
                self._fail_next_delivery += 1
            else:
                self.delivery[gateway_id] = "failed"

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length)
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None and fault[0] == "timeout":
            self._release.wait(fault[1])
            return self._answer(req, 504, {"error": "stalled"})
        if fault is not None and fault[0] == "errcode":
            return self._answer(req, 200, {"errcode": fault[2], "errmsg": "injected"})
        if fault is not None:
            return self._answer(req, int(fault[0]), {"error": "injected"})
        if req.headers.get("Authorization") != f"Bearer {self.token}":
            return self._answer(req, 401, {"error": "bad credentials"})
        try:
            body = json.loads(raw)
            if req.path.split("?", 1)[0].endswith("/status"):
                return self._statuses(req, [str(i) for i in body["ids"]])
            record = self._accept(req, body)
        except (ValueError, KeyError, TypeError):
            return self._answer(req, 400, {"error": "bad body"})
        key = record["idempotency_key"]
        with self._lock:
            if key not in self._ids:
                self._ids[key] = message_id = f"{self.prefix}-{len(self._ids) + 1}"
                self.sent.append(record)
                failed = self._fail_next_delivery > 0 or message_id in self.delivery
                self._fail_next_delivery -= 1 if self._fail_next_delivery else 0
                self.delivery[message_id] = "failed" if failed else "delivered"
            message_id = self._ids[key]
        self._answer(req, 200, self._accepted(message_id))

    def _statuses(self, req: BaseHTTPRequestHandler, ids: list[str]) -> None:
        with self._lock:
            self.status_polls += 1
            issued = set(self._ids.values())
            known = {i: self.delivery[i] for i in ids if i in issued}
        self._answer(req, 200, {"statuses": known})

    def _accept(self, req: BaseHTTPRequestHandler, body: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _accepted(self, message_id: str) -> dict[str, Any]:
        raise NotImplementedError

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


class FakeSmsGateway(_FakeGateway):
    """The SMS gateway's wire (hq/channels/sms.py): ``{"to", "text", "idempotency_key"}``
    in, ``{"id"}`` out."""

    path = "/sms/send"
    prefix = "fake"

    def fail_next(self, fault: str | int, seconds: float = 0.0, errcode: int = 0) -> None:
        if fault == "errcode":
            raise ValueError("an SMS gateway answers with HTTP statuses, not WeChat errcodes")
        super().fail_next(fault, seconds)

    def _accept(self, req: BaseHTTPRequestHandler, body: Any) -> dict[str, Any]:
        return {
            "to": body["to"],
            "text": body["text"],
            "idempotency_key": body["idempotency_key"],
            "header_key": req.headers.get("Idempotency-Key"),
        }

    def _accepted(self, message_id: str) -> dict[str, Any]:
        return {"id": message_id}


class FakeWechatGateway(_FakeGateway):
    """The WeChat template-message adapter's wire (hq/channels/wechat.py): WeChat's own
    body ``{"touser", "template_id", "data", "url", "client_msg_id"}`` in, WeChat's
    ``{"errcode": 0, "errmsg": "ok", "msgid"}`` out; the idempotency key is the
    ``Idempotency-Key`` header (else ``client_msg_id``)."""

    path = "/wechat/template/send"
    prefix = "wx"

    def _accept(self, req: BaseHTTPRequestHandler, body: Any) -> dict[str, Any]:
        key = req.headers.get("Idempotency-Key") or body["client_msg_id"]
        if not (body["touser"] and body["template_id"] and isinstance(body["data"], dict)):
            raise ValueError("touser, template_id and data are required")
        return {
            "touser": body["touser"],
            "template_id": body["template_id"],
            "data": body["data"],
            "url": body.get("url", ""),
            "idempotency_key": key,
        }

    def _accepted(self, message_id: str) -> dict[str, Any]:
        return {"errcode": 0, "errmsg": "ok", "msgid": message_id}


def main() -> None:  # pragma: no cover - the demo's terminal
    """``python -m hq.channels.fake_gateway [SMS_PORT [WECHAT_PORT]]`` (8700, SMS_PORT + 1)."""
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8700
    wechat_port = int(sys.argv[2]) if len(sys.argv) > 2 else port + 1
    with FakeSmsGateway(port=port) as gw, FakeWechatGateway(port=wechat_port) as wx:
        print(f"fake SMS gateway at {gw.url}, token {gw.token!r}", flush=True)
        print(f"fake WeChat adapter at {wx.url}, token {wx.token!r}", flush=True)
        seen = seen_wx = 0
        while True:
            time.sleep(0.5)
            for message in gw.sent[seen:]:
                print(f"sms {mask_phone(message['to'])}: {message['text']}", flush=True)
            for message in wx.sent[seen_wx:]:
                text = message["data"].get("content", {}).get("value", "")
                print(f"wechat {message['touser'][:6]}…: {text}", flush=True)
            seen, seen_wx = len(gw.sent), len(wx.sent)


if __name__ == "__main__":  # pragma: no cover
    main()
