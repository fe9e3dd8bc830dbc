// Building the page: elements from data (never HTML strings, so no answer can inject markup),
// the message area, field errors beside their inputs, and a confirmation dialog.
import { ApiError } from "./api.js";

/**
 * An element: `h("button", { type: "button", onclick: go }, "Save")`. Attributes named `on…`
 * become listeners, `true`/`false` set or leave out a boolean attribute; children may be
 * strings, nodes, arrays or null.
 */
export function h(tag, attributes = {}, ...children) {
  const element = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Shows `nodes` as the page, titled `title`, and moves focus to its heading. */
export function mount(title, ...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes.flat().filter(Boolean));
  document.title = `${title} · Patient management`;
  const heading = main.querySelector("h1");
  if (heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
}

/** Replaces the children of `element`. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

/**
 * The message line under the bar. `kind` is "error" or "ok"; `retry`, when given, adds a
 * button that clears the message and calls it.
 */
export function notice(kind, text, retry) {
  const area = document.getElementById("notice");
  if (!text) {
    area.replaceChildren();
    return;
  }
  const message = h("div", { class: `message ${kind}`, role: kind === "error" ? "alert" : null },
    h("p", {}, text),
    retry && h("button", { type: "button", class: "quiet", onclick: () => { notice(); retry(); } }, "Retry"),
    h("button", { type: "button", class: "quiet", "aria-label": "Dismiss message", onclick: () => notice() }, "Dismiss"),
  );
  area.replaceChildren(message);
}

/** What to tell the user about a failed call. */
export function describe(error) {
  switch (error.status) {
    case 0:
      return error.message;
    case 429:
      return `The platform is busy with your requests: ${error.message}`;
    case 503:
      return `A service is unavailable right now (${error.message}). Your data is safe; retry in a moment.`;
    case 403:
      return `You are not allowed to do this: ${error.message}`;
    default:
      return error.message;
  }
}

/**
 * Runs `work`; a failure is shown as a message, with a retry button (which runs `work` again)
 * when retrying can help. Never lets an error escape to the browser's console.
 */
export async function guarded(work) {
  try {
    return await work();
  } catch (error) {
    if (error?.status === 401) return undefined; // the session ended; the sign-in page says why
    if (error?.status === undefined) {
      notice("error", `Something went wrong in the console: ${error?.message ?? error}`);
      return undefined;
    }
    notice("error", describe(error), error.transient ? () => guarded(work) : null);
    return undefined;
  }
}

/** A labelled input with room for its error message: `{ field, input }`. */
export function field(name, label, attributes = {}, hint) {
  const id = `field-${name}`;
  const error = h("p", { class: "error", id: `${id}-error` });
  const tag = attributes.tag ?? "input";
  const { tag: _, options, ...rest } = attributes;
  const input = h(tag, { id, name, "aria-describedby": `${id}-error`, ...rest },
    options?.map(([value, text]) => h("option", { value }, text)));
  const wrapper = h("div", { class: "field" },
    h("label", { for: id }, label), input,
    hint && h("p", { class: "hint" }, hint), error);
  return { field: wrapper, input };
}

/**
 * Puts each of `errors` (field name -> message) beside its input in `form`, and returns the
 * messages of fields the form does not have. Clears earlier errors first.
 */
export function showFieldErrors(form, errors) {
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  for (const message of form.querySelectorAll(".field .error")) message.textContent = "";
  const elsewhere = [];
  for (const [name, message] of Object.entries(errors)) {
    const input = form.elements.namedItem(name);
    if (!input) {
      elsewhere.push(`${name}: ${message}`);
      continue;
    }
    input.setAttribute("aria-invalid", "true");
    document.getElementById(`${input.id}-error`).textContent = message;
  }
  const first = form.querySelector("[aria-invalid]");
  if (first) first.focus();
  return elsewhere;
}

/**
 * Shows a refused save of `form`: a 400's field errors beside their fields, and a 409 beside
 * `conflictField` when it names one (a duplicate email); anything else as a message, with a
 * retry (`retry`) when retrying can help. A 401 shows nothing: the sign-in page says why.
 */
export function refused(form, error, retry, conflictField) {
  if (!(error instanceof ApiError)) throw error;
  if (error.status === 400) {
    const elsewhere = showFieldErrors(form, error.fieldErrors);
    notice("error", ["Some fields need another look (each is marked).", ...elsewhere].join(" "));
  } else if (error.status === 409 && conflictField) {
    showFieldErrors(form, { [conflictField]: error.message });
    notice("error", error.message);
  } else if (error.status !== 401) {
    notice("error", describe(error), error.transient ? retry : null);
  }
}

/** Asks `question`; resolves true when the user confirms with `action`. */
export function confirmed(question, action) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { "aria-labelledby": "confirm-question" },
      h("p", { id: "confirm-question" }, question),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "danger", value: "yes", onclick: () => dialog.close("yes") }, action),
        h("button", { type: "button", class: "quiet", onclick: () => dialog.close("no") }, "Keep it"),
      ),
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "yes");
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** A date as the user's locale writes it (dates from the API are YYYY-MM-DD, in no time zone). */
export function formatDate(iso) {
  if (!iso) return "";
  const [year, month, day] = iso.split("-").map(Number);
  return new Date(year, month - 1, day).toLocaleDateString(undefined, { dateStyle: "medium" });
}

/** The time of an RFC 3339 instant in the user's time zone. */
export function formatTime(instant) {
  return new Date(instant).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

/** YYYY-MM-DD of a Date, in the user's time zone. */
export function isoDay(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}
