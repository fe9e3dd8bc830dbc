// The signed-in user: the token from POST /auth/login, kept in this tab only (sessionStorage),
// and what its payload says (subject, role, expiry). The gateway checks the token; reading the
// payload here only decides what to show.
const KEY = "pm.session";
let expiryTimer = null;

/** The current session, or null when no one is signed in (or the token has expired). */
export function current() {
  const stored = sessionStorage.getItem(KEY);
  if (!stored) return null;
  try {
    const session = JSON.parse(stored);
    if (session.expiresAt * 1000 <= Date.now()) {
      end("Your session has expired. Sign in again to go on.");
      return null;
    }
    return session;
  } catch {
    sessionStorage.removeItem(KEY);
    return null;
  }
}

export function token() {
  return current()?.token ?? null;
}

export function isAdmin() {
  return current()?.role === "ADMIN";
}

/** Starts a session from a login answer; it ends by itself when the token expires. */
export function begin(token) {
  const claims = payload(token);
  const session = { token, subject: claims.sub, role: claims.role, expiresAt: claims.exp };
  sessionStorage.setItem(KEY, JSON.stringify(session));
  watchExpiry();
  return session;
}

/**
 * Ends the session here and tells the console why (`reason`, shown on the sign-in page).
 * `keepPlace`: sign in again to the page the session ended on (it expired, or the platform
 * stopped taking it); not after signing out, when the next person starts afresh.
 */
export function end(reason, keepPlace = true) {
  const had = sessionStorage.getItem(KEY) !== null;
  sessionStorage.removeItem(KEY);
  clearTimeout(expiryTimer);
  if (had) window.dispatchEvent(new CustomEvent("session-ended", { detail: { reason, keepPlace } }));
}

/** Arms the timer that ends the session when its token expires (after a reload too). */
export function watchExpiry() {
  clearTimeout(expiryTimer);
  const session = current();
  if (!session) return;
  const left = session.expiresAt * 1000 - Date.now();
  // setTimeout takes at most 2^31-1 ms; a longer token is checked again then.
  expiryTimer = setTimeout(() => {
    if (current()) watchExpiry();
  }, Math.min(left, 2 ** 31 - 1));
}

function payload(token) {
  const part = token.split(".")[1] ?? "";
  const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
  return JSON.parse(json);
}
