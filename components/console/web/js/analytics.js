// Analytics (ADMIN): the summary's figures and registrations by day as a bar chart drawn in the
// page (SVG), with the same figures as a table for screen readers.
import { fill, formatDate, guarded, h, isoDay, mount } from "./dom.js";
import { get } from "./api.js";

const DAYS_SHOWN = 30;
/** The chart's height in CSS pixels (`.chart` in console.css); its width is the panel's. */
const HEIGHT = 256;
const FALLBACK_WIDTH = 600;
const MARGIN = { top: 12, right: 8, bottom: 28, left: 32 };

export function analyticsPage() {
  const stats = h("div", { class: "stats" }, ["Registered", "Updated", "Deleted", "Active"].map((label) =>
    h("div", { class: "stat" }, h("div", { class: "value" }, "–"), h("div", { class: "label" }, label))));
  const chart = h("div", { class: "panel" }, h("h2", { id: "chart-title" }, `Registrations, last ${DAYS_SHOWN} days`),
    h("svg:svg", { class: "chart", viewBox: `0 0 ${FALLBACK_WIDTH} ${HEIGHT}`, role: "img", "aria-labelledby": "chart-title" }));
  mount("Analytics", h("h1", {}, "Analytics"), stats, chart);

  guarded(async () => {
    const summary = await get("/api/analytics/summary");
    const values = [summary.patientsCreated, summary.patientsUpdated, summary.patientsDeleted, summary.activePatients];
    stats.querySelectorAll(".value").forEach((element, i) => { element.textContent = String(values[i]); });
    const counts = new Map(summary.registrationsByDay.map(({ date, count }) => [date, count]));
    const today = new Date();
    const days = Array.from({ length: DAYS_SHOWN }, (_, i) => {
      const day = new Date(today);
      day.setDate(day.getDate() - (DAYS_SHOWN - 1 - i));
      const date = isoDay(day);
      return { date, count: counts.get(date) ?? 0 };
    });
    // Drawn at the panel's own width, so text keeps its size on a phone and a wide screen.
    const width = chart.querySelector("svg").getBoundingClientRect().width || FALLBACK_WIDTH;
    fill(chart, chart.firstChild, draw(days, Math.round(width)), figures(days));
  });
}

function draw(days, width) {
  const svg = h("svg:svg", { class: "chart", viewBox: `0 0 ${width} ${HEIGHT}`, role: "img", "aria-labelledby": "chart-title" });
  const top = Math.max(1, ...days.map((d) => d.count));
  const plotWidth = width - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const slotWidth = plotWidth / days.length;
  const y = (count) => MARGIN.top + plotHeight - (count / top) * plotHeight;
  svg.append(
    h("svg:line", { class: "axis", x1: MARGIN.left, x2: width - MARGIN.right, y1: y(0), y2: y(0) }),
    h("svg:text", { x: MARGIN.left - 6, y: y(top) + 4, "text-anchor": "end" }, String(top)),
    h("svg:text", { x: MARGIN.left - 6, y: y(0) + 4, "text-anchor": "end" }, "0"),
  );
  days.forEach((day, i) => {
    const x = MARGIN.left + i * slotWidth;
    svg.append(h("svg:rect", {
      class: "bar-fill", x: x + slotWidth * 0.15, width: slotWidth * 0.7, y: y(day.count), height: y(0) - y(day.count),
    }, h("svg:title", {}, `${formatDate(day.date)}: ${day.count}`)));
    // A label a week apart, counted back from today's.
    if ((days.length - 1 - i) % 7 === 0) {
      const [year, month, date] = day.date.split("-").map(Number);
      const label = new Date(year, month - 1, date).toLocaleDateString(undefined, { month: "short", day: "numeric" });
      svg.append(h("svg:text", { x: x + slotWidth / 2, y: HEIGHT - 8, "text-anchor": "middle" }, label));
    }
  });
  return svg;
}

function figures(days) {
  return h("details", {}, h("summary", {}, "Show the figures"),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Day"), h("th", { scope: "col" }, "Registrations"))),
      h("tbody", {}, days.filter((d) => d.count > 0).map((d) => h("tr", {}, h("td", {}, formatDate(d.date)), h("td", {}, String(d.count)))))));
}
