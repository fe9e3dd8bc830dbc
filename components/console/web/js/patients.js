// Patients: the paged, sortable list with search as you type; the detail page with the billing
// account and appointments; the form that creates and edits; deleting with a confirmation.
import { ApiError, get, post, put, remove, withQuery } from "./api.js";
import {
  confirmed, describe, field, fill, formatDate, formatTime, guarded, h, isoDay, mount, notice,
  refused,
} from "./dom.js";

const SORTABLE = [
  ["name", "Name", ""],
  ["email", "Email", ""],
  ["dateOfBirth", "Date of birth", "wide"],
  ["registeredDate", "Registered", "wide"],
];
const SIZES = [10, 20, 50];
const SEARCH_PAUSE_MS = 300;

/** `#/patients?page=&size=&sortField=&sort=&q=` */
export function patientList(params) {
  const state = {
    page: Math.max(1, Number(params.get("page")) || 1),
    size: SIZES.includes(Number(params.get("size"))) ? Number(params.get("size")) : 10,
    sortField: SORTABLE.some(([f]) => f === params.get("sortField")) ? params.get("sortField") : "name",
    sort: params.get("sort") === "desc" ? "desc" : "asc",
    q: params.get("q") ?? "",
  };
  let latest = 0;

  const search = field("search", "Search by name", { type: "search", value: state.q, autocomplete: "off" });
  const body = h("tbody");
  const head = h("tr");
  const frame = h("div", { class: "table-frame" },
    h("table", {}, h("caption", { class: "hidden-visually" }, "Patients"), h("thead", {}, head), body));
  const status = h("span", { class: "status", "aria-live": "polite" }, " ");
  const previous = h("button", { type: "button", class: "quiet", onclick: () => go(state.page - 1) }, "Previous");
  const next = h("button", { type: "button", class: "quiet", onclick: () => go(state.page + 1) }, "Next");
  const size = field("size", "Rows per page", { tag: "select", options: SIZES.map((n) => [n, n]) });
  size.input.value = String(state.size);
  size.input.addEventListener("change", () => {
    state.size = Number(size.input.value);
    state.page = 1;
    load();
  });

  let pause = null;
  search.input.addEventListener("input", () => {
    clearTimeout(pause);
    pause = setTimeout(() => {
      state.q = search.input.value.trim();
      state.page = 1;
      load();
    }, SEARCH_PAUSE_MS);
  });

  function go(page) {
    state.page = page;
    load();
  }

  function headers() {
    fill(head, SORTABLE.map(([name, label, wide]) => {
      const sorted = state.sortField === name;
      return h("th", { class: wide, scope: "col", "aria-sort": sorted ? (state.sort === "asc" ? "ascending" : "descending") : "none" },
        h("button", {
          type: "button",
          onclick: () => {
            state.sort = sorted && state.sort === "asc" ? "desc" : "asc";
            state.sortField = name;
            state.page = 1;
            load();
          },
        }, label, sorted ? (state.sort === "asc" ? " ▲" : " ▼") : ""));
    }));
  }

  async function load() {
    const asked = ++latest;
    frame.style.setProperty("--rows", state.size);
    headers();
    // The address keeps the view (a reload or a link shows the same page), without a new
    // history entry for every keystroke.
    history.replaceState(null, "", withQuery("#/patients", {
      page: state.page, size: state.size, sortField: state.sortField, sort: state.sort, q: state.q,
    }));
    await guarded(async () => {
      const answer = await get(withQuery("/api/patients", {
        page: state.page, size: state.size, sort: state.sort, sortField: state.sortField,
        searchValue: state.q,
      }));
      if (asked !== latest) return; // a newer search is on its way
      fill(body, answer.patients.length
        ? answer.patients.map((p) => h("tr", {},
          h("td", {}, h("a", { href: `#/patients/${p.id}` }, p.name)),
          h("td", {}, p.email),
          h("td", { class: "wide" }, formatDate(p.dateOfBirth)),
          h("td", { class: "wide" }, formatDate(p.registeredDate))))
        : h("tr", {}, h("td", { class: "empty", colspan: 4 }, state.q ? `No patient's name contains “${state.q}”.` : "No patients yet.")));
      const pages = Math.max(answer.totalPages, 1);
      status.textContent = `Page ${answer.page} of ${pages} · ${answer.totalElements} patients`;
      previous.disabled = state.page <= 1;
      next.disabled = state.page >= pages;
    });
  }

  mount("Patients",
    h("div", { class: "heading" }, h("h1", {}, "Patients"), h("a", { class: "button", href: "#/patients/new" }, "New patient")),
    h("div", { class: "toolbar" }, h("div", { class: "grow" }, search.field)),
    frame,
    h("div", { class: "pager" }, previous, status, next, h("div", {}, size.field)));
  load();
}

/** `#/patients/{id}`: the patient, their billing account and their appointments. */
export function patientDetail(id) {
  // The page is drawn once the patient is known: drawn first with room for them, a long name
  // or address would still push everything below it down as it arrived.
  const page = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  mount("Patient", page);

  guarded(async () => {
    let patient;
    try {
      patient = await get(`/api/patients/${encodeURIComponent(id)}`);
    } catch (error) {
      if (error instanceof ApiError && (error.status === 404 || error.status === 400)) {
        fill(page, h("h1", {}, "No such patient"),
          h("p", {}, "There is no patient with this id (deleted, or a mistyped address). ",
            h("a", { href: "#/patients" }, "Back to the list.")));
        return;
      }
      throw error;
    }
    const facts = [["Email", patient.email], ["Address", patient.address],
      ["Date of birth", formatDate(patient.dateOfBirth)], ["Registered", formatDate(patient.registeredDate)]];
    const billing = h("div", { class: "panel" }, h("h2", {}, "Billing account"), h("p", { class: "loading" }, "Loading…"));
    const appointments = h("div", { class: "panel" }, h("h2", {}, "Appointments"), h("p", { class: "loading" }, "Loading…"));
    const title = h("h1", { tabindex: -1 }, patient.name);
    fill(page, h("div", { class: "heading" }, title),
      h("div", { class: "panel" },
        h("dl", { class: "facts" }, facts.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)])),
        h("div", { class: "actions" },
          h("a", { class: "button", href: `#/patients/${patient.id}/edit` }, "Edit"),
          h("a", { class: "button quiet", href: withQuery("#/appointments/new", { patient: patient.id }) }, "Book an appointment"),
          h("button", { type: "button", class: "danger", onclick: () => deletePatient(patient) }, "Delete"))),
      h("div", { class: "columns" }, billing, appointments));
    title.focus({ preventScroll: true });
    document.title = `${patient.name} · Patient management`;
    await Promise.all([showBilling(billing, patient.id), showAppointments(appointments, patient.id)]);
  });
}

async function showBilling(panel, patientId) {
  try {
    const account = await get(`/api/billing/accounts/${patientId}`);
    fill(panel, h("h2", {}, "Billing account"), h("dl", { class: "facts" },
      h("dt", {}, "Account"), h("dd", {}, account.accountId),
      h("dt", {}, "Status"), h("dd", {}, account.status),
      h("dt", {}, "Opened"), h("dd", {}, new Date(account.createdAt).toLocaleString())));
  } catch (error) {
    if (!(error instanceof ApiError) || error.status === 401) throw error;
    fill(panel, h("h2", {}, "Billing account"), h("p", {}, error.status === 404
      ? "No account yet: billing opens it a moment after the patient is registered. Reload to see it."
      : describe(error)));
  }
}

async function showAppointments(panel, patientId) {
  const from = new Date();
  from.setDate(from.getDate() - 30);
  const to = new Date(from);
  to.setDate(to.getDate() + 365);
  try {
    const all = await get(withQuery("/api/appointments", { from: from.toISOString(), to: to.toISOString() }));
    const theirs = all.filter((a) => a.patientId === patientId);
    fill(panel, h("h2", {}, "Appointments"), theirs.length
      ? h("ul", {}, theirs.map((a) => h("li", {},
        h("a", { href: withQuery("#/appointments", { view: "day", date: isoDay(new Date(a.startTime)) }) },
          `${formatDate(isoDay(new Date(a.startTime)))} ${formatTime(a.startTime)}–${formatTime(a.endTime)}`),
        ` · ${a.reason} · ${a.status.toLowerCase()}`)))
      : h("p", {}, "None in the last 30 days or the coming year."));
  } catch (error) {
    if (!(error instanceof ApiError) || error.status === 401) throw error;
    fill(panel, h("h2", {}, "Appointments"), h("p", {}, describe(error)));
  }
}

async function deletePatient(patient) {
  if (!(await confirmed(`Delete ${patient.name}? Their billing account is closed and kept.`, "Delete patient"))) return;
  await guarded(async () => {
    await remove(`/api/patients/${patient.id}`);
    notice("ok", `${patient.name} was deleted.`);
    location.hash = "#/patients";
  });
}

/** `#/patients/new` and `#/patients/{id}/edit`. */
export function patientForm(id) {
  const fields = {
    name: field("name", "Name", { required: true, maxlength: 100, autocomplete: "off" }),
    email: field("email", "Email", { type: "email", required: true, autocomplete: "off" }),
    address: field("address", "Address", { required: true, autocomplete: "off" }),
    dateOfBirth: field("dateOfBirth", "Date of birth", { type: "date", required: true, max: isoDay(new Date()) }),
    registeredDate: field("registeredDate", "Registered on", { type: "date", required: true, value: isoDay(new Date()) }),
  };
  const submit = h("button", { type: "submit" }, id ? "Save changes" : "Register patient");
  const cancel = h("a", { class: "button quiet", href: id ? `#/patients/${id}` : "#/patients" }, "Cancel");
  const form = h("form", { class: "form panel", novalidate: true },
    fields.name.field, fields.email.field, fields.address.field,
    h("div", { class: "row" }, fields.dateOfBirth.field, fields.registeredDate.field),
    h("div", { class: "actions" }, submit, cancel));
  const title = id ? "Edit patient" : "New patient";
  mount(title, h("h1", {}, title), form);
  if (id) {
    submit.disabled = true;
    guarded(async () => {
      const patient = await get(`/api/patients/${encodeURIComponent(id)}`);
      for (const [name, { input }] of Object.entries(fields)) input.value = patient[name] ?? "";
      submit.disabled = false;
    });
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = Object.fromEntries(Object.entries(fields).map(([name, { input }]) => [name, input.value.trim()]));
    submit.disabled = true;
    try {
      const saved = id ? await put(`/api/patients/${id}`, body) : await post("/api/patients", body);
      notice("ok", `${saved.name} was ${id ? "saved" : "registered"}.`);
      location.hash = `#/patients/${saved.id}`;
    } catch (error) {
      // A duplicate email is a conflict about one field: shown beside it like the others.
      refused(form, error, () => form.requestSubmit(), "email");
    } finally {
      submit.disabled = false;
    }
  });
}
