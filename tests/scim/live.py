"""A real `licensedesk serve` process on a free port (the database given), for the SCIM tests that need
one: scim2-tester and the provisioning sequences of Entra and Okta."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from scim2_client.client import BaseSyncSCIMClient

BIN = Path(sys.executable).parent / "licensedesk"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@contextmanager
def serve(database_url: str, log: Path) -> Iterator[tuple[str, dict[str, str]]]:
    env = {**os.environ, "LICENSEDESK_DATABASE_URL": database_url, "LICENSEDESK_WORKER_POLL_SECONDS": "0.05"}
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([str(BIN), "serve", "--port", str(port)], env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/v1/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)
        yield base, env
    finally:
        proc.terminate()
        proc.wait(timeout=15)


class HttpxScimClient(BaseSyncSCIMClient):
    """scim2-client over httpx (its own network engine needs httpx2, which the project does not use)."""

    def __init__(self, client: httpx.Client, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client = client

    def _stays_under_base_url(self, endpoint: str) -> bool:
        url = self.client.build_request("GET", endpoint).url
        base = self.client.base_url
        return url.host == base.host and url.port == base.port and url.raw_path.startswith(base.raw_path)

    def _parse_json(self, response: Any) -> Any:
        return response.json()

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        return self.client.request(method, url, **kwargs)
