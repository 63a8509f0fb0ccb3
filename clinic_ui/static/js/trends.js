// Trends of the consultation's vital signs over the last 1, 4 or 8 hours, from the server's
// record (the gateway uploads every numeric, backfilling what it measured while the link or
// the server was down), with the alarms of the window marked in their IEC colours. Shown in
// a dialog; refreshed while open.
import { t } from "./i18n.js";
import { displayUnit, formatTime } from "./format.js";

const $ = (id) => document.getElementById(id);

/** One chart per row; its codes, and the range shown unless values go beyond it. */
const CHARTS = [
  ["heart_rate", ["heart_rate", "pulse_rate"], [40, 160]],
  ["spo2", ["spo2"], [85, 100]],
  ["nibp", ["nibp_sys", "nibp_dia", "nibp_mean"], [40, 180]],
  ["resp_rate", ["resp_rate"], [0, 40]],
  ["temperature", ["temperature"], [35, 39]],
];
const CODES = CHARTS.flatMap(([, codes]) => codes);
const COLOURS = ["#3ddc84", "#4fc3f7", "#f0b429", "#c792ea", "#ff8a65"];
export const ALARM_COLOURS = { high: "#ff4d4d", medium: "#ffd23f", low: "#39c6f0" };
const REFRESH_MS = 30000;

/** Points of `series` inside the window, as [x, y] pixels; null y breaks the line. */
export function project(points, { since, until, lo, hi, width, height }) {
  return points.map(([time, value]) => [
    ((time - since) / (until - since)) * width,
    value === null ? null : height - ((value - lo) / (hi - lo)) * height,
  ]);
}

export class TrendsView {
  constructor(api, consultationId) {
    this.api = api;
    this.consultationId = consultationId;
    this.hours = 1;
    this.data = null;
    this._timer = null;
  }

  async open(hours = this.hours) {
    this.hours = hours;
    for (const button of document.querySelectorAll("#trends-dialog [data-hours]")) {
      button.setAttribute("aria-pressed", String(Number(button.dataset.hours) === hours));
    }
    if (!$("trends-dialog").open) $("trends-dialog").showModal();
    await this.refresh();
    clearInterval(this._timer);
    this._timer = setInterval(() => this.refresh(), REFRESH_MS);
  }

  close() {
    clearInterval(this._timer);
    if ($("trends-dialog").open) $("trends-dialog").close();
  }

  async refresh() {
    const until = new Date();
    const since = new Date(until.getTime() - this.hours * 3600 * 1000);
    const step = Math.max(1, Math.round((this.hours * 3600) / 720)); // about 720 points wide
    const query = new URLSearchParams({
      codes: CODES.join(","), since: since.toISOString(), until: until.toISOString(), step: String(step),
    });
    try {
      this.data = await this.api.get(`/api/consultations/${this.consultationId}/trends?${query}`);
      $("trends-error").textContent = "";
    } catch (err) {
      $("trends-error").textContent = t("error.server", { detail: err.detail ?? String(err) });
      return;
    }
    this.render();
  }

  render() {
    const data = this.data;
    if (!data) return;
    const charts = $("trends-charts");
    charts.replaceChildren();
    for (const [id, codes, range] of CHARTS) {
      const series = data.series.filter((s) => codes.includes(s.code) && !s.derived);
      const derived = data.series.filter((s) => codes.includes(s.code) && s.derived);
      const shown = series.length ? series : derived; // the gateway's estimate when no device sent one
      const alarms = data.alarms.filter((a) => !a.code || codes.includes(a.code));
      charts.append(this._chart(id, codes, shown, alarms, range, data));
    }
    const rows = data.alarms.map((a) => {
      const li = document.createElement("li");
      li.dataset.priority = a.priority;
      li.textContent = `${formatTime(a.started * 1000)} · ${t(`trends.priority.${a.priority}`)} · ${a.device} · ${a.text || a.condition}`;
      return li;
    });
    $("trends-alarms").replaceChildren(...rows);
    $("trends-no-alarms").hidden = rows.length > 0;
  }

  _chart(id, codes, series, alarms, range, data) {
    const box = document.createElement("figure");
    box.className = "trend";
    box.dataset.chart = id;
    const caption = document.createElement("figcaption");
    const last = series.flatMap((s) => s.points.filter(([, v]) => v !== null).slice(-1).map(([, v]) => [s, v]));
    // Each line's latest value, named by parameter (where a chart has several) and device.
    const named = (s) => (codes.length > 1 ? `${t(`vital.${s.code}`)} ` : "") + s.device;
    const latest = last.map(([s, v]) => `${named(s)} ${Math.round(v)}`).join(" · ");
    const unit = series[0] ? displayUnit(series[0].unit, series[0].code) : "";
    caption.textContent = `${t(`vital.${id}`)}${unit ? ` (${unit})` : ""}${latest ? ` — ${latest}` : ""}`;
    const canvas = document.createElement("canvas");
    canvas.width = 720;
    canvas.height = 90;
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", caption.textContent);
    box.append(caption, canvas);
    const values = series.flatMap((s) => s.points.map(([, v]) => v)).filter((v) => v !== null);
    const lo = Math.min(range[0], ...values);
    const hi = Math.max(range[1], ...values);
    const ctx = canvas.getContext("2d");
    const { width, height } = canvas;
    ctx.fillStyle = "#0b1117";
    ctx.fillRect(0, 0, width, height);
    const frame = { since: data.since, until: data.until, lo, hi: hi > lo ? hi : lo + 1, width, height };
    for (const alarm of alarms) { // a band from start to end (or now), in its priority's colour
      const [[x0], [x1]] = project([[alarm.started, 0], [alarm.ended ?? data.until, 0]], frame);
      ctx.fillStyle = `${ALARM_COLOURS[alarm.priority]}40`;
      ctx.fillRect(Math.max(0, x0), 0, Math.max(2, x1 - x0), height);
    }
    series.forEach((s, k) => {
      ctx.strokeStyle = COLOURS[k % COLOURS.length];
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      let pen = false;
      for (const [x, y] of project(s.points, frame)) {
        if (y === null) { pen = false; continue; }
        if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
        pen = true;
      }
      ctx.stroke();
    });
    // The range drawn, at the left edge: the scale a reader needs.
    ctx.fillStyle = "#9aa7b4";
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText(String(Math.round(frame.hi)), 4, 11);
    ctx.fillText(String(Math.round(frame.lo)), 4, height - 3);
    canvas.dataset.points = String(series.reduce((n, s) => n + s.points.filter(([, v]) => v !== null).length, 0));
    return box;
  }
}
