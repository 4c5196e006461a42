"""Prometheus metrics: requests by route and status, latency, job queue depth, checks served."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("licensedesk.metrics")

registry = CollectorRegistry(auto_describe=True)

requests_total = Counter(
    "licensedesk_http_requests_total",
    "HTTP requests answered",
    ["method", "route", "status"],
    registry=registry,
)
request_seconds = Histogram(
    "licensedesk_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=registry,
)
checks_total = Counter(
    "licensedesk_checks_total", "Run-time license checks served", ["product", "outcome"], registry=registry
)
job_queue_depth = Gauge(
    "licensedesk_job_queue_depth", "Group processing jobs queued or running", registry=registry
)

_queue_depth_source: list[Callable[[], int]] = []


_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    key = (method, route, status)
    child = _children.get(key)
    if child is None:  # label lookups are not free; the hot path reuses the bound children
        child = (requests_total.labels(method, route, str(status)), request_seconds.labels(method, route))
        _children[key] = child
    child[0].inc()
    child[1].observe(seconds)


def set_queue_depth_source(source: Callable[[], int]) -> None:
    _queue_depth_source[:] = [source]


def render() -> bytes:
    if _queue_depth_source:
        try:
            job_queue_depth.set(_queue_depth_source[0]())
        except Exception as exc:  # the database is down: keep the last known depth, still serve metrics
            log.warning("job queue depth unavailable: %s", exc)
    return generate_latest(registry)
