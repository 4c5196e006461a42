// @licensedesk/client: the run-time license check of a Power BI custom visual, against licensedesk
// (SPEC section 3). No dependencies; runs in browsers and in Node 18+ (global fetch, AbortController).
//
// getAvailableServicePlans() answers a LicenseInfoResult exactly like Power BI's
// host.licenseManager.getAvailableServicePlans(). It never rejects: when the answer cannot be had it
// reports isLicenseInfoAvailable: false ("could not tell"), never an empty "unlicensed" answer.

/** The numeric ServicePlanState of the Power BI visuals API. */
export const ServicePlanState = Object.freeze({
  Inactive: 0,
  Active: 1,
  Warning: 2,
  Suspended: 3,
  Unknown: 4,
});

const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_STALE_FOR_MS = 5 * 60 * 1000;
// Answers are remembered per token; tokens rotate (about hourly), so a few entries are plenty.
const MAX_REMEMBERED = 8;

/** Why an answer could not be had. Set, not enumerable, as `error` on the result. */
export class LicenseCheckError extends Error {
  /**
   * @param {"token"|"network"|"timeout"|"unauthorized"|"http"|"bad_response"} code
   * @param {string} message
   * @param {{status?: number, cause?: unknown}} [details]
   */
  constructor(code, message, details = {}) {
    super(message, "cause" in details ? { cause: details.cause } : undefined);
    this.name = "LicenseCheckError";
    this.code = code;
    if (details.status !== undefined) this.status = details.status;
  }
}

/** True when `result` holds a plan `spIdentifier` that is usable: Active or Warning, as in Power BI. */
export function isUsable(result, spIdentifier) {
  const plans = result && Array.isArray(result.plans) ? result.plans : [];
  return plans.some(
    (plan) =>
      plan != null &&
      plan.spIdentifier === spIdentifier &&
      (plan.state === ServicePlanState.Active || plan.state === ServicePlanState.Warning),
  );
}

/**
 * @param {{
 *   baseUrl: string,
 *   productId: string,
 *   getToken: () => unknown,
 *   fetch?: typeof globalThis.fetch,
 *   timeoutMs?: number,
 *   staleForMs?: number,
 *   now?: () => number,
 * }} options
 */
export function createLicenseManager(options) {
  const {
    baseUrl,
    productId,
    getToken,
    fetch: injectedFetch,
    timeoutMs = DEFAULT_TIMEOUT_MS,
    staleForMs = DEFAULT_STALE_FOR_MS,
    now = Date.now,
  } = options || {};
  if (typeof baseUrl !== "string") throw new TypeError("baseUrl must be a string");
  if (typeof productId !== "string" || productId === "") throw new TypeError("productId must be a non-empty string");
  if (typeof getToken !== "function") throw new TypeError("getToken must be a function");
  if (injectedFetch !== undefined && typeof injectedFetch !== "function") throw new TypeError("fetch must be a function");
  if (injectedFetch === undefined && typeof globalThis.fetch !== "function") {
    throw new TypeError("no global fetch here: pass options.fetch");
  }
  if (typeof timeoutMs !== "number" || !(timeoutMs > 0)) throw new TypeError("timeoutMs must be a positive number");
  if (typeof staleForMs !== "number" || !(staleForMs >= 0)) throw new TypeError("staleForMs must be a number >= 0");
  if (typeof now !== "function") throw new TypeError("now must be a function");

  // A browser's fetch must be called with globalThis as `this`; look it up per call so that a fetch
  // installed (or mocked) later is used.
  const doFetch = injectedFetch ?? ((url, init) => globalThis.fetch(url, init));
  const url = `${baseUrl.replace(/\/+$/, "")}/v1/licensing/${encodeURIComponent(productId)}/servicePlans`;

  /** token -> { answer (frozen), etag, verifiedAt } */
  const remembered = new Map();
  // invalidate() bumps this, so a request already in flight does not bring back what was forgotten.
  let generation = 0;

  function remember(token, answer, etag, gen) {
    if (gen !== generation) return;
    remembered.delete(token);
    remembered.set(token, { answer, etag, verifiedAt: now() });
    while (remembered.size > MAX_REMEMBERED) remembered.delete(remembered.keys().next().value);
  }

  /** The last answer for this token when it was verified less than staleForMs ago, else "could not tell". */
  function fallback(token, error) {
    const entry = remembered.get(token);
    if (entry && now() - entry.verifiedAt < staleForMs) return withError(copy(entry.answer), error);
    return unavailable(error);
  }

  async function obtainToken() {
    let value;
    try {
      value = await getToken();
    } catch (cause) {
      throw new LicenseCheckError("token", "getToken failed", { cause });
    }
    // Power BI's acquireAADToken() answers { accessToken } (or null); accept that as well as a string.
    const token = value !== null && typeof value === "object" ? value.accessToken : value;
    if (typeof token !== "string" || token.trim() === "") {
      throw new LicenseCheckError("token", "getToken gave no access token");
    }
    return token.trim();
  }

  /** One request. Returns { result } or { rejected: true } on 401. */
  async function attempt(token) {
    const gen = generation;
    const entry = remembered.get(token);
    const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
    if (entry && entry.etag) headers["If-None-Match"] = entry.etag;

    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    const failed = (cause, what) =>
      timedOut
        ? new LicenseCheckError("timeout", `no answer from licensedesk within ${timeoutMs} ms`, { cause })
        : new LicenseCheckError("network", `licensedesk could not be reached (${what})`, { cause });
    try {
      let response;
      try {
        response = await doFetch(url, { method: "GET", headers, signal: controller.signal });
      } catch (cause) {
        return { result: fallback(token, failed(cause, "request")) };
      }
      const status = response.status;
      if (status === 401) {
        discard(response);
        return { rejected: true };
      }
      if (status === 304) {
        discard(response);
        if (!entry) {
          return { result: unavailable(new LicenseCheckError("bad_response", "304 without a remembered answer", { status })) };
        }
        remember(token, entry.answer, response.headers.get("ETag") || entry.etag, gen);
        return { result: copy(entry.answer) };
      }
      if (status !== 200) {
        discard(response);
        return { result: fallback(token, new LicenseCheckError("http", `licensedesk answered HTTP ${status}`, { status })) };
      }
      let text;
      try {
        text = await response.text();
      } catch (cause) {
        return { result: fallback(token, failed(cause, "reading the answer")) };
      }
      const answer = parseAnswer(text);
      if (answer === null) {
        return { result: fallback(token, new LicenseCheckError("bad_response", "the answer is not a LicenseInfoResult", { status })) };
      }
      remember(token, answer, response.headers.get("ETag"), gen);
      return { result: copy(answer) };
    } finally {
      clearTimeout(timer);
    }
  }

  async function getAvailableServicePlans() {
    let token;
    try {
      token = await obtainToken();
    } catch (error) {
      return unavailable(error);
    }
    const first = await attempt(token);
    if (!first.rejected) return first.result;

    // The token was rejected (it may have expired): forget its answer, get a new token, try once more.
    remembered.delete(token);
    try {
      token = await obtainToken();
    } catch (error) {
      return unavailable(error);
    }
    const second = await attempt(token);
    if (!second.rejected) return second.result;
    remembered.delete(token);
    return unavailable(new LicenseCheckError("unauthorized", "licensedesk rejected the access token", { status: 401 }));
  }

  function invalidate() {
    remembered.clear();
    generation += 1;
  }

  return { getAvailableServicePlans, invalidate };
}

/** The server's answer, checked and reduced to exactly LicenseInfoResult's fields; null when it is not one. */
function parseAnswer(text) {
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    return null;
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) return null;
  const { plans, isLicenseUnsupportedEnv, isLicenseInfoAvailable } = body;
  if (!Array.isArray(plans) || typeof isLicenseUnsupportedEnv !== "boolean" || typeof isLicenseInfoAvailable !== "boolean") {
    return null;
  }
  const checked = [];
  for (const plan of plans) {
    if (plan === null || typeof plan !== "object" || typeof plan.spIdentifier !== "string" || !Number.isInteger(plan.state)) {
      return null;
    }
    checked.push(Object.freeze({ spIdentifier: plan.spIdentifier, state: plan.state }));
  }
  return Object.freeze({ plans: Object.freeze(checked), isLicenseUnsupportedEnv, isLicenseInfoAvailable });
}

/** A fresh, mutable copy for the caller (what is remembered stays untouched). */
function copy(answer) {
  return {
    plans: answer.plans.map((plan) => ({ spIdentifier: plan.spIdentifier, state: plan.state })),
    isLicenseUnsupportedEnv: answer.isLicenseUnsupportedEnv,
    isLicenseInfoAvailable: answer.isLicenseInfoAvailable,
  };
}

/** "Could not tell": never an empty answer with isLicenseInfoAvailable true. */
function unavailable(error) {
  return withError({ plans: [], isLicenseUnsupportedEnv: false, isLicenseInfoAvailable: false }, error);
}

/** `error` is not enumerable, so the result stays exactly a LicenseInfoResult for JSON and deep equality. */
function withError(result, error) {
  Object.defineProperty(result, "error", { value: error, enumerable: false, writable: false, configurable: true });
  return result;
}

/** Let go of a body that will not be read, so that the connection can be reused. */
function discard(response) {
  try {
    const cancelled = response.body && response.body.cancel();
    if (cancelled && typeof cancelled.catch === "function") cancelled.catch(() => {});
  } catch {
    // a body that is locked or already used needs nothing more
  }
}
