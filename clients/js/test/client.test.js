import assert from "node:assert/strict";
import http from "node:http";
import { mock, test } from "node:test";

import { LicenseCheckError, ServicePlanState, createLicenseManager, isUsable } from "../index.js";

const BASE = "https://licensedesk.test";
const PRODUCT = "innofalls-charts";
const URL_ = `${BASE}/v1/licensing/${PRODUCT}/servicePlans`;
const LICENSED_BODY =
  '{"plans":[{"spIdentifier":"innofalls.charts.pro","state":1}],"isLicenseUnsupportedEnv":false,"isLicenseInfoAvailable":true}';
const LICENSED = JSON.parse(LICENSED_BODY);
const UNAVAILABLE = { plans: [], isLicenseUnsupportedEnv: false, isLicenseInfoAvailable: false };
const KEYS = ["plans", "isLicenseUnsupportedEnv", "isLicenseInfoAvailable"];

/** A 200 as licensedesk sends it. */
function ok(body = LICENSED_BODY, etag = '"e1"') {
  return new Response(body, {
    status: 200,
    headers: { "Content-Type": "application/json", ETag: etag, "Cache-Control": "private, no-cache" },
  });
}

function status(code, body = "", headers = {}) {
  return new Response(code === 304 ? null : body, { status: code, headers });
}

/**
 * A fake fetch answering from a script: each entry is a Response, a function (url, init) => Response,
 * or an Error to reject with. Records every call as { url, init, headers } (headers lower-cased).
 */
function fakeFetch(...script) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    const headers = Object.fromEntries(Object.entries(init.headers || {}).map(([k, v]) => [k.toLowerCase(), v]));
    calls.push({ url, init, headers });
    if (script.length === 0) throw new Error(`unexpected request #${calls.length}`);
    const next = script.shift();
    if (next instanceof Error) throw next;
    return typeof next === "function" ? next(url, init) : next;
  };
  fetch.calls = calls;
  return fetch;
}

function tokens(...values) {
  const getToken = mock.fn(async () => {
    if (values.length === 0) throw new Error("no more tokens");
    return values.length === 1 ? values[0] : values.shift();
  });
  return getToken;
}

function manager(fetch, overrides = {}) {
  return createLicenseManager({ baseUrl: BASE, productId: PRODUCT, getToken: tokens("tok-1"), fetch, ...overrides });
}

/** Asserts "could not tell" with an error of `code`, and never an empty answer claiming to be available. */
function assertUnavailable(result, code, httpStatus) {
  assert.deepEqual(result, UNAVAILABLE);
  assert.deepEqual(Object.keys(result), KEYS);
  assert.ok(result.error instanceof LicenseCheckError, "error is a LicenseCheckError");
  assert.equal(result.error.code, code);
  if (httpStatus !== undefined) assert.equal(result.error.status, httpStatus);
  assert.equal(JSON.stringify(result), JSON.stringify(UNAVAILABLE));
}

// ---------------------------------------------------------------------------------------------------------

test("ServicePlanState is frozen and has Power BI's numbers", () => {
  assert.deepEqual({ ...ServicePlanState }, { Inactive: 0, Active: 1, Warning: 2, Suspended: 3, Unknown: 4 });
  assert.ok(Object.isFrozen(ServicePlanState));
});

test("a licensed answer is passed through exactly", async () => {
  const fetch = fakeFetch(ok());
  const result = await manager(fetch).getAvailableServicePlans();
  assert.deepEqual(result, LICENSED);
  assert.deepEqual(Object.keys(result), KEYS);
  assert.equal(JSON.stringify(result), LICENSED_BODY);
  assert.equal(result.error, undefined);
  assert.equal(isUsable(result, "innofalls.charts.pro"), true);
});

test("the server's empty answer (a known tenant, no license) is passed through as available", async () => {
  const body = '{"plans":[],"isLicenseUnsupportedEnv":false,"isLicenseInfoAvailable":true}';
  const result = await manager(fakeFetch(ok(body))).getAvailableServicePlans();
  assert.deepEqual(result, { plans: [], isLicenseUnsupportedEnv: false, isLicenseInfoAvailable: true });
  assert.equal(result.error, undefined);
});

test("the request: GET on the product's servicePlans URL with the bearer token", async () => {
  const fetch = fakeFetch(ok());
  const m = createLicenseManager({
    baseUrl: `${BASE}//`,
    productId: "innofalls charts/x",
    getToken: tokens("tok-abc"),
    fetch,
  });
  await m.getAvailableServicePlans();
  assert.equal(fetch.calls.length, 1);
  const [{ url, init, headers }] = fetch.calls;
  assert.equal(url, `${BASE}/v1/licensing/innofalls%20charts%2Fx/servicePlans`);
  assert.equal(init.method, "GET");
  assert.equal(headers.authorization, "Bearer tok-abc");
  assert.equal(headers["if-none-match"], undefined, "nothing to revalidate on the first request");
  assert.ok(init.signal instanceof AbortSignal, "the request can be aborted");
});

test("a 304 revalidation sends If-None-Match and answers the remembered answer", async () => {
  const fetch = fakeFetch(ok(LICENSED_BODY, '"v1"'), status(304, "", { ETag: '"v1"' }), status(304));
  const m = manager(fetch);
  const first = await m.getAvailableServicePlans();
  first.plans.push({ spIdentifier: "tampered", state: 1 }); // the caller's copy; what is remembered stays
  const second = await m.getAvailableServicePlans();
  const third = await m.getAvailableServicePlans();
  assert.equal(fetch.calls[1].headers["if-none-match"], '"v1"');
  assert.equal(fetch.calls[2].headers["if-none-match"], '"v1"');
  assert.deepEqual(second, LICENSED);
  assert.deepEqual(third, LICENSED);
  assert.equal(second.error, undefined);
  assert.notEqual(second, third);
});

test("a changed answer replaces the remembered one and its ETag", async () => {
  const unlicensed = '{"plans":[{"spIdentifier":"innofalls.charts.pro","state":3}],"isLicenseUnsupportedEnv":false,"isLicenseInfoAvailable":true}';
  const fetch = fakeFetch(ok(LICENSED_BODY, '"v1"'), ok(unlicensed, '"v2"'), status(304));
  const m = manager(fetch);
  await m.getAvailableServicePlans();
  const changed = await m.getAvailableServicePlans();
  const again = await m.getAvailableServicePlans();
  assert.equal(fetch.calls[1].headers["if-none-match"], '"v1"');
  assert.equal(fetch.calls[2].headers["if-none-match"], '"v2"');
  assert.deepEqual(changed, JSON.parse(unlicensed));
  assert.deepEqual(again, JSON.parse(unlicensed));
  assert.equal(isUsable(again, "innofalls.charts.pro"), false);
});

test("answers are remembered per token: another token does not revalidate the first one's", async () => {
  const fetch = fakeFetch(ok(LICENSED_BODY, '"v1"'), ok(LICENSED_BODY, '"v1"'), status(304));
  const m = manager(fetch, { getToken: tokens("alice", "bob", "alice") });
  await m.getAvailableServicePlans();
  await m.getAvailableServicePlans();
  await m.getAvailableServicePlans();
  assert.deepEqual(
    fetch.calls.map((c) => [c.headers.authorization, c.headers["if-none-match"]]),
    [
      ["Bearer alice", undefined],
      ["Bearer bob", undefined],
      ["Bearer alice", '"v1"'],
    ],
  );
});

test("a 304 with nothing remembered is 'could not tell'", async () => {
  const result = await manager(fakeFetch(status(304))).getAvailableServicePlans();
  assertUnavailable(result, "bad_response", 304);
});

test("invalidate() forgets the remembered answers", async () => {
  const fetch = fakeFetch(ok(), ok(), status(503));
  const m = manager(fetch);
  await m.getAvailableServicePlans();
  m.invalidate();
  const fresh = await m.getAvailableServicePlans();
  assert.equal(fetch.calls[1].headers["if-none-match"], undefined);
  assert.deepEqual(fresh, LICENSED);
  m.invalidate();
  assertUnavailable(await m.getAvailableServicePlans(), "http", 503); // nothing left to fall back on
});

test("invalidate() during a request: its answer is not remembered", async () => {
  let release;
  const fetch = fakeFetch(() => new Promise((resolve) => (release = resolve)), ok());
  const m = manager(fetch);
  const pending = m.getAvailableServicePlans();
  await new Promise((resolve) => setImmediate(resolve));
  m.invalidate();
  release(ok());
  assert.deepEqual(await pending, LICENSED);
  await m.getAvailableServicePlans();
  assert.equal(fetch.calls[1].headers["if-none-match"], undefined);
});

// --- the service cannot answer: "could not tell", never "unlicensed" -------------------------------------

const failures = [
  ["a network error", () => new TypeError("fetch failed"), "network"],
  ["HTTP 500", () => status(500, "boom"), "http", 500],
  ["HTTP 502", () => status(502), "http", 502],
  ["HTTP 503", () => status(503, "", { "Retry-After": "5" }), "http", 503],
  ["HTTP 429", () => status(429, "", { "Retry-After": "1" }), "http", 429],
  ["HTTP 404 (unknown product)", () => status(404, '{"code":"not_found"}'), "http", 404],
  ["a body that is not JSON", () => ok("<html>proxy error</html>"), "bad_response", 200],
  ["an empty body", () => ok(""), "bad_response", 200],
  ["JSON that is not a LicenseInfoResult", () => ok('{"plans":"all"}'), "bad_response", 200],
  ["a plan without a numeric state", () => ok('{"plans":[{"spIdentifier":"x","state":"1"}],"isLicenseUnsupportedEnv":false,"isLicenseInfoAvailable":true}'), "bad_response", 200],
  ["a missing isLicenseInfoAvailable", () => ok('{"plans":[],"isLicenseUnsupportedEnv":false}'), "bad_response", 200],
  ["a missing isLicenseUnsupportedEnv", () => ok('{"plans":[],"isLicenseInfoAvailable":true}'), "bad_response", 200],
  ["plans that are not an array", () => ok('{"plans":{},"isLicenseUnsupportedEnv":false,"isLicenseInfoAvailable":true}'), "bad_response", 200],
  ["JSON null", () => ok("null"), "bad_response", 200],
];
for (const [what, response, code, httpStatus] of failures) {
  test(`${what} -> isLicenseInfoAvailable false`, async () => {
    const result = await manager(fakeFetch(response())).getAvailableServicePlans();
    assertUnavailable(result, code, httpStatus);
  });
}

test("the network error is kept as the cause", async () => {
  const cause = new TypeError("fetch failed");
  const result = await manager(fakeFetch(cause)).getAvailableServicePlans();
  assert.equal(result.error.cause, cause);
});

/** A fetch that answers only when its signal aborts, as a real fetch does. */
function hangingFetch() {
  const calls = [];
  const fetch = (url, init) => {
    calls.push({ url, init });
    return new Promise((_, reject) => {
      init.signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
    });
  };
  fetch.calls = calls;
  return fetch;
}

test("a timeout aborts the request -> isLicenseInfoAvailable false", async () => {
  const fetch = hangingFetch();
  const started = Date.now();
  const result = await manager(fetch, { timeoutMs: 50 }).getAvailableServicePlans();
  assertUnavailable(result, "timeout");
  assert.ok(fetch.calls[0].init.signal.aborted, "the request was aborted");
  assert.ok(Date.now() - started < 2000, "answered soon after the timeout");
});

test("the default timeout is 5 seconds", { skip: typeof mock.timers?.enable !== "function" && "no mock timers in this Node" }, async () => {
  mock.timers.enable({ apis: ["setTimeout"] });
  try {
    const fetch = hangingFetch();
    const pending = manager(fetch).getAvailableServicePlans();
    while (fetch.calls.length === 0) await new Promise((resolve) => setImmediate(resolve));
    mock.timers.tick(4999);
    assert.equal(fetch.calls[0].init.signal.aborted, false);
    mock.timers.tick(1);
    assert.equal(fetch.calls[0].init.signal.aborted, true);
    assertUnavailable(await pending, "timeout");
  } finally {
    mock.timers.reset();
  }
});

// --- the last known good answer -----------------------------------------------------------------------------

function clock(start = 1_000_000) {
  const c = { t: start, now: () => c.t };
  return c;
}

test("an outage within staleForMs answers the last known good answer, with the error", async () => {
  const c = clock();
  const fetch = fakeFetch(ok(), status(503), new TypeError("fetch failed"));
  const m = manager(fetch, { now: c.now, staleForMs: 60_000 });
  await m.getAvailableServicePlans();
  c.t += 59_999;
  const stale = await m.getAvailableServicePlans();
  assert.deepEqual(stale, LICENSED);
  assert.equal(JSON.stringify(stale), LICENSED_BODY, "error stays out of the JSON");
  assert.equal(stale.error.code, "http");
  assert.equal(stale.error.status, 503);
  const staleAgain = await m.getAvailableServicePlans();
  assert.deepEqual(staleAgain, LICENSED);
  assert.equal(staleAgain.error.code, "network");
});

test("an outage after staleForMs is 'could not tell'", async () => {
  const c = clock();
  const fetch = fakeFetch(ok(), status(503));
  const m = manager(fetch, { now: c.now, staleForMs: 60_000 });
  await m.getAvailableServicePlans();
  c.t += 60_000;
  assertUnavailable(await m.getAvailableServicePlans(), "http", 503);
});

test("staleForMs defaults to 5 minutes", async () => {
  const c = clock();
  const fetch = fakeFetch(ok(), status(503), status(503));
  const m = manager(fetch, { now: c.now });
  await m.getAvailableServicePlans();
  c.t += 5 * 60_000 - 1;
  assert.deepEqual(await m.getAvailableServicePlans(), LICENSED);
  c.t += 1;
  assertUnavailable(await m.getAvailableServicePlans(), "http", 503);
});

test("staleForMs 0 never answers a remembered answer in an outage", async () => {
  const c = clock();
  const fetch = fakeFetch(ok(), status(500));
  const m = manager(fetch, { now: c.now, staleForMs: 0 });
  await m.getAvailableServicePlans();
  assertUnavailable(await m.getAvailableServicePlans(), "http", 500);
});

test("a 304 counts as verified: the stale window starts again", async () => {
  const c = clock();
  const fetch = fakeFetch(ok(), status(304), status(503));
  const m = manager(fetch, { now: c.now, staleForMs: 60_000 });
  await m.getAvailableServicePlans();
  c.t += 50_000;
  await m.getAvailableServicePlans();
  c.t += 50_000; // 100 s after the 200, 50 s after the 304
  assert.deepEqual(await m.getAvailableServicePlans(), LICENSED);
});

test("another token's answer is never answered in an outage", async () => {
  const c = clock();
  const fetch = fakeFetch(ok(), status(503));
  const m = manager(fetch, { now: c.now, getToken: tokens("alice", "bob") });
  await m.getAvailableServicePlans();
  assertUnavailable(await m.getAvailableServicePlans(), "http", 503);
});

test("a bad body in an outage also falls back to the last known good answer", async () => {
  const c = clock();
  const fetch = fakeFetch(ok(), ok("<html>gateway</html>"));
  const m = manager(fetch, { now: c.now });
  await m.getAvailableServicePlans();
  const result = await m.getAvailableServicePlans();
  assert.deepEqual(result, LICENSED);
  assert.equal(result.error.code, "bad_response");
});

// --- tokens ---------------------------------------------------------------------------------------------------

test("a 401 gets a new token once and retries with it", async () => {
  const getToken = tokens("expired", "fresh");
  const fetch = fakeFetch(status(401, "", { "WWW-Authenticate": 'Bearer error="invalid_token"' }), ok());
  const result = await manager(fetch, { getToken }).getAvailableServicePlans();
  assert.deepEqual(result, LICENSED);
  assert.equal(result.error, undefined);
  assert.equal(getToken.mock.callCount(), 2);
  assert.deepEqual(fetch.calls.map((c) => c.headers.authorization), ["Bearer expired", "Bearer fresh"]);
});

test("a second 401 is 'could not tell' with the error, after exactly one retry", async () => {
  const getToken = tokens("bad-1", "bad-2");
  const fetch = fakeFetch(status(401), status(401));
  const result = await manager(fetch, { getToken }).getAvailableServicePlans();
  assertUnavailable(result, "unauthorized", 401);
  assert.equal(getToken.mock.callCount(), 2);
  assert.equal(fetch.calls.length, 2);
});

test("a rejected token's remembered answer is forgotten, not answered", async () => {
  const c = clock();
  const fetch = fakeFetch(ok(LICENSED_BODY, '"v1"'), status(401), status(401), ok());
  const m = manager(fetch, { now: c.now, getToken: tokens("same") });
  await m.getAvailableServicePlans();
  assertUnavailable(await m.getAvailableServicePlans(), "unauthorized", 401);
  await m.getAvailableServicePlans();
  assert.equal(fetch.calls[1].headers["if-none-match"], '"v1"');
  assert.equal(fetch.calls[2].headers["if-none-match"], undefined);
  assert.equal(fetch.calls[3].headers["if-none-match"], undefined);
});

test("getToken throwing -> isLicenseInfoAvailable false, and no request", async () => {
  const cause = new Error("consent required");
  const fetch = fakeFetch();
  const result = await manager(fetch, { getToken: () => Promise.reject(cause) }).getAvailableServicePlans();
  assertUnavailable(result, "token");
  assert.equal(result.error.cause, cause);
  assert.equal(fetch.calls.length, 0);
});

test("getToken throwing synchronously -> isLicenseInfoAvailable false", async () => {
  const result = await manager(fakeFetch(), {
    getToken: () => {
      throw new Error("no host");
    },
  }).getAvailableServicePlans();
  assertUnavailable(result, "token");
});

for (const [what, value] of [["null", null], ["an empty string", ""], ["{} (no accessToken)", {}], ["a number", 42]]) {
  test(`getToken giving ${what} -> isLicenseInfoAvailable false, and no request`, async () => {
    const fetch = fakeFetch();
    assertUnavailable(await manager(fetch, { getToken: async () => value }).getAvailableServicePlans(), "token");
    assert.equal(fetch.calls.length, 0);
  });
}

test("getToken may give Power BI's AcquireAADTokenResult", async () => {
  const fetch = fakeFetch(ok());
  const getToken = async () => ({ accessToken: "aad-token", expiresOn: 1 });
  assert.deepEqual(await manager(fetch, { getToken }).getAvailableServicePlans(), LICENSED);
  assert.equal(fetch.calls[0].headers.authorization, "Bearer aad-token");
});

test("getToken failing on the refresh after a 401 -> isLicenseInfoAvailable false", async () => {
  let calls = 0;
  const getToken = async () => {
    calls += 1;
    if (calls > 1) throw new Error("signed out");
    return "expired";
  };
  const fetch = fakeFetch(status(401));
  assertUnavailable(await manager(fetch, { getToken }).getAvailableServicePlans(), "token");
  assert.equal(fetch.calls.length, 1);
});

// --- fetch, options ---------------------------------------------------------------------------------------------

test("the global fetch is used when none is injected", async () => {
  const saved = globalThis.fetch;
  const fetch = fakeFetch(ok());
  globalThis.fetch = fetch;
  try {
    const m = createLicenseManager({ baseUrl: BASE, productId: PRODUCT, getToken: () => "tok" });
    assert.deepEqual(await m.getAvailableServicePlans(), LICENSED);
    assert.equal(fetch.calls[0].url, URL_);
  } finally {
    globalThis.fetch = saved;
  }
});

test("bad options are refused at once", () => {
  const good = { baseUrl: BASE, productId: PRODUCT, getToken: () => "t" };
  assert.throws(() => createLicenseManager(), TypeError);
  assert.throws(() => createLicenseManager({ ...good, baseUrl: undefined }), TypeError);
  assert.throws(() => createLicenseManager({ ...good, productId: "" }), TypeError);
  assert.throws(() => createLicenseManager({ ...good, getToken: "t" }), TypeError);
  assert.throws(() => createLicenseManager({ ...good, fetch: {} }), TypeError);
  assert.throws(() => createLicenseManager({ ...good, timeoutMs: 0 }), TypeError);
  assert.throws(() => createLicenseManager({ ...good, staleForMs: -1 }), TypeError);
  assert.doesNotThrow(() => createLicenseManager(good));
});

// --- isUsable -----------------------------------------------------------------------------------------------------

test("isUsable: only Active and Warning of that plan are usable", () => {
  const result = (state) => ({ plans: [{ spIdentifier: "p", state }], isLicenseUnsupportedEnv: false, isLicenseInfoAvailable: true });
  assert.equal(isUsable(result(ServicePlanState.Active), "p"), true);
  assert.equal(isUsable(result(ServicePlanState.Warning), "p"), true);
  assert.equal(isUsable(result(ServicePlanState.Inactive), "p"), false);
  assert.equal(isUsable(result(ServicePlanState.Suspended), "p"), false);
  assert.equal(isUsable(result(ServicePlanState.Unknown), "p"), false);
  assert.equal(isUsable(result(ServicePlanState.Active), "other"), false);
  const two = { plans: [{ spIdentifier: "a", state: 3 }, { spIdentifier: "b", state: 1 }] };
  assert.equal(isUsable(two, "b"), true);
  assert.equal(isUsable(two, "a"), false);
  assert.equal(isUsable({ plans: undefined, isLicenseUnsupportedEnv: true, isLicenseInfoAvailable: true }, "p"), false);
  assert.equal(isUsable(UNAVAILABLE, "p"), false);
  assert.equal(isUsable(null, "p"), false);
  assert.equal(isUsable(undefined, "p"), false);
});

// --- against a real HTTP server ---------------------------------------------------------------------------------

async function serve(handler) {
  const requests = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method, url: req.url, headers: req.headers });
    handler(req, res);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    base: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(resolve);
      }),
  };
}

test("against a real HTTP server: 200, then 304 on revalidation, then 401 and a refreshed token", async () => {
  const ETAG = '"3f2a"';
  const valid = new Set(["tok-1", "tok-2"]);
  const server = await serve((req, res) => {
    if (req.method !== "GET" || req.url !== `/v1/licensing/${PRODUCT}/servicePlans`) {
      res.writeHead(404).end();
      return;
    }
    const token = (req.headers.authorization || "").replace(/^Bearer /, "");
    if (!valid.has(token)) {
      res.writeHead(401, { "WWW-Authenticate": 'Bearer error="invalid_token"', "Content-Type": "application/problem+json" });
      res.end('{"status":401,"code":"invalid_token"}');
      return;
    }
    const headers = { ETag: ETAG, "Cache-Control": "private, no-cache", Vary: "Authorization" };
    if (req.headers["if-none-match"] === ETAG) {
      res.writeHead(304, headers).end();
      return;
    }
    res.writeHead(200, { ...headers, "Content-Type": "application/json" }).end(LICENSED_BODY);
  });
  try {
    const getToken = tokens("tok-1", "tok-1", "expired", "tok-2");
    const m = createLicenseManager({ baseUrl: server.base, productId: PRODUCT, getToken, timeoutMs: 2000 });
    const first = await m.getAvailableServicePlans();
    const second = await m.getAvailableServicePlans();
    valid.delete("tok-1");
    const third = await m.getAvailableServicePlans();
    assert.deepEqual(first, LICENSED);
    assert.deepEqual(second, LICENSED);
    assert.deepEqual(third, LICENSED);
    assert.deepEqual(
      server.requests.map((r) => [r.method, r.url, r.headers.authorization, r.headers["if-none-match"]]),
      [
        ["GET", `/v1/licensing/${PRODUCT}/servicePlans`, "Bearer tok-1", undefined],
        ["GET", `/v1/licensing/${PRODUCT}/servicePlans`, "Bearer tok-1", ETAG],
        ["GET", `/v1/licensing/${PRODUCT}/servicePlans`, "Bearer expired", undefined],
        ["GET", `/v1/licensing/${PRODUCT}/servicePlans`, "Bearer tok-2", undefined],
      ],
    );
  } finally {
    await server.close();
  }
});

test("against a real HTTP server: a body that stalls is cut by the timeout", async () => {
  const server = await serve((_req, res) => {
    res.writeHead(200, { "Content-Type": "application/json", ETag: '"x"' });
    res.write('{"plans":['); // and nothing more
  });
  try {
    const m = createLicenseManager({ baseUrl: server.base, productId: PRODUCT, getToken: () => "t", timeoutMs: 150 });
    assertUnavailable(await m.getAvailableServicePlans(), "timeout");
  } finally {
    await server.close();
  }
});

test("against a real HTTP server: nobody listening is a network error", async () => {
  const server = await serve((_req, res) => res.end());
  const base = server.base;
  await server.close();
  const m = createLicenseManager({ baseUrl: base, productId: PRODUCT, getToken: () => "t", timeoutMs: 2000 });
  assertUnavailable(await m.getAvailableServicePlans(), "network");
});
