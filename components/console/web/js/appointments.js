// Appointments: a day or week at a time; booking, rescheduling (with the version read, so a
// change made meanwhile is caught) and cancelling. Times are entered and shown in the user's
// time zone and sent as RFC 3339 instants.
import { get, post, put, remove, withQuery } from "./api.js";
import {
  confirmed, field, fill, formatDate, formatTime, guarded, h, isoDay, mount, notice, refused,
} from "./dom.js";

const DAY_MS = 24 * 60 * 60 * 1000;

/** Local midnight of the day `iso` (YYYY-MM-DD) names, or of today. */
function dayOf(iso) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso ?? "");
  const date = match ? new Date(Number(match[1]), Number(match[2]) - 1, Number(match[3])) : new Date();
  date.setHours(0, 0, 0, 0);
  return date;
}

function addDays(date, days) {
  const moved = new Date(date);
  moved.setDate(moved.getDate() + days);
  return moved;
}

/** `#/appointments?view=day|week&date=YYYY-MM-DD` */
export function appointmentsPage(params) {
  const view = params.get("view") === "day" ? "day" : "week";
  const day = dayOf(params.get("date"));
  // A week starts on Monday.
  const start = view === "day" ? day : addDays(day, -((day.getDay() + 6) % 7));
  const days = Array.from({ length: view === "day" ? 1 : 7 }, (_, i) => addDays(start, i));
  const end = addDays(start, days.length);
  const at = (date, v = view) => withQuery("#/appointments", { view: v, date: isoDay(date) });
  const step = view === "day" ? 1 : 7;

  // The days are drawn once their appointments are known: drawn empty first, they would grow
  // and push each other down as the answer filled them in.
  const grid = h("div", { class: view === "day" ? "days one" : "days" }, h("p", { class: "loading" }, "Loading…"));
  const range = view === "day"
    ? formatDate(isoDay(start))
    : `${formatDate(isoDay(start))} – ${formatDate(isoDay(addDays(end, -1)))}`;
  mount("Appointments",
    h("div", { class: "heading" }, h("h1", {}, "Appointments"),
      h("a", { class: "button", href: withQuery("#/appointments/new", { date: isoDay(start) }) }, "Book an appointment")),
    h("div", { class: "toolbar" },
      h("a", { class: "button quiet", href: at(addDays(start, -step)) }, view === "day" ? "Previous day" : "Previous week"),
      h("a", { class: "button quiet", href: at(new Date()) }, "Today"),
      h("a", { class: "button quiet", href: at(addDays(start, step)) }, view === "day" ? "Next day" : "Next week"),
      h("span", { class: "who", "aria-live": "polite" }, range),
      h("a", { class: "button quiet", href: at(start, "day"), "aria-current": view === "day" ? "true" : null }, "Day"),
      h("a", { class: "button quiet", href: at(start, "week"), "aria-current": view === "week" ? "true" : null }, "Week")),
    grid);

  guarded(async () => {
    const appointments = await get(withQuery("/api/appointments", { from: start.toISOString(), to: end.toISOString() }));
    fill(grid, days.map((date) => {
      const theirs = appointments.filter((a) => {
        const starts = new Date(a.startTime);
        return starts >= date && starts < addDays(date, 1);
      });
      return h("section", { class: "day", "aria-label": formatDate(isoDay(date)) },
        h("h2", {}, date.toLocaleDateString(undefined, { weekday: "short", day: "numeric", month: "short" })),
        h("ul", {}, theirs.length
          ? theirs.map((a) => slot(a, () => appointmentsPage(params)))
          : h("li", { class: "who" }, "Nothing booked")));
    }));
  });
}

function slot(appointment, reload) {
  const cancelled = appointment.status === "CANCELLED";
  return h("li", { class: cancelled ? "slot cancelled" : "slot" },
    h("div", { class: "time" }, `${formatTime(appointment.startTime)}–${formatTime(appointment.endTime)}`),
    h("div", {}, h("a", { href: `#/patients/${appointment.patientId}` }, appointment.patientName ?? "Unknown patient")),
    h("div", {}, appointment.reason),
    cancelled ? h("div", {}, "Cancelled") : h("div", { class: "actions" },
      h("a", { class: "button quiet", href: `#/appointments/${appointment.id}/edit`, "aria-label": `Reschedule ${appointment.reason}` }, "Reschedule"),
      h("button", {
        type: "button", class: "quiet", "aria-label": `Cancel ${appointment.reason}`,
        onclick: async () => {
          if (!(await confirmed(`Cancel “${appointment.reason}” for ${appointment.patientName}?`, "Cancel appointment"))) return;
          await guarded(async () => {
            await remove(`/api/appointments/${appointment.id}`);
            notice("ok", "The appointment was cancelled.");
            reload();
          });
        },
      }, "Cancel")));
}

/** The date, times and reason of an appointment form, as inputs. */
function whenFields(date) {
  return {
    date: field("date", "Date", { type: "date", required: true, value: date }),
    startTime: field("startTime", "Starts at", { type: "time", required: true, value: "09:00" }),
    endTime: field("endTime", "Ends at", { type: "time", required: true, value: "09:30" }),
    reason: field("reason", "Reason", { required: true, maxlength: 255, autocomplete: "off" }),
  };
}

/** The instants the form names, in the user's time zone. */
function instants(fields) {
  const at = (time) => {
    const when = new Date(`${fields.date.input.value}T${time.input.value}`);
    return Number.isNaN(when.getTime()) ? time.input.value : when.toISOString();
  };
  return { startTime: at(fields.startTime), endTime: at(fields.endTime) };
}

function showInForm(fields, appointment) {
  const starts = new Date(appointment.startTime);
  const pad = (n) => String(n).padStart(2, "0");
  const clock = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  fields.date.input.value = isoDay(starts);
  fields.startTime.input.value = clock(starts);
  fields.endTime.input.value = clock(new Date(appointment.endTime));
  fields.reason.input.value = appointment.reason;
}

/** `#/appointments/new?patient={id}&date=YYYY-MM-DD` */
export function bookingForm(params) {
  const fields = whenFields(params.get("date") ?? isoDay(addDays(new Date(), 1)));
  const find = field("find", "Find the patient", { type: "search", autocomplete: "off" }, "Type part of the name, then choose below.");
  const patient = field("patientId", "Patient", { tag: "select", required: true });
  const submit = h("button", { type: "submit" }, "Book");
  const current = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "form panel", novalidate: true },
    find.field, patient.field, fields.date.field,
    h("div", { class: "row" }, fields.startTime.field, fields.endTime.field), fields.reason.field,
    h("div", { class: "actions" }, submit, h("a", { class: "button quiet", href: "#/appointments" }, "Cancel")), current);
  mount("Book an appointment", h("h1", {}, "Book an appointment"), form);

  const offer = (patients) => fill(patient.input, patients.length
    ? patients.map((p) => h("option", { value: p.id }, `${p.name} · ${p.email}`))
    : h("option", { value: "" }, "No patient found"));
  const chosen = params.get("patient");
  guarded(async () => {
    offer(chosen ? [await get(`/api/patients/${encodeURIComponent(chosen)}`)] : (await get(withQuery("/api/patients", { size: 20 }))).patients);
  });
  let pause = null;
  find.input.addEventListener("input", () => {
    clearTimeout(pause);
    pause = setTimeout(() => guarded(async () => {
      offer((await get(withQuery("/api/patients", { size: 20, searchValue: find.input.value.trim() }))).patients);
    }), 300);
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    fill(current);
    try {
      const booked = await post("/api/appointments", {
        patientId: patient.input.value, ...instants(fields), reason: fields.reason.input.value.trim(),
      });
      notice("ok", `Booked: ${booked.reason}, ${formatDate(isoDay(new Date(booked.startTime)))} at ${formatTime(booked.startTime)}.`);
      location.hash = withQuery("#/appointments", { view: "day", date: isoDay(new Date(booked.startTime)) });
    } catch (error) {
      refused(form, error, () => form.requestSubmit());
      if (error.status === 409) await guarded(() => showBookedThatDay(current, patient.input.value, fields.date.input.value));
    } finally {
      submit.disabled = false;
    }
  });
}

/** After a conflict: the patient's appointments on that day, as they are now. */
async function showBookedThatDay(panel, patientId, date) {
  const day = dayOf(date);
  const all = await get(withQuery("/api/appointments", { from: day.toISOString(), to: addDays(day, 1).toISOString() }));
  const theirs = all.filter((a) => a.patientId === patientId && a.status === "SCHEDULED");
  fill(panel, h("h2", {}, "Already booked for this patient that day"), h("ul", {}, theirs.map((a) =>
    h("li", {}, `${formatTime(a.startTime)}–${formatTime(a.endTime)} · ${a.reason}`))));
}

/** `#/appointments/{id}/edit`: moves an appointment, sending the version it was read at. */
export function rescheduleForm(id) {
  const fields = whenFields(isoDay(new Date()));
  let version = null;
  const submit = h("button", { type: "submit", disabled: true }, "Save");
  const who = h("p", { class: "who" }, " ");
  const form = h("form", { class: "form panel", novalidate: true }, who, fields.date.field,
    h("div", { class: "row" }, fields.startTime.field, fields.endTime.field), fields.reason.field,
    h("div", { class: "actions" }, submit, h("a", { class: "button quiet", href: "#/appointments" }, "Back")));
  mount("Reschedule", h("h1", {}, "Reschedule an appointment"), form);

  const read = async () => {
    const appointment = await get(`/api/appointments/${encodeURIComponent(id)}`);
    version = appointment.version;
    who.textContent = `${appointment.patientName} · ${appointment.status.toLowerCase()}`;
    return appointment;
  };
  guarded(async () => {
    showInForm(fields, await read());
    submit.disabled = false;
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const saved = await put(`/api/appointments/${id}`, { ...instants(fields), reason: fields.reason.input.value.trim(), version });
      notice("ok", `Moved to ${formatDate(isoDay(new Date(saved.startTime)))} at ${formatTime(saved.startTime)}.`);
      location.hash = withQuery("#/appointments", { view: "day", date: isoDay(new Date(saved.startTime)) });
    } catch (error) {
      refused(form, error, () => form.requestSubmit());
      if (error.status === 409) {
        // Stale (someone changed it meanwhile) or overlapping: show it as it is now, so the
        // next save starts from the current version.
        await guarded(async () => {
          const before = version;
          const now = await read();
          if (now.version !== before) {
            showInForm(fields, now);
            notice("error", `${error.message} The form now shows the appointment as it is; change it again and save.`);
          }
        });
      }
    } finally {
      submit.disabled = false;
    }
  });
}
