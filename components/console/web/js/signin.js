// Signing in: POST /auth/login, then the session starts with the token it returns.
import { ApiError, post } from "./api.js";
import { describe, field, h, mount, notice } from "./dom.js";
import { begin } from "./session.js";

/** The sign-in page; `reason` says why the last session ended; `done` runs once signed in. */
export function signInPage(reason, done) {
  const email = field("email", "Email", { type: "email", autocomplete: "username", required: true });
  const password = field("password", "Password", { type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "form panel", novalidate: true }, email.field, password.field,
    h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const answer = await post("/auth/login", { email: email.input.value, password: password.input.value });
      begin(answer.token);
      notice();
      done();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      notice("error", error.status === 401 || error.status === 400
        ? `Sign-in refused: ${error.message}`
        : describe(error));
      password.input.value = "";
      password.input.focus();
    } finally {
      submit.disabled = false;
    }
  });
  mount("Sign in", h("h1", {}, "Sign in"), form);
  if (reason) notice(reason === "You signed out." ? "ok" : "error", reason);
  email.input.focus();
}
