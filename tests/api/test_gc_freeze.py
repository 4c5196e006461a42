"""Settings.gc_freeze: a server moves what its startup made into the collector's permanent generation, so
that full collections under load scan only what was made since (they paused a loaded server for ~120 ms,
tests/reliability/test_load_while_writing.py). Off by default: `serve` turns it on."""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient

from licensedesk.app import create_app
from licensedesk.settings import Settings


def test_the_app_freezes_the_collector_after_startup_only_when_asked(db, database_url):  # type: ignore[no-untyped-def]
    gc.unfreeze()
    try:
        plain = create_app(Settings(database_url=database_url), db=db, run_worker=False, migrate=False)
        with TestClient(plain) as client:
            assert client.get("/v1/health").status_code == 200
            assert gc.get_freeze_count() == 0
        app = create_app(
            Settings(database_url=database_url, gc_freeze=True), db=db, run_worker=False, migrate=False
        )
        with TestClient(app) as client:
            assert client.get("/v1/health").status_code == 200
            assert gc.get_freeze_count() > 10_000  # the application, its routes, models and tables
    finally:
        gc.unfreeze()
