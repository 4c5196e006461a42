"""server.CoalescingTransport: the writes of one event-loop iteration go out in one write (a response's
head and body were two send system calls); large writes go out at once (flow control keeps working);
closing writes what is pending first. And over a real `licensedesk serve`: pipelined requests each get
their whole answer, in order."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from licensedesk.server import FLUSH_AT, CoalescingTransport
from tests.cli.test_serve_end_to_end import free_port


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        self.paused = True


def test_writes_of_one_iteration_go_out_together_large_ones_at_once_and_close_flushes() -> None:
    async def scenario() -> None:
        fake = FakeTransport()
        t: Any = CoalescingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        t.write(b"")
        t.write(b"{}")
        assert fake.writes == [] and t.get_write_buffer_size() == 40
        await asyncio.sleep(0)
        assert fake.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        await asyncio.sleep(0)
        assert len(fake.writes) == 1  # nothing more to write

        t.write(b"head")
        t.write(b"x" * FLUSH_AT)  # large: at once, after what was pending
        assert fake.writes[1:] == [b"head" + b"x" * FLUSH_AT]

        t.writelines([b"a", b"b"])
        t.close()  # what is pending first
        assert fake.writes[2:] == [b"ab"] and fake.closed
        t.write(b"late")
        await asyncio.sleep(0)
        assert fake.writes[3:] == []  # never written to a closing transport
        t.pause_reading()  # everything else is the transport's
        assert fake.paused

    asyncio.run(scenario())


def test_pipelined_requests_each_get_their_whole_answer_in_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    env = {
        **os.environ,
        "LICENSEDESK_DATABASE_URL": f"sqlite:///{tmp_path}/p.db",
        "LICENSEDESK_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "licensedesk"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            request = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
            s.sendall(request * 20)  # twenty requests in one packet
            received = b""
            deadline = time.monotonic() + 10
            while received.count(b"HTTP/1.1 200 OK") < 20 or not received.endswith(b"}"):
                assert time.monotonic() < deadline, received[-300:]
                received += s.recv(65536)
        answers = received.split(b"HTTP/1.1 ")[1:]
        assert len(answers) == 20
        for answer in answers:
            head, _, body = answer.partition(b"\r\n\r\n")
            length = int(
                next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
            )
            assert head.startswith(b"200 OK") and len(body) == length
    finally:
        proc.terminate()
        proc.wait(timeout=20)
