// Types of @licensedesk/client. LicenseInfoResult, ServicePlan and ServicePlanState mirror
// powerbi-visuals-api (powerbi.extensibility.visual.LicenseInfoResult / ServicePlan, powerbi.ServicePlanState),
// so an answer of this client and one of host.licenseManager are interchangeable.

/** The numeric ServicePlanState of the Power BI visuals API (a frozen object at run time). */
export declare const ServicePlanState: {
  /** The license is not active and shouldn't be used for provisioning benefits. */
  readonly Inactive: 0;
  /** The license is active and can be used for provisioning benefits. */
  readonly Active: 1;
  /** The license is in grace period, likely due to a payment violation. */
  readonly Warning: 2;
  /** The license is suspended, likely due to a payment violation. */
  readonly Suspended: 3;
  /** Sentinel value. */
  readonly Unknown: 4;
};
export type ServicePlanState = (typeof ServicePlanState)[keyof typeof ServicePlanState];
export declare namespace ServicePlanState {
  type Inactive = typeof ServicePlanState.Inactive;
  type Active = typeof ServicePlanState.Active;
  type Warning = typeof ServicePlanState.Warning;
  type Suspended = typeof ServicePlanState.Suspended;
  type Unknown = typeof ServicePlanState.Unknown;
}

export interface ServicePlan {
  spIdentifier: string;
  state: ServicePlanState;
}

export interface LicenseInfoResult {
  /** An array of Service Plans purchased by the active user for this visual */
  plans: ServicePlan[] | undefined;

  /** Indicates that the visual is being rendered in a Power BI environment that doesn't support licenses management or enforcement. */
  isLicenseUnsupportedEnv: boolean;

  /** Indicates whether the licenses info could be retrieved. */
  isLicenseInfoAvailable: boolean;
}

export type LicenseCheckErrorCode =
  /** getToken threw, or gave no access token. */
  | "token"
  /** The request failed (DNS, connection, CORS, reading the body). */
  | "network"
  /** No complete answer within timeoutMs. */
  | "timeout"
  /** 401 again after one token refresh. */
  | "unauthorized"
  /** Any other status than 200, 304 and 401 (5xx, 429, 404, ...); `status` tells which. */
  | "http"
  /** A 200 whose body is not a LicenseInfoResult, or a 304 with nothing remembered. */
  | "bad_response";

export declare class LicenseCheckError extends Error {
  constructor(code: LicenseCheckErrorCode, message: string, details?: { status?: number; cause?: unknown });
  readonly name: "LicenseCheckError";
  readonly code: LicenseCheckErrorCode;
  /** The HTTP status, when there was one. */
  readonly status?: number;
}

/**
 * What getAvailableServicePlans() answers: a LicenseInfoResult with exactly its three enumerable fields.
 * `error` is a non-enumerable extra (left out of JSON.stringify and deep equality). It is set when the
 * service's answer could not be had on this call: with isLicenseInfoAvailable false, or on the last
 * known good answer served while it was younger than staleForMs.
 */
export interface LicenseCheckResult extends LicenseInfoResult {
  plans: ServicePlan[];
  readonly error?: LicenseCheckError;
}

/** What getToken may give: the access token, or Power BI's AcquireAADTokenResult ({ accessToken }). */
export type TokenLike = string | { accessToken?: string } | null | undefined;

/** Any thenable of a TokenLike: a Promise, or Power BI's IPromise (which is not a PromiseLike). */
export interface TokenThenable {
  then(onfulfilled: (value: TokenLike) => any, onrejected?: (reason: any) => any): any;
}

export interface LicenseManagerOptions {
  /** licensedesk's base URL, e.g. "https://licensedesk.example.com" (a trailing "/" is ignored). */
  baseUrl: string;
  /** The product id, e.g. "innofalls-charts". */
  productId: string;
  /** The user's access token for the product's audience; called per check, and again once after a 401. */
  getToken: () => TokenLike | PromiseLike<TokenLike> | TokenThenable;
  /** The fetch to use; default: the global fetch. */
  fetch?: typeof globalThis.fetch;
  /** Time allowed for each request, body included; default 5000. */
  timeoutMs?: number;
  /** How long a verified answer may stand in when the service cannot answer; default 300000 (5 min); 0: never. */
  staleForMs?: number;
  /** Clock in milliseconds; default Date.now (for tests). */
  now?: () => number;
}

export interface LicenseManager {
  /** Never rejects: an answer that cannot be had is reported as isLicenseInfoAvailable: false. */
  getAvailableServicePlans(): Promise<LicenseCheckResult>;
  /** Forget every remembered answer and ETag: the next check asks the service afresh. */
  invalidate(): void;
}

export declare function createLicenseManager(options: LicenseManagerOptions): LicenseManager;

/** True when `result` holds plan `spIdentifier` in state Active or Warning (as in Power BI). */
export declare function isUsable(
  result: Pick<LicenseInfoResult, "plans"> | null | undefined,
  spIdentifier: string,
): boolean;
