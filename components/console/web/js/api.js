// Every call to the platform's public API: the signed-in user's token on each, problem+json
// answers turned into ApiError (status, detail, the field errors), a network failure into one
// with status 0, and a token the gateway refuses into the end of the session.
import { end, token } from "./session.js";

export class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(problem?.detail || problem?.title || `the platform answered ${status}`);
    this.status = status;
    this.problem = problem ?? {};
    this.retryAfter = retryAfter;
  }

  /** Field name -> message, from a 400's `errors`. */
  get fieldErrors() {
    return this.problem.errors ?? {};
  }

  /** Worth a retry button: the platform was busy or a dependency was down, or no answer. */
  get transient() {
    return this.status === 0 || this.status === 429 || this.status === 503;
  }
}

const MAX_WAIT_SECONDS = 5;

/**
 * Calls `method path` with `body` (as JSON) and returns the parsed answer (null for 204). A call
 * refused for the rate limit is sent once more after the Retry-After the gateway gave: the
 * gateway refuses before the request reaches any service, so even a write was not done.
 */
export async function call(method, path, body) {
  const answer = await send(method, path, body);
  if (answer.status === 429) {
    const wait = Number(answer.headers.get("retry-after")) || 1;
    if (wait <= MAX_WAIT_SECONDS) {
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
      return parse(await send(method, path, body));
    }
  }
  return parse(answer);
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body);
export const put = (path, body) => call("PUT", path, body);
export const remove = (path) => call("DELETE", path);

/** `path` with the query `params` (absent and empty values left out). */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, value);
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function send(method, path, body) {
  const headers = { accept: "application/json, application/problem+json" };
  const bearer = token();
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  try {
    return await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, {
      title: "No connection",
      detail: "The platform could not be reached. Check the network connection, then retry.",
    });
  }
}

async function parse(answer) {
  const text = await answer.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { detail: text.slice(0, 200) };
    }
  }
  if (answer.ok) return data;
  const error = new ApiError(answer.status, data, answer.headers.get("retry-after"));
  // A token the gateway no longer takes (expired, signed out elsewhere, account disabled).
  if (answer.status === 401 && token()) {
    end(`Your session has ended: ${error.message}`);
  }
  throw error;
}
