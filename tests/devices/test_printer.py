"""The print queue and worker: durable jobs, paper out, unplug, and a network printer."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from pathlib import Path

import pytest

from core.errors import DeviceError
from edge.devices.display import VirtualDisplay
from edge.devices.escpos_decode import decode
from edge.devices.print_queue import PrintQueue
from edge.devices.printer import PAPER_OUT, EscposTransport, PrinterWorker, VirtualPrinter
from edge.devices.profiles import ProfileLibrary
from edge.devices.receipt_render import RenderOptions
from edge.devices.state import Backoff, DeviceState, HealthTracker

from .conftest import make_receipt, wait_for

LIB = ProfileLibrary()
P80 = LIB.load("virtual_printer_80mm")


def enqueue_receipt(queue: PrintQueue, **overrides) -> str:
    receipt = make_receipt(**overrides)
    return queue.enqueue("receipt", {"receipt": receipt.to_dict(), "open_drawer": False})


@pytest.fixture
def queue(tmp_path: Path):
    q = PrintQueue(tmp_path / "print_queue.sqlite3")
    yield q
    q.close()


def make_worker(transport, queue, profile=P80) -> tuple[PrinterWorker, HealthTracker]:
    health = HealthTracker()
    worker = PrinterWorker(transport, profile, queue, health, Backoff(0.01, 0.05), RenderOptions())
    return worker, health


def test_queue_survives_a_restart(tmp_path: Path):
    path = tmp_path / "q.sqlite3"
    q = PrintQueue(path)
    first = enqueue_receipt(q, document_no="A")
    second = enqueue_receipt(q, document_no="B")
    q.mark_done(first)
    q.close()
    again = PrintQueue(path)
    job = again.next_queued()
    assert job is not None and job.id == second
    assert job.payload["receipt"]["document_no"] == "B"
    assert again.depth() == 1
    again.close()


def test_queue_order_attempts_and_failure(queue):
    a = enqueue_receipt(queue, document_no="A")
    b = enqueue_receipt(queue, document_no="B")
    queue.record_attempt(a, "paper out")
    job = queue.next_queued()
    assert job.id == a and job.attempts == 1 and job.last_error == "paper out"
    queue.mark_failed(a, "bad data")
    assert queue.next_queued().id == b
    assert queue.get(a).status == "failed"


def test_purge_keeps_queued_jobs(queue):
    done = enqueue_receipt(queue)
    waiting = enqueue_receipt(queue)
    queue.mark_done(done)
    assert queue.purge_finished(older_than_s=-1) == 1
    assert queue.get(done) is None
    assert queue.get(waiting).status == "queued"


def test_worker_prints_queued_jobs_in_order(queue):
    printer = VirtualPrinter()
    worker, health = make_worker(printer, queue)
    ids = [enqueue_receipt(queue, document_no=f"NO-{i}") for i in range(3)]
    worker.start()
    try:
        worker.wake()
        wait_for(lambda: queue.depth() == 0)
    finally:
        worker.stop()
    assert [queue.get(i).status for i in ids] == ["done"] * 3
    assert len(printer.jobs) == 3
    numbers = [next(x for x in decode(job).lines if x.startswith("单号")) for job in printer.jobs]
    assert [n.split()[-1] for n in numbers] == ["NO-0", "NO-1", "NO-2"]


def test_paper_out_keeps_the_job_until_paper_returns(queue):
    printer = VirtualPrinter()
    printer.set_paper(PAPER_OUT)
    worker, health = make_worker(printer, queue)
    job_id = enqueue_receipt(queue)
    worker.start()
    try:
        wait_for(lambda: health.state == DeviceState.PAPER_OUT)
        assert queue.get(job_id).status == "queued"
        assert printer.jobs == []
        assert "paper out" in health.health.last_error
        printer.set_paper(2)
        wait_for(lambda: queue.get(job_id).status == "done")
        wait_for(lambda: health.state == DeviceState.READY)
    finally:
        worker.stop()
    assert len(printer.jobs) == 1


def test_unplugged_printer_reconnects_and_prints(queue):
    printer = VirtualPrinter()
    printer.unplug()
    worker, health = make_worker(printer, queue)
    job_id = enqueue_receipt(queue)
    worker.start()
    try:
        wait_for(lambda: health.state == DeviceState.DISCONNECTED and health.health.last_error)
        assert "unplugged" in health.health.last_error
        printer.plug()
        wait_for(lambda: queue.get(job_id).status == "done")
    finally:
        worker.stop()


def test_write_failure_mid_job_retries_the_whole_job(queue):
    printer = VirtualPrinter()
    printer.fail_writes = 2
    worker, health = make_worker(printer, queue)
    job_id = enqueue_receipt(queue)
    worker.start()
    try:
        wait_for(lambda: queue.get(job_id).status == "done")
    finally:
        worker.stop()
    assert queue.get(job_id).attempts == 3
    assert len(printer.jobs) == 1
    assert printer.open_count >= 3  # reopened after each failure


def test_a_job_that_cannot_be_rendered_does_not_block_the_queue(queue):
    printer = VirtualPrinter()
    worker, health = make_worker(printer, queue)
    bad = queue.enqueue("receipt", {"receipt": {"kind": "sale"}})  # missing fields
    good = enqueue_receipt(queue)
    worker.start()
    try:
        wait_for(lambda: queue.get(good).status == "done")
    finally:
        worker.stop()
    assert queue.get(bad).status == "failed"
    assert "TypeError" in queue.get(bad).last_error


def test_drawer_kick_is_sent_when_requested(queue):
    printer = VirtualPrinter()
    worker, health = make_worker(printer, queue)
    worker.start()
    try:
        wait_for(lambda: health.state == DeviceState.READY)
        worker.request_drawer()
        wait_for(lambda: printer.jobs)
    finally:
        worker.stop()
    assert printer.jobs == [b"\x1bp\x00\x32\x32"]


class RecordingPrinterServer:
    """A TCP listener on 127.0.0.1 that records what a raw (port 9100) printer would receive."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received = bytearray()
        self.connections = 0
        self.paper_reply: bytes | None = None  # answer to DLE EOT 4, like an Epson would
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.settimeout(0.2)
            with conn:
                while not self._stop.is_set():
                    try:
                        chunk = conn.recv(65536)
                    except TimeoutError:
                        continue
                    if not chunk:
                        break
                    self.received += chunk
                    if self.paper_reply is not None and b"\x10\x04\x04" in chunk:
                        conn.sendall(self.paper_reply)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def server():
    s = RecordingPrinterServer()
    yield s
    s.close()


def test_network_printer_receives_the_receipt_bytes(server, queue):
    pytest.importorskip("escpos")
    transport = EscposTransport(
        "network", P80, host="127.0.0.1", tcp_port=server.port, timeout_s=2, query_status=False
    )
    worker, health = make_worker(transport, queue)
    job_id = enqueue_receipt(queue)
    worker.start()
    try:
        wait_for(lambda: queue.get(job_id).status == "done")
    finally:
        worker.stop()
    expected = worker.render_job(queue.get(job_id))
    wait_for(lambda: len(server.received) >= len(expected))
    assert bytes(server.received) == expected
    assert "应付" in "\n".join(decode(bytes(server.received)).lines)


def test_network_printer_paper_status_over_tcp(server, queue):
    pytest.importorskip("escpos")
    server.paper_reply = b"\x72"  # paper end sensor: no paper
    transport = EscposTransport(
        "network", P80, host="127.0.0.1", tcp_port=server.port, timeout_s=2, query_status=True
    )
    worker, health = make_worker(transport, queue)
    job_id = enqueue_receipt(queue)
    worker.start()
    try:
        wait_for(lambda: health.state == DeviceState.PAPER_OUT)
        assert queue.get(job_id).status == "queued"
        server.paper_reply = b"\x12"  # paper loaded
        wait_for(lambda: queue.get(job_id).status == "done")
    finally:
        worker.stop()
    expected = worker.render_job(queue.get(job_id))
    wait_for(lambda: bytes(server.received).endswith(expected))
    assert bytes(server.received).replace(b"\x10\x04\x04", b"") == expected


def test_network_printer_down_keeps_the_job(queue):
    pytest.importorskip("escpos")
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = EscposTransport("network", P80, host="127.0.0.1", tcp_port=port, timeout_s=0.5)
    worker, health = make_worker(transport, queue)
    job_id = enqueue_receipt(queue)
    worker.start()
    try:
        wait_for(lambda: health.health.last_error is not None)
        time.sleep(0.05)
    finally:
        worker.stop()
    assert "cannot open network printer" in health.health.last_error
    assert queue.get(job_id).status == "queued"


def test_file_printer_writes_to_the_device_file(tmp_path, queue):
    pytest.importorskip("escpos")
    target = tmp_path / "lp0"
    target.write_bytes(b"")
    transport = EscposTransport("file", P80, device_file=str(target))
    worker, health = make_worker(transport, queue)
    job_id = enqueue_receipt(queue)
    worker.start()
    try:
        wait_for(lambda: queue.get(job_id).status == "done")
    finally:
        worker.stop()
    assert target.read_bytes() == worker.render_job(queue.get(job_id))


def test_write_without_open_is_a_device_error():
    with pytest.raises(DeviceError):
        VirtualPrinter().write(b"x")
    with pytest.raises(DeviceError):
        EscposTransport("network", P80, host="127.0.0.1").write(b"x")


def test_a_stale_queued_job_renders_without_its_drawer_kick(queue):
    worker, _ = make_worker(VirtualPrinter(), queue)
    job_id = queue.enqueue("receipt", {"receipt": make_receipt().to_dict(), "open_drawer": True})
    fresh = queue.get(job_id)
    assert decode(worker.render_job(fresh)).drawer_kicks == 1
    stale = dataclasses.replace(fresh, created_at=fresh.created_at - worker.DRAWER_MAX_AGE_S - 1)
    assert decode(worker.render_job(stale)).drawer_kicks == 0


@pytest.mark.parametrize(
    ("device", "record"), [(VirtualPrinter, "jobs"), (VirtualDisplay, "writes")]
)
def test_virtual_devices_keep_only_their_latest_writes(device, record):
    """A demo till writes a receipt and two display frames a sale, all day: the virtual
    devices keep a bounded tail (they kept everything, and the till server grew without end)."""
    dev = device()
    dev.open()
    for i in range(device.KEPT_WRITES + 500):
        dev.write(f"write {i}".encode())
    kept = getattr(dev, record)
    assert len(kept) == device.KEPT_WRITES
    assert kept[0] == b"write 500"
    assert kept[-1] == f"write {device.KEPT_WRITES + 499}".encode()
