"""Logging: one line per record, with the request id of the request it belongs to."""

from __future__ import annotations

import logging
import sys
import time

from licensedesk.api.middleware import request_id_var

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get() or "-"
        return True


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # the access log is ours (licensedesk.access), with the request id; uvicorn's would repeat it
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


class FailureStreak:
    """The failures of a background loop (the worker, the webhook dispatcher, a periodic flush) logged
    without flooding the log while the database is down: the first of a streak with its traceback, then
    one line at most every `every_seconds`, and the recovery once."""

    def __init__(self, logger: logging.Logger, what: str, *, every_seconds: float = 60.0) -> None:
        self.log = logger
        self.what = what
        self.every_seconds = every_seconds
        self.failures = 0
        self._last_logged = 0.0

    def failed(self) -> None:
        """Call from an `except` block."""
        self.failures += 1
        now = time.monotonic()
        if self.failures == 1:
            self.log.exception("%s failed; retrying", self.what)
            self._last_logged = now
        elif now - self._last_logged >= self.every_seconds:
            error = sys.exc_info()[1]
            self.log.warning("%s still failing (%d attempts so far): %s", self.what, self.failures, error)
            self._last_logged = now

    def succeeded(self) -> None:
        if self.failures:
            self.log.warning("%s works again after %d failed attempts", self.what, self.failures)
            self.failures = 0
