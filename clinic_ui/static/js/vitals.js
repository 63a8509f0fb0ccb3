// What the bedside sends, as the doctor sees it: waveform traces, vital-sign tiles and
// device states. `VitalsView` owns its part of the room's DOM; it is told each packet and
// event message (already parsed by type, events.js) and draws on animation frames.
import { t } from "./i18n.js";
import { displayUnit, formatValue } from "./format.js";
import { Trace } from "./traces.js";

const $ = (id) => document.getElementById(id);

/** The order vital signs are shown in; others follow as they come. */
const NUMERIC_ORDER = ["heart_rate", "spo2", "pulse_rate", "nibp_sys", "nibp_dia", "nibp_mean",
  "resp_rate", "temperature", "perfusion_index"];
/** A value older than this is greyed out; a derived value yields to a device's own. */
const STALE_MS = 10000;
/** Below this signal-quality score a trace is labelled "poor signal". */
const POOR_QUALITY = 0.3;

export class VitalsView {
  constructor() {
    this.traces = new Map();
    this.numerics = new Map();
    this.devices = new Map();
    for (const id of ["traces", "numerics", "devices"]) $(id).replaceChildren();
    $("no-devices").hidden = false;
  }

  waveform(packet) {
    let trace = this.traces.get(packet.channel);
    if (!trace) trace = this._addTrace({ channel: packet.channel, code: String(packet.channel), unit: "" });
    trace.push(packet);
  }

  /** One message from the events channel (events.js has checked it against the schema). */
  event(message) {
    switch (message.type) {
      case "channel": {
        const trace = this.traces.get(message.channel);
        if (trace) { trace.info = message; this._labelTrace(trace); } else this._addTrace(message);
        break;
      }
      case "numeric":
        this.numerics.set(`${message.code}|${message.derived ? "derived" : "device"}`, {
          ...message, receivedAt: Date.now(),
        });
        this.renderNumerics();
        break;
      case "status":
        this.devices.set(message.device, message);
        this.renderDevices();
        break;
      case "quality": {
        // The gateway scores each waveform every second (0 unusable .. 1 clean).
        const trace = this.traces.get(message.channel);
        if (trace) { trace.quality = message.score; this._labelTrace(trace); }
        break;
      }
    }
  }

  draw() {
    if (this.frozen) return;
    for (const trace of this.traces.values()) trace.draw();
  }

  /** The consultation ended: traces stop where they are and say so, tiles keep their last
   *  values marked as such (nothing looks live that is not). */
  freeze() {
    this.frozen = true;
    for (const trace of this.traces.values()) {
      trace.box.dataset.frozen = "true";
      this._labelTrace(trace);
    }
    this.renderNumerics();
  }

  relabel() {
    for (const trace of this.traces.values()) this._labelTrace(trace);
    this.renderNumerics();
    this.renderDevices();
  }

  _addTrace(info) {
    const box = document.createElement("div");
    box.className = "trace";
    box.dataset.channel = info.channel;
    const label = document.createElement("div");
    label.className = "label";
    box.append(label);
    const canvas = document.createElement("canvas");
    canvas.width = 800;
    canvas.height = 110;
    canvas.setAttribute("role", "img"); // its text alternative is set with the label
    box.append(canvas);
    $("traces").append(box);
    const trace = new Trace(canvas, { colour: info.code === "pleth" ? "#4fc3f7" : "#3ddc84" });
    trace.info = info;
    trace.label = label;
    trace.box = box;
    this._labelTrace(trace);
    this.traces.set(info.channel, trace);
    return trace;
  }

  _labelTrace(trace) {
    const { code, sample_rate: rate } = trace.info;
    const name = t(`vital.${code}`);
    const unit = displayUnit(trace.info.unit);
    const poor = trace.quality !== undefined && trace.quality < POOR_QUALITY ? ` · ${t("quality.poor")}` : "";
    const frozen = this.frozen ? ` · ${t("vital.frozen")}` : "";
    trace.label.textContent = `${name}${unit ? ` (${unit})` : ""}${rate ? ` · ${rate} Hz` : ""}${poor}${frozen}`;
    trace.canvas.setAttribute("aria-label", t("vital.traceOf", { name: trace.label.textContent }));
    trace.box.dataset.quality = trace.quality ?? "";
  }

  renderNumerics() {
    const now = Date.now();
    const codes = new Set([...this.numerics.values()].map((m) => m.code));
    const ordered = [...NUMERIC_ORDER.filter((c) => codes.has(c)), ...[...codes].filter((c) => !NUMERIC_ORDER.includes(c))];
    const tiles = ordered.map((code) => {
      const own = this.numerics.get(`${code}|device`);
      const derived = this.numerics.get(`${code}|derived`);
      // The device's own value wins while it is fresh; the gateway's estimate fills in.
      const m = own && (this.frozen || now - own.receivedAt < STALE_MS) ? own : (derived ?? own);
      const tile = document.createElement("div");
      tile.className = "numeric";
      tile.id = `num-${code}`;
      if (this.frozen || now - m.receivedAt > STALE_MS) tile.classList.add("stale");
      const name = document.createElement("div");
      name.className = "name";
      name.textContent = t(`vital.${code}`);
      const value = document.createElement("span");
      value.className = "value";
      // A rate derived from a waveform is shown as a whole number, as a monitor shows it.
      value.textContent = m.value === null ? "--" : formatValue(m.derived ? Math.round(m.value) : m.value);
      value.title = m.value === null ? t("vital.noValue") : "";
      const unit = document.createElement("span");
      unit.className = "unit";
      unit.textContent = displayUnit(m.unit);
      const note = document.createElement("div");
      note.className = "note";
      note.textContent = this.frozen ? t("vital.lastValue") : m.derived ? t("vital.derived") : "";
      tile.append(name, value, unit, note);
      return tile;
    });
    $("numerics").replaceChildren(...tiles);
  }

  renderDevices() {
    $("no-devices").hidden = this.devices.size > 0;
    $("devices").replaceChildren(...[...this.devices.values()].map((s) => {
      const li = document.createElement("li");
      li.dataset.device = s.device;
      li.dataset.state = s.state;
      li.textContent = `${s.device}: ${t(`device.${s.state}`)}${s.detail ? ` (${s.detail})` : ""}`;
      return li;
    }));
  }
}
