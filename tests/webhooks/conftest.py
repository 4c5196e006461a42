"""Fixtures of the webhook tests: a real HTTP receiver, and the HTTP API fixtures of tests/api."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest

from tests.api.conftest import api  # noqa: F401 (the HTTP fixture, shared)
from tests.webhooks.receiver import Receiver, handler


class _Server(ThreadingHTTPServer):
    # socketserver's listen backlog is 5, and several delivery workers send 8 at a time: the likely cause
    # of one wave of 8 deliveries never received in a CI run (test_several_workers_never_send_a_delivery_
    # twice, SQLite, a loaded machine; not reproduced locally)
    request_queue_size = 128
    daemon_threads = True


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = _Server(("127.0.0.1", 0), handler(Receiver("")))
    rec = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hooks/licensedesk")
    server.RequestHandlerClass = handler(rec)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()
