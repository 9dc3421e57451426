// The typed gateway client: openapi-fetch over the generated schema (npm run gen:api).
// Writes carry the double-submit CSRF token; a platform admin's calls name the tenant.
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
export const UNAUTHENTICATED_EVENT = "clora:unauthenticated";

/** An API error as a person should read it, with the field that caused it when known. */
export class ApiError extends Error {
  readonly status: number;
  readonly param: string | null;
  readonly code: string | null;

  constructor(status: number, message: string, param: string | null = null, code: string | null = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.param = param;
    this.code = code;
  }

  /** Build one from the gateway's `{"error": {message, type, param, code}}` envelope. */
  static from(status: number, body: unknown): ApiError {
    const envelope = (body as { error?: { message?: unknown; param?: unknown; code?: unknown } } | undefined)?.error;
    if (envelope && typeof envelope.message === "string") {
      return new ApiError(
        status,
        envelope.message,
        typeof envelope.param === "string" ? envelope.param : null,
        typeof envelope.code === "string" ? envelope.code : null,
      );
    }
    if (typeof body === "string" && body.trim()) return new ApiError(status, body.trim().slice(0, 300));
    return new ApiError(status, `the gateway answered ${status}`);
  }
}

/** A readable message for anything a call may throw. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

export function readCookie(name: string): string | null {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

let tenantScope: string | null = null;

/** The tenant a platform admin acts on (sent as `x-clora-tenant`); null for everyone else. */
export function setTenantScope(slug: string | null): void {
  tenantScope = slug;
}

export function getTenantScope(): string | null {
  return tenantScope;
}

/** A same-origin URL for links and images, which cannot send headers: the tenant goes in the query. */
export function scopedUrl(path: string): string {
  if (!tenantScope) return path;
  const sep = path.includes("?") ? "&" : "?";
  return `${path}${sep}tenant=${encodeURIComponent(tenantScope)}`;
}

const session: Middleware = {
  onRequest({ request }) {
    if (!SAFE_METHODS.has(request.method)) {
      request.headers.set("x-csrf-token", readCookie("clora_csrf") ?? "");
    }
    if (tenantScope) request.headers.set("x-clora-tenant", tenantScope);
    return request;
  },
  onResponse({ request, response }) {
    const path = new URL(request.url).pathname;
    if (response.status === 401 && !path.startsWith("/api/auth/")) {
      window.dispatchEvent(new Event(UNAUTHENTICATED_EVENT));
    }
    return response;
  },
};

export const api = createClient<paths>({
  baseUrl: typeof window === "undefined" ? "" : window.location.origin,
  credentials: "same-origin",
});
api.use(session);

type Answer<T> = { data?: T; error?: unknown; response: Response };

/** The data of a successful answer; an ApiError otherwise (also when the gateway is unreachable). */
export async function unwrap<T>(call: Promise<Answer<T>>): Promise<T> {
  let answer: Answer<T>;
  try {
    answer = await call;
  } catch (cause) {
    throw new ApiError(0, `could not reach the gateway (${errorMessage(cause)})`);
  }
  if (!answer.response.ok) throw ApiError.from(answer.response.status, answer.error);
  return answer.data as T;
}
