// Calls to the service's own API, with the API key from this tab's sessionStorage sent as a bearer
// header (never in a URL). Paths are relative to the page (/ui/), so a path prefix in front of the
// service keeps working.

const KEY = "rrm-server.api-key";

export function getKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

// The service's one error shape: {"error": {"type", "message", "param", "code"}}.
export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `HTTP ${status}`);
    this.status = status;
    this.type = error?.type || "http_error";
    this.param = error?.param || null;
  }
}

const listeners = new Set();

// Called with every 401, so the page can ask for a key once, wherever the call came from.
export function onUnauthorized(fn) {
  listeners.add(fn);
}

export async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(new URL(`../${path}`, window.location.href), {
      method, headers, cache: "no-store", credentials: "omit", redirect: "error",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, { type: "network_error", message: `the service did not answer (${e.message})` });
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401) listeners.forEach((fn) => fn());
    throw new ApiError(response.status, data?.error);
  }
  return data;
}

export const api = {
  status: () => call("GET", "v1/status"),
  judge: (kind, body) => call("POST", `v1/judge/${kind}`, body),
  judgments: (limit = 50) => call("GET", `v1/judgments?limit=${encodeURIComponent(limit)}`),
  judgment: (id) => call("GET", `v1/judgments/${encodeURIComponent(id)}`),
};
