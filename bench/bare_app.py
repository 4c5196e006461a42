"""P1's reference: the least an ASGI app can do to answer the check's JSON; `python -m bench.bare_app
--port N` serves it under the server settings of `licensedesk serve` (uvicorn with its HTTP protocol)."""

import argparse

BODY = (
    b'{"plans":[{"spIdentifier":"innofalls.charts.pro","state":1}],'
    b'"isLicenseUnsupportedEnv":false,"isLicenseInfoAvailable":true}'
)
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


if __name__ == "__main__":
    import uvicorn

    from licensedesk.server import GuardedHttpToolsProtocol

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvicorn.run(
        "bench.bare_app:app",
        host="127.0.0.1",
        port=parser.parse_args().port,
        log_level="warning",
        access_log=False,
        http=GuardedHttpToolsProtocol,  # as `licensedesk serve` runs
    )
