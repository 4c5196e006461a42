"""The benchmark runner: `python -m bench [--only P3,P4] [--backends sqlite,postgresql] [--quick]`.

`--only GROUPS` runs bench/scale_groups.py (a group of 1,000,000 members, a 1,000-level nesting chain):
not one of SPEC section 9's bars, so not part of a default or full run.

Runs the bars' scripts on each backend and prints one table: bar, what was measured, backend, figure, the
bar, pass/fail. A run of every bar on both backends, not --quick, writes bench/results.md; other runs write
bench/data/last-run.md, so a smoke check never replaces the recorded figures.

PostgreSQL comes from LICENSEDESK_BENCH_POSTGRES_URL or LICENSEDESK_TEST_POSTGRES_URL
(e.g. postgresql://postgres@127.0.0.1:5432/postgres); each script makes its own throw-away database on
that server and drops it after (P4 keeps one cached database, see bench/p4_directory.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import data, p3_fanout, p4_directory
from bench.report import Row

BACKENDS = ("sqlite", "postgresql")
RESULTS = data.BENCH_DIR / "results.md"
LAST_RUN = data.DATA_DIR / "last-run.md"
NOTES_MARKER = "<!-- notes: kept by the runner when it rewrites this file -->"

Script = Callable[[str, argparse.Namespace, Console], list[Row]]


def _p3(backend: str, args: argparse.Namespace, console: Console) -> list[Row]:
    with data.throwaway_database(backend, "p3") as url:
        return p3_fanout.run(
            backend,
            url,
            quick=args.quick,
            repeats=args.repeats or (1 if args.quick else 3),
            console=console,
            trace_sql=args.trace_sql,
            profile=args.profile,
        )


def _p4(backend: str, args: argparse.Namespace, console: Console) -> list[Row]:
    from bench import p4_portal

    passes = args.repeats or (1 if args.quick else 3)
    rows = p4_directory.run(
        backend, quick=args.quick, passes=passes, console=console, trace_sql=args.trace_sql
    )
    # the admin portal's pages on the same directory, for information (SPEC section 6: works at 1M users)
    return rows + p4_portal.run(backend, quick=args.quick, passes=passes, console=console)


def _p1(backend: str, args: argparse.Namespace, console: Console) -> list[Row]:
    from bench import p1_check

    with data.throwaway_database(backend, "p1") as url:
        return p1_check.run(
            backend, url, quick=args.quick, repeats=args.repeats or (1 if args.quick else 3), console=console
        )


def _p2(backend: str, args: argparse.Namespace, console: Console) -> list[Row]:
    from bench import p2_time_to_effect

    with data.throwaway_database(backend, "p2") as url:
        return p2_time_to_effect.run(backend, url, quick=args.quick, console=console)


def _p5(backend: str, args: argparse.Namespace, console: Console) -> list[Row]:
    from bench import p5_scim

    with data.throwaway_database(backend, "p5") as url:
        return p5_scim.run(backend, url, quick=args.quick, console=console)


def _p6(backend: str, args: argparse.Namespace, console: Console) -> list[Row]:
    from bench import p6_memory

    return p6_memory.run(backend, quick=args.quick, console=console)


def _groups(backend: str, args: argparse.Namespace, console: Console) -> list[Row]:
    from bench import scale_groups

    with data.throwaway_database(backend, "groups") as url:
        return scale_groups.run(backend, url, quick=args.quick, console=console)


SCRIPTS: dict[str, tuple[str, Script]] = {
    "P1": ("check throughput over HTTP", _p1),
    "P2": ("time to effect across processes", _p2),
    "P3": ("group fan-out", _p3),
    "P4": ("directory of 1,000,000 users, and the portal's pages on it", _p4),
    "P5": ("SCIM provisioning", _p5),
    "P6": ("server memory with 1,000,000 users", _p6),
}
# run only when named with --only
EXTRA: dict[str, tuple[str, Script]] = {
    "GROUPS": ("large groups and deep nesting", _groups),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=",".join(SCRIPTS), help="bars to run, e.g. P3,P4")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="sqlite,postgresql")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one repetition: a smoke check")
    parser.add_argument("--repeats", type=int, default=0, help="repetitions (default 3, 1 with --quick)")
    parser.add_argument(
        "--trace-sql", action="store_true", help="time each SQL statement of the last repetition"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the last P3 repetition")
    parser.add_argument("--results", type=Path, default=None, help="where to write the run (markdown)")
    args = parser.parse_args(argv)

    bars = [b.strip().upper() for b in args.only.split(",") if b.strip()]
    backends = [b.strip().lower() for b in args.backends.split(",") if b.strip()]
    scripts = {**SCRIPTS, **EXTRA}
    unknown = [b for b in bars if b not in scripts] + [b for b in backends if b not in BACKENDS]
    if unknown:
        parser.error(
            f"unknown: {', '.join(unknown)} (bars: {', '.join(scripts)}; backends: {', '.join(BACKENDS)})"
        )

    console = Console()
    if not console.is_terminal:  # a log file: wide enough for the table's rows
        console = Console(width=200)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    rows: list[Row] = []
    for bar in bars:
        for backend in backends:
            if backend == "postgresql" and not data.postgres_url():
                rows.append(
                    Row(
                        bar,
                        scripts[bar][0],
                        backend,
                        "-",
                        "PostgreSQL",
                        None,
                        ["set LICENSEDESK_BENCH_POSTGRES_URL or LICENSEDESK_TEST_POSTGRES_URL"],
                    )
                )
                continue
            console.rule(f"{bar} on {backend}")
            try:
                rows += scripts[bar][1](backend, args, console)
            except Exception as exc:  # one broken script must not hide the other bars' figures
                console.print_exception()
                rows.append(Row(bar, scripts[bar][0], backend, "error", "runs", False, [repr(exc)]))
    elapsed = time.perf_counter() - t0

    console.print(_table(rows))
    # a smoke check, a one-backend run or a run of some bars never replaces the recorded figures
    full = (
        not args.quick
        and set(backends) == set(BACKENDS)
        and set(bars) == set(SCRIPTS)
        and bool(data.postgres_url())
    )
    target = args.results or (RESULTS if full else LAST_RUN)
    _write_markdown(target, rows, started, elapsed, argv if argv is not None else sys.argv[1:])
    console.print(f"written to {target}")
    for row in rows:
        if row.details and (args.trace_sql or args.profile or row.ok is False):
            console.print(f"[bold]{row.bar} {row.backend}: {row.what}[/bold]")
            for line in row.details:
                console.print(line, markup=False, highlight=False)
    return 1 if any(r.ok is False for r in rows) else 0


def _table(rows: list[Row]) -> Table:
    table = Table(title="licensedesk benchmarks (SPEC section 9)")
    for name in ("bar", "what was measured", "backend", "figure", "the bar", "result"):
        table.add_column(name, no_wrap=name not in ("what was measured",))
    style = {"PASS": "green", "FAIL": "bold red", "info": "dim", "skipped": "yellow"}
    for r in rows:
        table.add_row(
            r.bar, r.what, r.backend, r.figure, r.target or "-", f"[{style[r.verdict]}]{r.verdict}[/]"
        )
    return table


def machine() -> dict[str, str]:
    mem = "?"
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus (nproc)": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "python": platform.python_version(),
        "os": platform.platform(),
        "commit": _git("rev-parse", "--short", "HEAD")
        + (" (with local changes)" if _git("status", "--porcelain") else ""),
        "postgresql": _pg_version(),
    }


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=data.BENCH_DIR, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _pg_version() -> str:
    url = data.postgres_url()
    if not url:
        return "not used"
    from sqlalchemy import create_engine, text

    from licensedesk.db.engine import normalize_url

    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one())
    finally:
        engine.dispose()


def _write_markdown(path: Path, rows: list[Row], started: datetime, elapsed: float, argv: list[str]) -> None:
    notes = ""
    if path.exists():
        old = path.read_text()
        if NOTES_MARKER in old:
            notes = old[old.index(NOTES_MARKER) :]
    lines = [
        "# Benchmark results",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} minutes, with:",
        "",
        "```",
        "python -m bench " + " ".join(shlex.quote(a) for a in argv),
        "```",
        "",
        "| machine | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in machine().items()],
        "",
        "| bar | what was measured | backend | figure | the bar | result |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r.bar} | {r.what} | {r.backend} | {r.figure} | {r.target or '-'} | {r.verdict} |"
            for r in rows
        ],
        "",
        "## Details",
        "",
    ]
    for r in rows:
        if r.details:
            lines += [f"**{r.bar} {r.backend}: {r.what}**", "", "```", *r.details, "```", ""]
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + notes
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
