"""A background loop failing every second while the database is down logs the first failure with its
traceback, then a line at most every minute, then its recovery once (not a traceback per second)."""

from __future__ import annotations

import logging

from licensedesk import logs
from licensedesk.logs import FailureStreak


def test_a_streak_of_failures_logs_one_traceback_then_a_line_a_minute_then_the_recovery(monkeypatch, caplog):
    now = [1000.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: now[0])
    streak = FailureStreak(logging.getLogger("licensedesk.test"), "worker loop", every_seconds=60)
    caplog.set_level(logging.INFO, logger="licensedesk.test")

    def fail_for(seconds: int) -> None:
        for _ in range(seconds):
            try:
                raise ConnectionError("connection refused")
            except ConnectionError:
                streak.failed()
            now[0] += 1

    fail_for(150)  # two and a half minutes of an outage, one attempt a second
    records = caplog.records
    assert [r.levelno for r in records] == [logging.ERROR, logging.WARNING, logging.WARNING]
    assert records[0].exc_info is not None and "worker loop failed" in records[0].getMessage()
    assert all(r.exc_info is None for r in records[1:])
    assert "61 attempts" in records[1].getMessage() and "connection refused" in records[1].getMessage()
    caplog.clear()
    streak.succeeded()
    streak.succeeded()
    assert [r.getMessage() for r in caplog.records] == ["worker loop works again after 150 failed attempts"]
    caplog.clear()
    fail_for(1)  # a new streak starts with a traceback again
    assert caplog.records[0].exc_info is not None


def test_success_without_failures_logs_nothing(caplog):
    caplog.set_level(logging.INFO, logger="licensedesk.test")
    FailureStreak(logging.getLogger("licensedesk.test"), "flush").succeeded()
    assert caplog.records == []
