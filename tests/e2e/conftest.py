"""Browser tests: Playwright driving Debian's chromium (never a downloaded browser) against a real
`licensedesk serve --demo` process. Without chromium they skip, unless LICENSEDESK_REQUIRE_BROWSER=1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent / "licensedesk"
SCREENSHOTS = Path(__file__).parent / "screenshots"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("LICENSEDESK_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@dataclass
class DemoServer:
    base: str
    admin_token: str
    operator_token: str
    env: dict[str, str]
    output: Path

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=10
        )


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    from tests.cli.test_serve_end_to_end import free_port

    tmp = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = {
        **os.environ,
        "LICENSEDESK_DATABASE_URL": f"sqlite:///{tmp / 'demo.db'}",
        "LICENSEDESK_LOG_LEVEL": "warning",
        "LICENSEDESK_WORKER_POLL_SECONDS": "0.2",
    }
    out = tmp / "serve.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [str(BIN), "serve", "--demo", "--port", str(port)], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/v1/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert proc.poll() is None, out.read_text(errors="replace")
        assert time.monotonic() < deadline, "demo server did not become ready"
        time.sleep(0.2)
    banner = out.read_text(errors="replace")
    tokens = {}
    for line in banner.splitlines():
        if line.startswith(("operator token", "Contoso admin")):
            tokens[line.split()[0]] = line.split()[-1]
    yield DemoServer(base, tokens["Contoso"], tokens["operator"], env, out)
    proc.terminate()
    proc.wait(timeout=15)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    path = chromium_path()
    if path is None:
        if os.environ.get("LICENSEDESK_REQUIRE_BROWSER") == "1":
            pytest.fail("LICENSEDESK_REQUIRE_BROWSER=1 but Debian's chromium is not installed")
        pytest.skip("browser tests need Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 900, "height": 600})
    pg = context.new_page()
    yield pg
    context.close()


def screenshot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
