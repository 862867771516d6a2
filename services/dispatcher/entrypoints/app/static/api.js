// Talking to the dispatcher's /v1/me API with the device's token, and the server's refusals in words.
import { has, t } from "./i18n.js";

const TOKEN = "errands.token";

export const token = {
  get: () => localStorage.getItem(TOKEN),
  set: (value) => localStorage.setItem(TOKEN, value),
  forget: () => localStorage.removeItem(TOKEN),
};

// A failed answer, kept with its problem+json document (RFC 9457) when the server sent one.
export class ApiError extends Error {
  constructor(status, problem) {
    super(`${status} ${problem?.title || ""}`);
    this.status = status;
    this.problem = problem || {};
  }
}

// `bearer`: another token than the device's (a sign-out still to reach the server).
export async function call(method, path, { body, headers = {}, signal, raw, bearer = token.get() } = {}) {
  const all = { ...headers };
  if (bearer) all.Authorization = `Bearer ${bearer}`;
  let payload;
  if (raw !== undefined) {
    payload = raw;
    all["Content-Type"] = raw.type || "image/jpeg";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    all["Content-Type"] = "application/json";
  }
  const response = await fetch(path, { method, headers: all, body: payload, signal, cache: "no-store" });
  if (response.status >= 400) {
    let problem = null;
    try {
      problem = await response.json();
    } catch {
      problem = null;
    }
    throw new ApiError(response.status, problem);
  }
  return response;
}

// The volunteer-facing words for a refusal: by the problem's title (see docs/api.md), else its status.
export function explain(error) {
  if (!(error instanceof ApiError)) return t("problem.network");
  const title = (error.problem.title || "").toLowerCase().replace(/[^a-z]+/g, "_").replace(/^_|_$/g, "");
  if (title && has(`problem.${title}`)) return t(`problem.${title}`);
  if (error.status === 401) return t("problem.unauthorized");
  if (error.status === 404) return t("problem.not_found");
  if (error.status === 409) return t("problem.conflict");
  if (error.status === 413) return t("problem.payload_too_large");
  if (error.status === 422) return t("problem.validation_failed");
  if (error.status === 429) return t("problem.too_many_requests");
  return t("problem.server");
}

export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
