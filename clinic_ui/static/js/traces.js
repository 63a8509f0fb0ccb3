// Waveform traces drawn as a bedside monitor draws them. No DOM here beyond the canvas it is
// given, so that Node tests run it with a recording canvas.
//
// Samples are placed by their index in the channel's stream (wire format version 2), never
// by when their packet arrived: packets that follow on by index are one continuous line
// whatever their arrival jitter, and only true gaps are blank (indices that never came, the
// wire's gap bitmap, the device's own "no value"). The last 60 s are kept (SampleBuffer).
// A playout delay per channel, adapted to the jitter of the packets' arrival (Playout),
// sets which index is drawn now, so the sweep moves at the device's own pace and its leading
// edge never waits for data.
//
// Drawing: a sweep with an erase bar (default) or a scrolling strip, at 12.5, 25 (default) or
// 50 mm/s; an ECG at 10 mm/mV times x0.5, x1 or x2 on the ECG grid (1 mm, 5 mm) with a 1 mV
// calibration pulse; a signal without a physical unit (pleth) auto-scaled over seconds,
// never per frame. The screen's physical scale is unknown to a page: a millimetre is
// 96/25.4 CSS pixels (CSS's own inch), made smaller where needed so that at least 10 s of
// ECG fit the trace at 25 mm/s.

export const BUFFER_S = 60;
export const SPEEDS = [12.5, 25, 50]; // mm/s
export const DEFAULT_SPEED = 25;
export const GAINS = [0.5, 1, 2];
export const ECG_MM_PER_MV = 10;
export const CSS_PX_PER_MM = 96 / 25.4;
/** At the default speed, at least this much of an ECG is visible. */
export const MIN_VISIBLE_S = 10;
/** The calibration pulse's strip at the left of an ECG trace, in mm. */
export const CAL_MM = 8;
/** The erase bar ahead of the sweep's cursor, in s. */
export const ERASE_S = 0.3;

const BACKGROUND = "#0b1117";
const GRID_MINOR = "#1d2a22";
const GRID_MAJOR = "#2f4536";
const CURSOR = "#3a4a5a";

/** Seconds on a clock that never steps back (the page's time origin plus its monotonic
 *  clock), comparable with the gateway's epoch seconds up to the two machines' offset,
 *  which the playout delay absorbs. */
export function nowSeconds() {
  return (performance.timeOrigin + performance.now()) / 1000;
}

function modulo(a, n) {
  return ((a % n) + n) % n;
}

/** How a signal's values become heights: an ECG at a fixed gain in mm/mV, a signal without
 *  a physical unit auto-scaled. (Other units have no standard display scale here yet: they
 *  are auto-scaled too, slowly.) */
export function scaleKind(info) {
  if (info.unit === "mV") return "ecg";
  return "auto";
}

/** The mm scale of a trace whose drawing area is `widthPx` CSS px wide: CSS's own mm, or
 *  smaller so that MIN_VISIBLE_S s fit at the default speed. */
export function pxPerMm(widthPx) {
  return Math.min(CSS_PX_PER_MM, widthPx / (MIN_VISIBLE_S * DEFAULT_SPEED));
}

/** The last `spanS` seconds of one channel, by sample index. A slot holds the index it was
 *  written for, so a sample is present only if its own index was placed; NaN is a placed
 *  "no value" (the wire's gap bitmap, the device's own). */
export class SampleBuffer {
  constructor(sampleRate, spanS = BUFFER_S) {
    this.sampleRate = sampleRate;
    this.size = Math.max(1, Math.ceil(spanS * sampleRate));
    this.values = new Float32Array(this.size).fill(NaN);
    this.indices = new Float64Array(this.size).fill(-1);
    this.newest = -Infinity; // one past the highest index placed
  }

  /** The lowest index still held. */
  get oldest() {
    return Math.max(0, this.newest - this.size);
  }

  /** Place `samples` from `firstIndex` on; samples older than the span are ignored.
   *  Returns how many were placed. */
  place(firstIndex, samples) {
    const n = samples.length;
    const newest = Math.max(this.newest, firstIndex + n);
    const floor = newest - this.size;
    let placed = 0;
    for (let k = 0; k < n; k++) {
      const index = firstIndex + k;
      if (index < floor) continue;
      const slot = index % this.size;
      this.values[slot] = samples[k];
      this.indices[slot] = index;
      placed++;
    }
    this.newest = newest;
    return placed;
  }

  has(index) {
    return index >= 0 && this.indices[index % this.size] === index;
  }

  /** The value at `index`: a number, NaN for "no value", undefined if never placed. */
  value(index) {
    return this.has(index) ? this.values[index % this.size] : undefined;
  }

  /** The placed samples with from <= index < to: {indices, values} (plain arrays; NaN
   *  where the sample was placed as "no value"). */
  samples(from, to) {
    const indices = [];
    const values = [];
    const start = Math.max(Math.ceil(from), this.oldest);
    const end = Math.min(Math.ceil(to), this.newest);
    for (let index = start; index < end; index++) {
      if (this.has(index)) {
        indices.push(index);
        values.push(this.values[index % this.size]);
      }
    }
    return { indices, values };
  }

  /** A copy that no later packet changes (a frozen screen's review). */
  snapshot() {
    const copy = new SampleBuffer(this.sampleRate, 0);
    Object.assign(copy, {
      size: this.size, values: this.values.slice(), indices: this.indices.slice(), newest: this.newest,
    });
    return copy;
  }
}

/** Which index a channel shows now. A packet's first sample has its time on the gateway's
 *  sample clock; `lateness` = its arrival here minus that time (the link's delay, the
 *  packet's own length and the two clocks' offset). The delay is a high quantile of the
 *  recent lateness plus a margin, approached at a bounded slew (the sweep's speed changes by
 *  at most `slew`), so the index shown advances at the device's pace and never goes back. */
export class Playout {
  constructor(sampleRate, { windowS = 10, quantile = 0.95, marginS = 0.03, slew = 0.02, everyS = 0.5 } = {}) {
    this.sampleRate = sampleRate;
    this.windowS = windowS;
    this.everyS = everyS;
    this.nextTarget = -Infinity;
    this.quantile = quantile;
    this.marginS = marginS;
    this.slew = slew;
    this.recent = []; // [arrival, lateness]
    this.anchor = null; // {index, time}: the newest packet's first sample
    this.delay = null;
    this.target = null;
    this.lastNow = null;
    this.lastCursor = -Infinity;
  }

  arrived(packet, now) {
    const lateness = now - packet.firstTime;
    this.recent.push([now, lateness]);
    if (!this.anchor || packet.firstIndex >= this.anchor.index) {
      this.anchor = { index: packet.firstIndex, time: packet.firstTime };
    }
    // The quantile is taken again every `everyS` (sorting the window for each packet of a
    // 60 Hz oximeter cost more than the rest of its handling), and at once when a packet
    // comes later than the delay allows.
    if (this.target === null || now >= this.nextTarget || lateness + this.marginS > this.target) {
      let old = 0;
      while (old < this.recent.length && this.recent[old][0] < now - this.windowS) old++;
      if (old) this.recent.splice(0, old);
      const sorted = this.recent.map((r) => r[1]).sort((a, b) => a - b);
      const high = sorted[Math.min(sorted.length - 1, Math.floor(this.quantile * sorted.length))];
      this.target = high + this.marginS;
      this.nextTarget = now + this.everyS;
    }
    if (this.delay === null) this.delay = this.target;
  }

  /** The (fractional) index to show at `now`; null before any packet. */
  cursor(now) {
    if (!this.anchor) return null;
    if (this.lastNow !== null && now > this.lastNow) {
      const step = this.slew * (now - this.lastNow);
      this.delay += Math.max(-step, Math.min(step, this.target - this.delay));
    }
    this.lastNow = now;
    const index = this.anchor.index + (now - this.delay - this.anchor.time) * this.sampleRate;
    this.lastCursor = Math.max(this.lastCursor, index);
    return this.lastCursor;
  }
}

/** A slowly adapting display range for auto-scaled signals: the target is the range of the
 *  last `windowS` seconds, taken once a second; the range shown eases towards it with time
 *  constant `tauS`. */
export class AutoRange {
  constructor({ windowS = 8, everyS = 1, tauS = 2 } = {}) {
    Object.assign(this, { windowS, everyS, tauS });
    this.lo = null;
    this.hi = null;
    this.goal = null;
    this.nextAt = -Infinity;
    this.lastNow = null;
  }

  update(buffer, cursor, now) {
    if (now >= this.nextAt && cursor !== null) {
      this.nextAt = now + this.everyS;
      const from = Math.max(buffer.oldest, Math.floor(cursor - this.windowS * buffer.sampleRate));
      const step = Math.max(1, Math.floor((cursor - from) / 2000));
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = from; i <= cursor; i += step) {
        const v = buffer.value(i);
        if (v === undefined || Number.isNaN(v)) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      if (hi >= lo) {
        const pad = Math.max((hi - lo) * 0.08, Math.abs(hi) * 1e-3, 1e-6);
        this.goal = [lo - pad, hi + pad];
        if (this.lo === null) [this.lo, this.hi] = this.goal;
      }
    }
    if (this.goal && this.lastNow !== null && now > this.lastNow) {
      const k = 1 - Math.exp(-(now - this.lastNow) / this.tauS);
      this.lo += (this.goal[0] - this.lo) * k;
      this.hi += (this.goal[1] - this.hi) * k;
    }
    this.lastNow = now;
  }
}

/** One channel's trace on a canvas. `info`: the channel's metadata (unit, sample_rate...);
 *  `view`: the settings shared by every trace ({speed, gain, mode}). */
export class Trace {
  constructor(canvas, info, view = { speed: DEFAULT_SPEED, gain: 1, mode: "sweep" }, { colour = "#3ddc84" } = {}) {
    this.canvas = canvas;
    this.info = info;
    this.view = view;
    this.colour = colour;
    this.kind = scaleKind(info);
    this.sampleRate = 0;
    this.buffer = null;
    this.playout = null;
    this.range = new AutoRange();
    this.frozen = null; // {cursor, buffer} while frozen
    this.review = 0; // seconds back from the frozen cursor
    this.drawnFrames = 0;
    this.packets = 0;
  }

  /** A decoded packet that arrived at `now` (s, nowSeconds()). */
  push(packet, now = nowSeconds()) {
    if (packet.sampleRate !== this.sampleRate) this._restart(packet.sampleRate);
    else if (packet.firstIndex + packet.samples.length < this.buffer.newest - this.buffer.size) {
      this._restart(packet.sampleRate); // far behind all we hold: the stream began again
    }
    this.buffer.place(packet.firstIndex, packet.samples);
    this.playout.arrived(packet, now);
    this.packets++;
  }

  _restart(sampleRate) {
    this.sampleRate = sampleRate;
    this.buffer = new SampleBuffer(sampleRate);
    this.playout = new Playout(sampleRate);
    this.range = new AutoRange();
  }

  /** The placed samples with from <= index < to (the test hook reads them). */
  samples(from, to) {
    return this.buffer ? this.buffer.samples(from, to) : { indices: [], values: [] };
  }

  freeze(now = nowSeconds()) {
    if (!this.buffer || this.frozen) return;
    this.frozen = { cursor: Math.floor(this.playout.cursor(now) ?? this.buffer.newest), buffer: this.buffer.snapshot() };
    this.review = 0;
  }

  resume() {
    this.frozen = null;
    this.review = 0;
  }

  /** How many seconds back a frozen trace can be reviewed (its buffer less one screen). */
  reviewable() {
    if (!this.frozen) return 0;
    const held = (this.frozen.cursor - this.frozen.buffer.oldest) / this.sampleRate;
    return Math.max(0, held - this.geometry().seconds);
  }

  /** Sizes in device pixels: the canvas follows its CSS box. */
  geometry() {
    const canvas = this.canvas;
    const dpr = globalThis.devicePixelRatio || 1;
    const cssWidth = canvas.clientWidth || canvas.width / dpr;
    const cssHeight = canvas.clientHeight || canvas.height / dpr;
    const width = Math.max(1, Math.round(cssWidth * dpr));
    const height = Math.max(1, Math.round(cssHeight * dpr));
    if (canvas.width !== width) canvas.width = width;
    if (canvas.height !== height) canvas.height = height;
    // Every trace has the same strip on the left (an ECG's calibration pulse) and so the
    // same time scale and sweep width: the traces line up in time as on a monitor.
    const mm = pxPerMm(cssWidth - CAL_MM * CSS_PX_PER_MM) * dpr;
    const left = Math.round(CAL_MM * mm);
    const pxPerS = this.view.speed * mm;
    const area = width - left;
    return { width, height, mm, left, area, pxPerS, seconds: area / pxPerS };
  }

  draw(now = nowSeconds()) {
    if (!this.canvas) return;
    const g = this.geometry();
    const ctx = this.canvas.getContext("2d");
    ctx.fillStyle = BACKGROUND;
    ctx.fillRect(0, 0, g.width, g.height);
    if (this.kind === "ecg") this._grid(ctx, g);
    if (!this.buffer) return;
    const buffer = this.frozen ? this.frozen.buffer : this.buffer;
    const cursor = this.frozen
      ? this.frozen.cursor - this.review * this.sampleRate
      : this.playout.cursor(now);
    if (cursor === null) return;
    if (this.kind === "auto" && !this.frozen) this.range.update(buffer, cursor, now);
    const y = this._heights(g);
    if (this.kind === "ecg") this._calibration(ctx, g, y);
    if (!y) return;
    const span = g.seconds * this.sampleRate;
    const sweep = this.view.mode === "sweep" && !this.frozen;
    const erase = sweep ? ERASE_S * this.sampleRate : 0;
    const from = Math.max(buffer.oldest, Math.floor(cursor - span + erase) + 1);
    const to = Math.floor(cursor);
    const pxPerSample = g.pxPerS / this.sampleRate;
    // The sweep's position is the sample's time on the gateway's clock, so that the sweeps
    // of every channel run together; the strip's, its distance from the cursor.
    const { index: i0, time: t0 } = this.playout.anchor;
    const x = sweep
      ? (i) => g.left + modulo((t0 + (i - i0) / this.sampleRate) * g.pxPerS, g.area)
      : (i) => g.left + g.area - (cursor - i) * pxPerSample;
    ctx.strokeStyle = this.colour;
    ctx.lineWidth = Math.max(1, 1.5 * (globalThis.devicePixelRatio || 1));
    this._stroke(ctx, buffer, from, to, x, y);
    if (sweep) {
      const at = x(cursor);
      ctx.fillStyle = CURSOR;
      ctx.fillRect(Math.floor(at), 0, Math.max(1, Math.round(g.mm / 2)), g.height);
    }
    this.drawnFrames++;
  }

  /** value -> y in device px, or null while an auto range is unknown. */
  _heights(g) {
    const mid = g.height / 2;
    if (this.kind === "ecg") {
      const perMv = ECG_MM_PER_MV * this.view.gain * g.mm;
      return (v) => mid - v * perMv;
    }
    const { lo, hi } = this.range;
    if (lo === null || !(hi > lo)) return null;
    const pad = g.height * 0.06;
    return (v) => g.height - pad - ((v - lo) / (hi - lo)) * (g.height - 2 * pad);
  }

  /** The samples from..to (indices) as one path, broken at every missing or NaN sample and
   *  where the sweep wraps. Several samples to a pixel column: the column's first, lowest,
   *  highest and last value, so a QRS keeps its height at any speed. */
  _stroke(ctx, buffer, from, to, x, y) {
    ctx.beginPath();
    let pen = false;
    let column = null; // [px, first, lo, hi, last]
    let lastX = -Infinity;
    const flush = () => {
      if (!column) return;
      const [px, first, lo, hi, last] = column;
      if (pen) ctx.lineTo(px, first); else ctx.moveTo(px, first);
      // Only the extremes the line from first to last would not reach: a column is one to
      // four points, so a path has about as many points as the trace has pixels.
      const [from, to] = first <= last ? [lo, hi] : [hi, lo];
      if (from !== first && from !== last) ctx.lineTo(px, from);
      if (to !== first && to !== last) ctx.lineTo(px, to);
      if (last !== first) ctx.lineTo(px, last);
      pen = true;
      column = null;
    };
    for (let i = from; i <= to; i++) {
      const v = buffer.value(i);
      if (v === undefined || Number.isNaN(v)) {
        flush();
        pen = false;
        continue;
      }
      const px = Math.round(x(i));
      if (px < lastX) { // the sweep wrapped: no line back across the screen
        flush();
        pen = false;
      }
      lastX = px;
      const h = y(v);
      if (column && column[0] === px) {
        if (h < column[2]) column[2] = h;
        if (h > column[3]) column[3] = h;
        column[4] = h;
      } else {
        flush();
        column = [px, h, h, h, h];
      }
    }
    flush();
    ctx.stroke();
  }

  /** The ECG grid: 1 mm lines, every fifth darker, from the baseline and the left. */
  _grid(ctx, g) {
    ctx.lineWidth = 1;
    for (const [colour, every] of [[GRID_MINOR, 1], [GRID_MAJOR, 5]]) {
      const step = g.mm * every;
      if (step < 2) continue; // finer than the screen can show
      ctx.strokeStyle = colour;
      ctx.beginPath();
      for (let px = g.left; px <= g.width; px += step) {
        ctx.moveTo(Math.round(px) + 0.5, 0);
        ctx.lineTo(Math.round(px) + 0.5, g.height);
      }
      for (let dy = 0; dy <= g.height / 2; dy += step) {
        for (const py of dy ? [g.height / 2 - dy, g.height / 2 + dy] : [g.height / 2]) {
          ctx.moveTo(g.left, Math.round(py) + 0.5);
          ctx.lineTo(g.width, Math.round(py) + 0.5);
        }
      }
      ctx.stroke();
    }
  }

  /** A 1 mV step at the current gain, in the strip left of the trace: what 1 mV looks like. */
  _calibration(ctx, g, y) {
    const base = y(0);
    const top = y(1);
    const unit = g.mm;
    ctx.strokeStyle = this.colour;
    ctx.lineWidth = Math.max(1, 1.5 * (globalThis.devicePixelRatio || 1));
    ctx.beginPath();
    ctx.moveTo(unit, base);
    ctx.lineTo(2 * unit, base);
    ctx.lineTo(2 * unit, top);
    ctx.lineTo(7 * unit, top); // 5 mm: 0.2 s at 25 mm/s
    ctx.lineTo(7 * unit, base);
    ctx.lineTo(CAL_MM * unit, base);
    ctx.stroke();
  }
}
