"""/demo/visual: a stand-in for the Innofalls Charts visual, using the JavaScript client with a dev-issuer
token (demo mode only). A licensed user sees a chart; an unlicensed one a blocking "license required"."""

from __future__ import annotations

import html
import json
from pathlib import Path
from string import Template
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from licensedesk.checks.service import Checker
from licensedesk.errors import NotFound

HERE = Path(__file__).parent
router = APIRouter(include_in_schema=False)
PRODUCT = "innofalls-charts"


@router.get("/demo/visual")
def visual(
    request: Request,
    user: Annotated[str, Query(min_length=3, max_length=320)],
    product: Annotated[str, Query(max_length=63)] = PRODUCT,
) -> HTMLResponse:
    checker: Checker = request.app.state.checker
    row, _plans = checker.product(product)
    page = Template((HERE / "templates" / "demo_visual.html").read_text(encoding="utf-8"))
    config = json.dumps({"user": user, "productId": product}).replace("</", "<\\/")
    body = page.substitute(product_name=html.escape(row.name), user=html.escape(user), config=config)
    return HTMLResponse(body, headers={"Cache-Control": "no-store"})


@router.get("/demo/token")
def token(
    request: Request,
    user: Annotated[str, Query(min_length=3, max_length=320)],
    product: Annotated[str, Query(max_length=63)] = PRODUCT,
    tenant: Annotated[str, Query(max_length=100)] = "contoso",
) -> JSONResponse:
    """A dev-issuer access token for a demo user (what acquireAADToken gives a real visual)."""
    checker: Checker = request.app.state.checker
    try:
        access_token = checker.mint_dev_token(tenant, user, product)
    except NotFound as exc:
        return JSONResponse({"code": exc.code, "detail": exc.detail}, status_code=404)
    return JSONResponse(
        {"accessToken": access_token, "tokenType": "Bearer"}, headers={"Cache-Control": "no-store"}
    )


@router.get("/demo/static/licensedesk-client.js")
def client_module() -> FileResponse:
    return FileResponse(HERE / "static" / "licensedesk-client.js", media_type="text/javascript")
