"""P1's reference: the least an ASGI app can do to answer the check's JSON."""

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
