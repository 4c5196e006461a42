"""Fixtures of the webhook tests: a real HTTP receiver, and the HTTP API fixtures of tests/api."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest

from tests.api.conftest import api  # noqa: F401 (the HTTP fixture, shared)
from tests.webhooks.receiver import Receiver, handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(Receiver("")))
    rec = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hooks/licensedesk")
    server.RequestHandlerClass = handler(rec)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()
