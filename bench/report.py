"""What a benchmark answers: rows of the one table the runner prints, and helpers to measure."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event


@dataclass
class Row:
    bar: str  # P3, P4 ...
    what: str
    backend: str
    figure: str
    target: str  # the bar, in words ("<= 1.5 s"); "" when only informative
    ok: bool | None  # None: informative or skipped
    details: list[str] = field(default_factory=list)  # for results.md

    @property
    def verdict(self) -> str:
        if self.ok is None:
            return "info" if self.target == "" else "skipped"
        return "PASS" if self.ok else "FAIL"


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), nearest rank, as load tools quote it."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, round(p / 100 * len(ordered) + 0.4999))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def secs(seconds: float) -> str:
    return f"{seconds:.2f} s"


class SqlTrace:
    """Time per SQL statement on an engine, for finding where a benchmark's time goes (--trace-sql)."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)
        self.rows: dict[str, int] = defaultdict(int)

    @contextmanager
    def attached(self, engine: Any) -> Iterator[SqlTrace]:
        def before(
            conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool
        ) -> None:
            conn.info.setdefault("_bench_t0", []).append(time.perf_counter())

        def after(
            conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool
        ) -> None:
            t0 = conn.info["_bench_t0"].pop()
            self.total[statement] += time.perf_counter() - t0
            self.count[statement] += 1
            rowcount = getattr(cursor, "rowcount", -1)
            if rowcount and rowcount > 0:
                self.rows[statement] += rowcount

        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
        try:
            yield self
        finally:
            event.remove(engine, "before_cursor_execute", before)
            event.remove(engine, "after_cursor_execute", after)

    def top(self, n: int = 12) -> list[str]:
        grand = sum(self.total.values()) or 1.0
        lines = [f"SQL time {grand:.3f} s in {sum(self.count.values())} statements; the costliest:"]
        for stmt, t in sorted(self.total.items(), key=lambda kv: -kv[1])[:n]:
            one_line = " ".join(stmt.split())
            lines.append(
                f"  {t:8.3f} s {100 * t / grand:5.1f}%  x{self.count[stmt]:<5} rows {self.rows[stmt]:<8} "
                f"{one_line[:220]}"
            )
        return lines
