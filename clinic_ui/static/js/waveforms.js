// The waveform traces as the doctor sees them: one Trace (traces.js) per channel of the
// bedside, labelled with its signal, unit, rate and quality. Told each wire packet and the
// events that concern traces (`channel`, `quality`); draws on animation frames.
import { t } from "./i18n.js";
import { displayUnit } from "./format.js";
import { Trace } from "./traces.js";

const $ = (id) => document.getElementById(id);

/** Below this signal-quality score a trace is labelled "poor signal". */
const POOR_QUALITY = 0.3;

export class WaveformView {
  constructor() {
    this.traces = new Map();
    this.frozen = false;
    $("traces").replaceChildren();
  }

  packet(packet) {
    let trace = this.traces.get(packet.channel);
    if (!trace) trace = this._addTrace({ channel: packet.channel, code: String(packet.channel), unit: "" });
    trace.push(packet);
  }

  /** A `channel` or `quality` message (events.js has checked it against the schema). */
  event(message) {
    if (message.type === "channel") {
      const trace = this.traces.get(message.channel);
      if (trace) { trace.info = message; this._labelTrace(trace); } else this._addTrace(message);
    } else if (message.type === "quality") {
      // The gateway scores each waveform every second (0 unusable .. 1 clean).
      const trace = this.traces.get(message.channel);
      if (trace) { trace.quality = message.score; this._labelTrace(trace); }
    }
  }

  draw() {
    if (this.frozen) return;
    for (const trace of this.traces.values()) trace.draw();
  }

  /** The consultation ended: traces stop where they are and say so. */
  freeze() {
    this.frozen = true;
    for (const trace of this.traces.values()) {
      trace.box.dataset.frozen = "true";
      this._labelTrace(trace);
    }
  }

  relabel() {
    for (const trace of this.traces.values()) this._labelTrace(trace);
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
}
