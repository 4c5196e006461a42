"""Real server processes for the HTTP benchmarks, and wrk to load them."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError("server did not become ready")
        time.sleep(0.1)


@contextmanager
def licensedesk_server(database_url: str, **env: str) -> Iterator[str]:
    """`licensedesk serve` (one process, API and worker) on a free port; yields its base URL."""
    port = free_port()
    environ = {
        **os.environ,
        "LICENSEDESK_DATABASE_URL": database_url,
        "LICENSEDESK_DEV_ISSUER": "1",
        "LICENSEDESK_LOG_LEVEL": "warning",
        "LICENSEDESK_PUBLIC_URL": f"http://127.0.0.1:{port}",
        # the benchmarks load the server with one token from one address, far past the rate limits
        # meant for real clients: the limits are raised out of the way, but still checked per request
        "LICENSEDESK_CHECK_RATE_PER_TOKEN": "1e9",
        "LICENSEDESK_CHECK_RATE_PER_ADDRESS": "1e9",
        "LICENSEDESK_API_RATE_PER_CREDENTIAL": "1e9",
        "LICENSEDESK_SCIM_RATE_PER_CREDENTIAL": "1e9",
        **env,
    }
    proc = subprocess.Popen(
        [str(BIN / "licensedesk"), "serve", "--port", str(port)],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/v1/health", proc)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@contextmanager
def bare_server() -> Iterator[str]:
    """The reference: a bare ASGI app answering a constant JSON body, under the same server settings as
    `licensedesk serve` (uvicorn, its HTTP protocol, no access log)."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "python"), "-m", "bench.bare_app", "--port", str(port)],
        cwd=str(Path(__file__).parent.parent),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/", proc)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def server_pid(base: str) -> int | None:
    port = base.rsplit(":", 1)[1]
    out = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"pid=(\d+)", out)
    return int(match.group(1)) if match else None


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ensure_wrk() -> str:
    """wrk from Debian's packages, installed when missing."""
    path = shutil.which("wrk")
    if path:
        return path
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env, capture_output=True)
    path = shutil.which("wrk")
    if not path:
        raise RuntimeError("wrk is not available")
    return path


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _latency(text: str, label: str) -> float:
    match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")


def wrk(
    url: str,
    *,
    connections: int = 32,
    threads: int = 2,
    seconds: int = 10,
    headers: dict[str, str] | None = None,
) -> WrkResult:
    cmd = [ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        rps,
        _latency(out, "50"),
        _latency(out, "99"),
        int(non_2xx.group(1)) if non_2xx else 0,
        sum(int(g) for g in errors.groups()) if errors else 0,
    )
