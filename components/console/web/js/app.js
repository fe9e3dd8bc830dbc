// The console's shell: which page the address (`#/section/...`) shows, the bar's links and
// account for the signed-in user, and where a session that ends sends them.
import { post } from "./api.js";
import { analyticsPage } from "./analytics.js";
import { appointmentsPage, bookingForm, rescheduleForm } from "./appointments.js";
import { guarded, h, mount, notice } from "./dom.js";
import { patientDetail, patientForm, patientList } from "./patients.js";
import { current, end, isAdmin, watchExpiry } from "./session.js";
import { signInPage } from "./signin.js";

/** Why the last session ended, shown once on the sign-in page. */
let endedBecause = null;

function parse() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(query ?? "") };
}

function route() {
  const { parts, params } = parse();
  const session = current();
  showBar(session, parts[0]);
  if (!session) {
    signInPage(endedBecause, () => {
      endedBecause = null;
      const next = params.get("next");
      const target = next && next.startsWith("/") ? `#${next}` : "#/patients";
      if (location.hash === target) route();
      else location.hash = target;
    });
    return;
  }
  notice();
  const [section, id, action] = parts;
  switch (section) {
    case "patients":
      if (id === "new") return patientForm(null);
      if (id && action === "edit") return patientForm(id);
      if (id) return patientDetail(id);
      return patientList(params);
    case "appointments":
      if (id === "new") return bookingForm(params);
      if (id && action === "edit") return rescheduleForm(id);
      return appointmentsPage(params);
    case "analytics":
      if (!isAdmin()) return forAdmins();
      return analyticsPage();
    case "signin":
    case undefined:
      location.replace("#/patients");
      return undefined;
    default:
      return mount("Not found", h("h1", {}, "No such page"),
        h("p", {}, "The address names no page of the console. ", h("a", { href: "#/patients" }, "Go to the patients.")));
  }
}

function forAdmins() {
  mount("Analytics", h("h1", {}, "Analytics"),
    h("p", {}, "Analytics is for administrators. Ask one if you need these figures."));
}

function showBar(session, section) {
  document.getElementById("nav").hidden = !session;
  document.getElementById("account").hidden = !session;
  if (!session) return;
  document.getElementById("account-name").textContent = `${session.subject} (${session.role.toLowerCase()})`;
  for (const link of document.querySelectorAll("#nav a[data-section]")) {
    link.hidden = link.dataset.role !== undefined && link.dataset.role !== session.role;
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function signOut() {
  // Ends the token on every gateway; locally it ends whatever the platform answers.
  const told = await guarded(async () => {
    await post("/auth/logout");
    return true;
  });
  end(told ? "You signed out." : "You signed out here, but the platform could not be told: the token stays valid until it expires.", false);
}

window.addEventListener("session-ended", (event) => {
  endedBecause = event.detail.reason;
  const { parts } = parse();
  const here = event.detail.keepPlace && parts.length && parts[0] !== "signin"
    ? `?next=${encodeURIComponent(`/${parts.join("/")}`)}`
    : "";
  if (location.hash.startsWith("#/signin")) route();
  else location.hash = `#/signin${here}`;
});
// The console catches every failure where it happens; this only guards against a slip.
window.addEventListener("unhandledrejection", (event) => {
  event.preventDefault();
  notice("error", `Something went wrong in the console: ${event.reason?.message ?? event.reason}`);
});
window.addEventListener("hashchange", route);
document.getElementById("sign-out").addEventListener("click", signOut);
watchExpiry();
route();
// The first page is on screen and answers input: what the bench reads as time to interactive.
performance.mark("pm:ready");
