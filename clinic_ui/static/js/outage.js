// Reviewing an outage of the bedside link. Waveforms lost in a gap stay gaps on the live
// traces (waveforms.js); the gateway keeps the last minutes of every waveform it sent
// (media/waveform/history.py), so after the link comes back the doctor can open "Review the
// outage": the page asks the gateway, for each channel, for the index range its live trace
// missed (`waveform-history-request`, events.js) and draws what comes back
// (`waveform-history`) in a review strip per channel, each named by its signal and device
// and marked as reviewed history, not live.
//
// A gap is a jump forward in a channel's sample indices of at least MIN_GAP_S (a late or
// lost packet or two is not an outage). Only the latest gap of each channel is reviewed.
//
// Test hook (read-only): window.telemedOutage.gaps() and .reviews() give the gaps found and
// the samples received for review ({channel, device, first, count, values, done}).
import { t } from "./i18n.js";
import { historyRequest } from "./events.js";
import { EVENTS_SCHEMA } from "./protocol.js";

/** A jump in the indices shorter than this is loss, not an outage. */
export const MIN_GAP_S = 1;
/** What one request may ask for (the schema's bound); a longer gap's newest part is asked. */
export const MAX_REQUEST = EVENTS_SCHEMA.$defs.WaveformHistoryRequest.properties.count.maximum;
/** A channel whose indices go back by more than this restarted (another gateway run). */
const RESTART_S = 120;
const COLOURS = { ecg: "#3ddc84", pleth: "#4fc3f7" };

/** Per channel: where its indices have got to, and its latest gap. Pure (Node-testable). */
export class GapTracker {
  constructor() {
    this.channels = new Map(); // channel id -> {end, rate, endTime, gap}
  }

  /** A live packet ({channel, sampleRate, firstIndex, firstTime, samples}). Returns the gap
   *  it ends, if it ends one ({channel, from, to, fromTime, toTime, rate}). */
  packet(packet) {
    const { channel, sampleRate: rate, firstIndex, firstTime } = packet;
    const n = packet.samples.length;
    const known = this.channels.get(channel);
    if (!known || known.rate !== rate || firstIndex + n < known.end - RESTART_S * rate) {
      this.channels.set(channel, { end: firstIndex + n, rate, endTime: firstTime + n / rate, gap: null });
      return null;
    }
    let gap = null;
    if (firstIndex - known.end >= MIN_GAP_S * rate) {
      gap = { channel, from: known.end, to: firstIndex, fromTime: known.endTime, toTime: firstTime, rate };
      known.gap = gap;
    }
    if (firstIndex + n > known.end) {
      known.end = firstIndex + n;
      known.endTime = firstTime + n / rate;
    }
    return gap;
  }

  /** The latest gap of each channel. */
  gaps() {
    return [...this.channels.values()].map((c) => c.gap).filter(Boolean);
  }
}

/** One channel's review: the requested range and what came back (NaN: not kept). */
export class Review {
  constructor(gap) {
    this.channel = gap.channel;
    this.gap = gap;
    this.count = Math.min(gap.to - gap.from, MAX_REQUEST);
    this.first = gap.to - this.count; // the newest part when the gap is longer than a request
    this.values = new Float32Array(this.count).fill(NaN);
    this.received = 0;
    this.done = false;
  }

  /** A `waveform-history` message answering this review's request. */
  answer(message) {
    if (message.request_first !== this.first || message.request_count !== this.count) return false;
    message.samples.forEach((value, k) => {
      const at = message.first + k - this.first;
      if (at >= 0 && at < this.count && value !== null) {
        this.values[at] = value;
        this.received++;
      }
    });
    if (message.done) this.done = true;
    return true;
  }
}

export class OutageReview {
  /** `link`: the BedsideLink (its waveform packets and events), `waveforms`: the live
   *  WaveformView (each channel's signal and device). */
  constructor(link, waveforms) {
    this.link = link;
    this.waveforms = waveforms;
    this.tracker = new GapTracker();
    this.reviews = new Map(); // channel id -> Review
    this.box = document.createElement("section");
    this.box.className = "outage";
    this.button = document.createElement("button");
    this.button.type = "button";
    this.button.name = "review-outage";
    this.button.hidden = true;
    this.button.addEventListener("click", () => this.open());
    this.panel = document.createElement("div");
    this.panel.className = "outage-review";
    this.panel.hidden = true;
    this.title = document.createElement("h3");
    this.closeButton = document.createElement("button");
    this.closeButton.type = "button";
    this.closeButton.name = "close-outage";
    this.closeButton.addEventListener("click", () => { this.panel.hidden = true; });
    this.list = document.createElement("div");
    const head = document.createElement("div");
    head.className = "outage-head";
    head.append(this.title, this.closeButton);
    this.panel.append(head, this.list);
    this.box.append(this.button, this.panel);
    document.getElementById("traces").append(this.box);
    this._onWaveform = (e) => this._packet(e.detail);
    this._onEvent = (e) => this._event(e.detail);
    link.addEventListener("waveform", this._onWaveform);
    link.addEventListener("event", this._onEvent);
    globalThis.telemedOutage = this._hook();
    this.relabel();
  }

  _packet(packet) {
    if (this.tracker.packet(packet)) this._renderButton();
  }

  _event(message) {
    if (message.type !== "waveform-history") return;
    const review = this.reviews.get(message.channel);
    if (review && review.answer(message)) this._drawSoon();
  }

  /** Ask the bedside for each channel's latest gap and show the review. */
  open() {
    this.reviews.clear();
    for (const gap of this.tracker.gaps()) {
      const review = new Review(gap);
      if (review.count <= 0) continue;
      this.reviews.set(gap.channel, review);
      this.link.sendEvent(JSON.parse(historyRequest(gap.channel, review.first, review.count)));
    }
    this.panel.hidden = false;
    this._renderList();
  }

  relabel() {
    this._renderButton();
    this.title.textContent = t("outage.title");
    this.closeButton.textContent = t("outage.close");
    if (!this.panel.hidden) this._renderList();
  }

  close() {
    this.link.removeEventListener("waveform", this._onWaveform);
    this.link.removeEventListener("event", this._onEvent);
    cancelAnimationFrame(this._frame);
    this.box.remove();
  }

  _renderButton() {
    const gaps = this.tracker.gaps();
    this.button.hidden = gaps.length === 0;
    const longest = Math.max(0, ...gaps.map((g) => (g.to - g.from) / g.rate));
    this.button.textContent = t("outage.open", { s: Math.round(longest) });
  }

  _renderList() {
    const rows = [...this.reviews.values()].map((review) => {
      const row = document.createElement("div");
      row.className = "trace outage-trace";
      row.dataset.channel = review.channel;
      row.dataset.history = "true";
      const head = document.createElement("div");
      head.className = "trace-head";
      const label = document.createElement("span");
      label.className = "label";
      const device = document.createElement("span");
      device.className = "device";
      const mark = document.createElement("span");
      mark.className = "history-mark";
      head.append(label, device, mark);
      const canvas = document.createElement("canvas");
      canvas.setAttribute("role", "img");
      row.append(head, canvas);
      Object.assign(review, { row, label, device, mark, canvas });
      this._label(review);
      return row;
    });
    if (rows.length === 0) {
      const none = document.createElement("p");
      none.textContent = t("outage.nothing");
      rows.push(none);
    }
    this.list.replaceChildren(...rows);
    this._drawSoon();
  }

  _info(channel) {
    return this.waveforms.traces.get(channel)?.info ?? { channel };
  }

  _label(review) {
    const info = this._info(review.channel);
    const name = info.code ? t(`vital.${info.code}`) : `#${review.channel}`;
    const { fromTime, toTime } = review.gap;
    const time = (s) => new Date(s * 1000).toLocaleTimeString(undefined, { hour12: false });
    const span = t("outage.range", {
      from: time(fromTime + (review.first - review.gap.from) / review.gap.rate),
      to: time(toTime),
      s: (review.count / review.gap.rate).toFixed(1),
    });
    review.label.textContent = `${name} · ${span}`;
    review.device.textContent = info.device ?? "";
    const state = !review.done ? t("outage.asking")
      : review.received === 0 ? t("outage.notKept") : t("outage.history");
    review.mark.textContent = state;
    review.row.dataset.done = String(review.done);
    review.canvas.setAttribute("aria-label", t("outage.traceOf", {
      name, device: info.device ?? "", span,
    }));
  }

  _drawSoon() {
    if (this._frame) return;
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      for (const review of this.reviews.values()) {
        if (!review.canvas) continue;
        this._label(review);
        this._draw(review);
      }
    });
  }

  /** The reviewed samples across the strip's width, auto-scaled; a sample not kept is a
   *  break in the line, as on the live trace. */
  _draw(review) {
    const canvas = review.canvas;
    const ratio = globalThis.devicePixelRatio || 1;
    const width = canvas.clientWidth || 600;
    const height = canvas.clientHeight || 84;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.fillStyle = "#14110b"; // amber-tinted: history, not the live traces' black
    g.fillRect(0, 0, width, height);
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of review.values) if (!Number.isNaN(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (lo === Infinity) return;
    const range = hi - lo || 1;
    const info = this._info(review.channel);
    g.strokeStyle = info.unit === "mV" ? COLOURS.ecg : COLOURS.pleth;
    g.lineWidth = 1.25;
    g.beginPath();
    let drawing = false;
    const n = review.count;
    for (let k = 0; k < n; k++) {
      const v = review.values[k];
      if (Number.isNaN(v)) { drawing = false; continue; }
      const x = (k / Math.max(1, n - 1)) * (width - 4) + 2;
      const y = height - 4 - ((v - lo) / range) * (height - 8);
      if (drawing) g.lineTo(x, y); else g.moveTo(x, y);
      drawing = true;
    }
    g.stroke();
  }

  _hook() {
    const plain = (review) => Object.freeze({
      channel: review.channel,
      device: this._info(review.channel).device ?? null,
      first: review.first,
      count: review.count,
      done: review.done,
      values: Array.from(review.values, (v) => (Number.isNaN(v) ? null : v)),
    });
    return Object.freeze({
      gaps: () => this.tracker.gaps().map((g) => ({ ...g })),
      reviews: () => [...this.reviews.values()].map(plain),
    });
  }
}
