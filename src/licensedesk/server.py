"""The HTTP protocol `licensedesk serve` runs: uvicorn's httptools protocol with limits it lacks.

uvicorn's httptools protocol (the fast one, which the check's throughput depends on) bounds neither the
size of a request's head (request line and headers: it buffers a header until it ends, however long) nor
the time a client may take to send it (its keep-alive timeout is cancelled by any byte received), so one
client trickling bytes holds a connection, and the memory of its head, for as long as it likes: enough
such connections exhaust the process's file descriptors and starve every other client (slowloris).

This protocol adds, per connection:
- a head limit (HEADER_LIMIT): a head larger than 16 KiB (h11's and Node's default) is answered 431 with
  a problem document, and the connection is closed;
- a head timeout (LICENSEDESK_HTTP_HEAD_TIMEOUT_SECONDS, 10 s): a request's head must arrive within it of
  its first byte (or of the connection); otherwise the connection is closed;
- a body timeout (LICENSEDESK_HTTP_BODY_TIMEOUT_SECONDS, 30 s: 1 MiB, the API's body limit, at 35 KiB/s):
  its body must arrive within it of the head; otherwise the connection is closed and the application
  sees the client gone;
- timers that cost nothing per request: the parser's callbacks only note what the connection waits for,
  and one timer per connection is set when it must fire earlier than it would (a request that arrives
  whole in one chunk, the usual case, sets none; there were two set and two cancelled per request);
- one write per event-loop iteration (CoalescingTransport): uvicorn writes a response's head and body
  apart, two send system calls per answer; coalesced, the check answers ~25% more requests per second
  (bench P1: 0.48 -> 0.60 of the bare app's rate on one machine, `python -m bench --only P1`).
The bare app that P1 compares with runs under this same protocol (bench/bare_app.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from licensedesk.settings import get_settings

HEADER_LIMIT = 16 * 1024

_TOO_LARGE = json.dumps(
    {
        "type": "urn:licensedesk:problem:headers_too_large",
        "title": "Request header fields too large",
        "status": 431,
        "detail": f"the request line and headers may take at most {HEADER_LIMIT} bytes",
        "code": "headers_too_large",
    },
    separators=(",", ":"),
).encode()


class _HeadTooLarge(Exception):
    pass


_IDLE, _HEAD, _BODY = 0, 1, 2  # what a connection waits for (GuardedHttpToolsProtocol's timeouts)
FLUSH_AT = 64 * 1024  # pending bytes that are written at once, not at the end of the loop's iteration


class CoalescingTransport:
    """A connection's transport whose writes of one event-loop iteration go out in one write (one send
    system call, where there were two per response: uvicorn writes a response's head and its body apart;
    on loopback each send also runs the receiver's side in the kernel). Large writes go out at once, so
    flow control (pause_writing) works as before; closing writes what is pending first."""

    __slots__ = ("_loop", "_pending", "_scheduled", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0
        self._scheduled = False

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._pending.append(data)
        self._size += len(data)
        if self._size >= FLUSH_AT:
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush_soon)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush_soon(self) -> None:
        self._scheduled = False
        self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending = []
        self._size = 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._size + self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    head_limit = HEADER_LIMIT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.head_timeout = settings.http_head_timeout_seconds
        self.body_timeout = settings.http_body_timeout_seconds
        self._in_head = True  # waiting for (the rest of) a request's line and headers
        self._head_size = 0  # bytes of the current head parsed so far
        self._head_received = 0  # bytes received while the current head is incomplete
        self._too_large = False
        # The head and body timeouts: what the connection waits for (_IDLE: nothing of ours) since when.
        # The parser's callbacks only note it; one timer per connection is set after each chunk of data
        # (_reconcile), and only when it must fire earlier than it would: a request that arrives whole
        # in one chunk, the usual case, sets no timer at all (there were two set and two cancelled).
        self._phase = _HEAD
        self._phase_started = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # ---------------------------------------------------------------- timers

    def _enter(self, phase: int) -> None:
        self._phase = phase
        self._phase_started = self.loop.time()

    def _deadline(self) -> float | None:
        if self._phase == _HEAD:
            return self._phase_started + self.head_timeout
        if self._phase == _BODY:
            return self._phase_started + self.body_timeout
        return None

    def _reconcile(self) -> None:
        deadline = self._deadline()
        if deadline is None:
            return  # a pending timer will find nothing to do
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline:
                return  # it fires in time (and sets itself again if that is early)
            timer.cancel()
        self._timer = self.loop.call_at(deadline, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        deadline = self._deadline()
        if deadline is None:
            return
        if self.loop.time() < deadline:
            self._timer = self.loop.call_at(deadline, self._timed_out)
        elif not self.transport.is_closing():
            self.transport.close()

    def _stop_timer(self) -> None:
        self._phase = _IDLE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ---------------------------------------------------------------- the connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
        self._enter(_HEAD)  # the first request's head must arrive within the timeout of the connection
        self._reconcile()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def eof_received(self) -> None:
        # the client half-closed: the transport closes itself next, without the wrapper; write first
        transport = self.transport
        if isinstance(transport, CoalescingTransport):
            transport.flush()
        super().eof_received()

    def data_received(self, data: bytes) -> None:
        if self._too_large:
            return
        if self._phase == _IDLE and (self.cycle is None or self.cycle.response_complete):
            # bytes between requests begin the next head (uvicorn cancels its keep-alive timeout on any
            # byte; bare CRLFs, which the parser skips, held a connection open for ever)
            self._enter(_HEAD)
        if self._in_head:
            self._head_received += len(data)
        super().data_received(data)
        if self._in_head and self._head_received > self.head_limit and not self.transport.is_closing():
            # an unfinished head already larger than the limit (one long header still arriving)
            self._too_large = True
            self.send_400_response("")
        if not self._too_large:
            self._reconcile()

    def send_400_response(self, msg: str) -> None:
        if not self._too_large:
            super().send_400_response(msg)
            return
        self._stop_timer()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/problem+json\r\n"
            b"content-length: " + str(len(_TOO_LARGE)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + _TOO_LARGE
        )
        self.transport.close()

    # ---------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_size = 0
        if self._phase != _HEAD:  # after the connection's start, its first head is already timed
            self._enter(_HEAD)

    def _count(self, n: int) -> None:
        self._head_size += n
        if self._head_size > self.head_limit:
            self._too_large = True
            raise _HeadTooLarge  # httptools raises it as a parser error: send_400_response answers 431

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_received = 0
        self._enter(_BODY)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        self._in_head = True  # whatever comes next is the next request's head
        super().on_message_complete()
