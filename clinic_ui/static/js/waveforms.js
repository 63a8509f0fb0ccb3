// The waveform traces as the doctor sees them: one Trace (traces.js) per channel of the
// bedside, a channel being one signal of one device (two devices' pleths are two traces),
// each labelled with its signal, rate, device and scale. The ECG comes first, then the
// pleths, as on a monitor. Controls in the traces card: sweep speed, ECG gain, sweep or
// scrolling display, freeze, and while frozen a review of the last 60 s. Told each wire
// packet and the events that concern traces (`channel`, `quality`); draws on animation
// frames.
//
// Test hook (read-only): window.telemedTraces.get(channelId) gives the channel's metadata
// and samples(fromIndex, toIndex): the indices and values the renderer placed.
import { t } from "./i18n.js";
import { displayUnit } from "./format.js";
import { DEFAULT_SPEED, GAINS, SPEEDS, Trace, nowSeconds, scaleKind } from "./traces.js";

const $ = (id) => document.getElementById(id);

/** Below this signal-quality score a trace is labelled "poor signal". */
const POOR_QUALITY = 0.3;
const SETTINGS_KEY = "telemed.traces";
/** Monitor order: ECG, then pleth, then the rest. */
const ORDER = { ecg_ii: 0, pleth: 1 };
const COLOURS = { ecg: "#3ddc84", pleth: "#4fc3f7" };

function savedSettings() {
  try {
    const saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? "{}");
    return {
      speed: SPEEDS.includes(saved.speed) ? saved.speed : DEFAULT_SPEED,
      gain: GAINS.includes(saved.gain) ? saved.gain : 1,
      mode: saved.mode === "scroll" ? "scroll" : "sweep",
    };
  } catch {
    return { speed: DEFAULT_SPEED, gain: 1, mode: "sweep" };
  }
}

export class WaveformView {
  constructor() {
    this.traces = new Map(); // channel id -> Trace (with its box, label...)
    this.ended = false; // the consultation ended: traces stopped where they were
    this.held = false; // the doctor froze the traces
    this.settings = savedSettings();
    this.list = document.createElement("div");
    this.list.className = "trace-list";
    $("traces").replaceChildren(this._tools(), this.list);
    this._relabelTools();
    globalThis.telemedTraces = this._hook();
  }

  packet(packet) {
    let trace = this.traces.get(packet.channel);
    if (!trace) trace = this._addTrace({ channel: packet.channel, code: "", unit: "", device: "" });
    trace.push(packet, nowSeconds());
  }

  /** A `channel` or `quality` message (events.js has checked it against the schema). */
  event(message) {
    if (message.type === "channel") {
      const trace = this.traces.get(message.channel);
      if (!trace) {
        this._addTrace(message);
        return;
      }
      const was = trace.info;
      if (was.device && (was.device !== message.device || was.mdc !== message.mdc)) {
        // Another gateway run numbered its channels afresh: this id is another signal now.
        trace.box.remove();
        this.traces.delete(message.channel);
        this._addTrace(message);
        return;
      }
      trace.info = message;
      trace.kind = scaleKind(message);
      trace.colour = COLOURS[trace.kind === "ecg" ? "ecg" : message.code] ?? COLOURS.pleth;
      this._describe(trace);
    } else if (message.type === "quality") {
      // The gateway scores each waveform every second (0 unusable .. 1 clean).
      const trace = this.traces.get(message.channel);
      if (trace) { trace.quality = message.score; this._labelTrace(trace); }
    }
  }

  /** Draw every trace; returns the time drawn at (s, nowSeconds()). */
  draw() {
    const now = nowSeconds();
    for (const trace of this.traces.values()) trace.draw(now);
    return now;
  }

  /** For each live trace drawn at `now` (what draw() returned): how long before `now` its
   *  newest drawn sample was taken, in s (its device time, on the gateway's clock). */
  drawnAges(now) {
    const ages = [];
    for (const trace of this.traces.values()) {
      const playout = trace.playout;
      if (trace.frozen || !playout?.anchor || playout.lastNow !== now) continue;
      const { index, time } = playout.anchor;
      ages.push(now - (time + (playout.lastCursor - index) / playout.sampleRate));
    }
    return ages;
  }

  /** The consultation ended: traces stop where they are and say so (still reviewable). */
  freeze() {
    this.ended = true;
    this._hold(true);
    this.freezeButton.disabled = true;
    for (const trace of this.traces.values()) {
      trace.box.dataset.frozen = "true";
      this._labelTrace(trace);
    }
  }

  relabel() {
    this._relabelTools();
    for (const trace of this.traces.values()) this._labelTrace(trace);
  }

  // -- controls ---------------------------------------------------------------------------

  _tools() {
    const tools = document.createElement("div");
    tools.className = "trace-tools";
    const select = (name, options, value, apply) => {
      const label = document.createElement("label");
      const text = document.createElement("span");
      const choice = document.createElement("select");
      choice.name = name;
      for (const [optionValue, optionText] of options) {
        choice.append(new Option(optionText, String(optionValue), false, optionValue === value));
      }
      choice.addEventListener("change", () => {
        apply(choice.value);
        localStorage.setItem(SETTINGS_KEY, JSON.stringify(this.settings));
        for (const trace of this.traces.values()) this._labelTrace(trace);
        this._updateReview();
      });
      label.append(text, choice);
      tools.append(label);
      return text;
    };
    this.speedText = select("speed", SPEEDS.map((s) => [s, `${s} mm/s`]), this.settings.speed,
      (v) => { this.settings.speed = Number(v); });
    this.gainText = select("gain", GAINS.map((g) => [g, `×${g}`]), this.settings.gain,
      (v) => { this.settings.gain = Number(v); });
    this.modeText = select("mode", [["sweep", ""], ["scroll", ""]], this.settings.mode,
      (v) => { this.settings.mode = v; });
    this.modeSelect = this.modeText.nextElementSibling;
    this.freezeButton = document.createElement("button");
    this.freezeButton.type = "button";
    this.freezeButton.name = "freeze";
    this.freezeButton.setAttribute("aria-pressed", "false");
    this.freezeButton.addEventListener("click", () => this._hold(!this.held));
    tools.append(this.freezeButton);
    const review = document.createElement("label");
    this.reviewText = document.createElement("span");
    this.review = document.createElement("input");
    Object.assign(this.review, { type: "range", name: "review", min: "0", max: "0", step: "0.5", value: "0" });
    this.review.disabled = true;
    this.review.addEventListener("input", () => this._reviewAt(Number(this.review.value)));
    review.append(this.reviewText, this.review);
    tools.append(review);
    return tools;
  }

  _relabelTools() {
    for (const [text, key] of [[this.speedText, "trace.speed"], [this.gainText, "trace.gain"],
      [this.modeText, "trace.display"]]) {
      text.textContent = t(key);
      text.nextElementSibling.title = text.textContent;
    }
    this.modeSelect.options[0].text = t("trace.sweep");
    this.modeSelect.options[1].text = t("trace.scroll");
    this.freezeButton.textContent = t(this.held ? "trace.resume" : "trace.freeze");
    this.reviewText.textContent = t("trace.review");
    this.review.setAttribute("aria-valuetext", t("trace.reviewValue", { s: this.review.value }));
  }

  /** Freeze (true) or resume: every trace at once, as a monitor's freeze key does. */
  _hold(held) {
    if (!held && this.ended) return;
    this.held = held;
    const now = nowSeconds();
    for (const trace of this.traces.values()) {
      if (held) trace.freeze(now); else trace.resume();
      this._labelTrace(trace);
    }
    this.freezeButton.setAttribute("aria-pressed", String(held));
    this.review.value = "0";
    this._updateReview();
    this._relabelTools();
  }

  _updateReview() {
    const back = Math.max(0, ...[...this.traces.values()].map((trace) => trace.reviewable()));
    this.review.max = String(Math.floor(back * 2) / 2);
    this.review.disabled = !this.held || back <= 0;
    // The slider reads left (older) to right (the moment of freezing).
    this.review.style.direction = "rtl";
  }

  _reviewAt(seconds) {
    for (const trace of this.traces.values()) trace.review = Math.min(seconds, trace.reviewable());
    this.review.setAttribute("aria-valuetext", t("trace.reviewValue", { s: seconds }));
  }

  // -- traces ------------------------------------------------------------------------------

  _addTrace(info) {
    const box = document.createElement("div");
    box.className = "trace";
    const head = document.createElement("div");
    head.className = "trace-head";
    const label = document.createElement("span");
    label.className = "label";
    const device = document.createElement("span");
    device.className = "device";
    const scale = document.createElement("span");
    scale.className = "scale";
    head.append(label, device, scale);
    const canvas = document.createElement("canvas");
    canvas.setAttribute("role", "img"); // its text alternative is set with the label
    canvas.addEventListener("wheel", (event) => this._wheel(event), { passive: false });
    box.append(head, canvas);
    const trace = new Trace(canvas, info, this.settings);
    Object.assign(trace, { box, label, deviceLabel: device, scaleLabel: scale });
    this.traces.set(info.channel, trace);
    if (this.held) trace.freeze();
    this._describe(trace);
    return trace;
  }

  /** Data attributes, colour, place in the list and labels from the trace's metadata. */
  _describe(trace) {
    const { info, box } = trace;
    box.dataset.channel = info.channel;
    box.dataset.mdc = info.mdc ?? "";
    box.dataset.device = info.device ?? "";
    box.dataset.code = info.code ?? "";
    trace.colour = COLOURS[trace.kind === "ecg" ? "ecg" : info.code] ?? COLOURS.pleth;
    const key = (tr) => [ORDER[tr.info.code] ?? 9, tr.info.device ?? "", tr.info.channel];
    const sorted = [...this.traces.values()].sort((a, b) => {
      const [ka, kb] = [key(a), key(b)];
      return ka[0] - kb[0] || String(ka[1]).localeCompare(String(kb[1])) || ka[2] - kb[2];
    });
    this.list.replaceChildren(...sorted.map((tr) => tr.box));
    this._labelTrace(trace);
  }

  _labelTrace(trace) {
    const { code, sample_rate: rate, device } = trace.info;
    const name = code ? t(`vital.${code}`) : `#${trace.info.channel}`;
    const unit = displayUnit(trace.info.unit);
    const poor = trace.quality !== undefined && trace.quality < POOR_QUALITY ? ` · ${t("quality.poor")}` : "";
    const stopped = this.ended ? ` · ${t("vital.frozen")}` : this.held ? ` · ${t("trace.frozen")}` : "";
    trace.label.textContent = `${name}${unit ? ` (${unit})` : ""}${rate ? ` · ${rate} Hz` : ""}${poor}${stopped}`;
    trace.deviceLabel.textContent = device ?? "";
    const speed = `${this.settings.speed} mm/s`;
    trace.scaleLabel.textContent = trace.kind === "ecg"
      ? `×${this.settings.gain} · ${10 * this.settings.gain} mm/mV · ${speed}`
      : `${speed} · ${t("trace.auto")}`;
    const whole = [trace.label.textContent, device, trace.scaleLabel.textContent].filter(Boolean).join(" · ");
    trace.canvas.setAttribute("aria-label", t("vital.traceOf", { name: whole }));
    trace.box.dataset.quality = trace.quality ?? "";
  }

  /** While frozen, the wheel scrolls back and forth through the last 60 s. */
  _wheel(event) {
    if (!this.held || this.review.disabled) return;
    event.preventDefault();
    const max = Number(this.review.max);
    const next = Math.min(max, Math.max(0, Number(this.review.value) + Math.sign(event.deltaY) * 0.5));
    this.review.value = String(next);
    this._reviewAt(next);
  }

  _hook() {
    const traces = this.traces;
    const view = (trace) => Object.freeze({
      info: Object.freeze({ ...trace.info }),
      sampleRate: trace.sampleRate,
      packets: trace.packets,
      newest: trace.buffer ? trace.buffer.newest : null,
      oldest: trace.buffer ? trace.buffer.oldest : null,
      samples: (from, to) => trace.samples(from, to),
    });
    return Object.freeze({
      ids: () => [...traces.keys()],
      get: (id) => (traces.has(id) ? view(traces.get(id)) : undefined),
    });
  }
}
