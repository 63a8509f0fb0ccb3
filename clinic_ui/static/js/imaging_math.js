// The image viewer's arithmetic, pure (no DOM, time injected): DICOM JSON values, window
// and level, the view's zoom and pan, lengths with Pixel Spacing or an ultrasound region's
// calibration, and the schedulers that
// keep requests to the server few (the latest only, throttled, a bounded frame cache).
// The browser never decodes DICOM: the server renders; these numbers say what to ask for
// and how to place and measure what comes back.

/** CT window presets, [centre, width] in HU: the server's table (media.imaging.render
 *  PRESETS; tests/clinic_ui/test_imaging_contract.py holds the two equal). */
export const CT_PRESETS = Object.freeze({
  "soft-tissue": Object.freeze([40, 400]),
  lung: Object.freeze([-600, 1500]),
  bone: Object.freeze([400, 1800]),
  brain: Object.freeze([40, 80]),
});

// -- DICOM JSON (PS3.18 F.2) -------------------------------------------------------------

/** The values of attribute `tag` ("00280030") of a DICOM JSON object, or []. */
export function values(item, tag) {
  const value = item?.[tag]?.Value;
  return Array.isArray(value) ? value : [];
}

/** The first value of `tag`, or `fallback`. */
export function first(item, tag, fallback = null) {
  const [value] = values(item, tag);
  return value === undefined || value === null ? fallback : value;
}

/** The first value of `tag` as a finite number (IS and DS may come as strings), or null. */
export function numberOf(item, tag) {
  const value = Number(first(item, tag));
  return first(item, tag) === null || !Number.isFinite(value) ? null : value;
}

/** A person's name (PN) as stored: its groups (alphabetic, ideographic, phonetic) each
 *  with its components' `^` as spaces; the ideographic first (the patient's own script,
 *  Japanese or Korean), the others after it in brackets. "" when there is none. */
export function personName(item, tag = "00100010") {
  const name = first(item, tag);
  if (!name || typeof name !== "object") return "";
  const clean = (group) => (group ?? "").split("^").map((s) => s.trim()).filter(Boolean).join(" ");
  const [ideographic, alphabetic, phonetic] = [name.Ideographic, name.Alphabetic, name.Phonetic].map(clean);
  const others = [alphabetic, phonetic].filter(Boolean);
  if (!ideographic) return others.join(" / ");
  return others.length ? `${ideographic} (${others.join(" / ")})` : ideographic;
}

/** Pixel Spacing (0028,0030) as [row spacing, column spacing] in mm (the distance between
 *  rows, then between columns), or null when the instance has none or it is not positive. */
export function pixelSpacing(meta) {
  const [row, column] = values(meta, "00280030").map(Number);
  if (!(row > 0) || !(column > 0) || !Number.isFinite(row) || !Number.isFinite(column)) return null;
  return [row, column];
}

/** Physical Units X/Y Direction (0018,6024/6026) value for centimetres (PS3.3 C.8.5.5.1.15). */
const CM = 3;

/** The calibrated regions of an ultrasound image (Sequence of Ultrasound Regions, 0018,6011):
 *  each [x0, y0, x1, y1] in pixels (inclusive) with the mm per pixel along x and y. Only
 *  regions whose both directions are in cm: a Doppler strip's seconds or cm/s are not
 *  lengths. [] when the instance has none (an ultrasound rarely has Pixel Spacing). */
export function ultrasoundRegions(meta) {
  const regions = [];
  for (const item of values(meta, "00186011").slice(0, 16)) {
    if (numberOf(item, "00186024") !== CM || numberOf(item, "00186026") !== CM) continue;
    const box = ["00186018", "0018601A", "0018601C", "0018601E"].map((tag) => numberOf(item, tag));
    const dx = numberOf(item, "0018602C");
    const dy = numberOf(item, "0018602E");
    if (box.some((v) => v === null) || !(dx > 0) || !(dy > 0)) continue;
    if (box[2] < box[0] || box[3] < box[1]) continue;
    regions.push({ box, mmPerPixel: [dx * 10, dy * 10] });
  }
  return regions;
}

/** The window the file itself gives (Window Center/Width, 0028,1050/1051: the first pair),
 *  or null (the server then renders the frame's own range). */
export function fileWindow(meta) {
  const centre = numberOf(meta, "00281050");
  const width = numberOf(meta, "00281051");
  return centre !== null && width !== null && width > 0 ? [centre, width] : null;
}

/** Where a window drag starts when the file gives no window: one covering the stored
 *  values' range through the Modality LUT; null for colour or an unknown depth. */
export function storedRange(meta) {
  const bits = numberOf(meta, "00280101");
  if (bits === null || bits < 1 || bits > 32 || (numberOf(meta, "00280002") ?? 1) !== 1) return null;
  const signed = numberOf(meta, "00280103") === 1;
  const low = signed ? -(2 ** (bits - 1)) : 0;
  const high = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
  const slope = numberOf(meta, "00281053") ?? 1;
  const intercept = numberOf(meta, "00281052") ?? 0;
  const [a, b] = [low * slope + intercept, high * slope + intercept].sort((x, y) => x - y);
  return [(a + b) / 2, Math.max(1, b - a)];
}

/** Frames a second for cine: Cine Rate (0018,0040), else 1000 / Frame Time (0018,1063),
 *  else Recommended Display Frame Rate (0008,2144), else `fallback`; within 1..60. */
export function cineRate(meta, fallback = 15) {
  const rate = numberOf(meta, "00180040")
    ?? (numberOf(meta, "00181063") > 0 ? 1000 / numberOf(meta, "00181063") : null)
    ?? numberOf(meta, "00082144");
  return Math.min(60, Math.max(1, Math.round(rate > 0 ? rate : fallback)));
}

/** Patient Identity Removed (0012,0062) is YES. */
export function deidentified(meta) {
  return String(first(meta, "00120062", "")).toUpperCase() === "YES";
}

// -- window and level ----------------------------------------------------------------------

/** How many units a pixel of drag moves the window, for a window `width` wide at the drag's
 *  start: a drag across ~300 px moves it by about its own width, on any modality. */
export function dragScale(width) {
  return Math.max(Math.abs(width), 2) / 300;
}

/** The window after a drag of (dx, dy) screen pixels from `start` [centre, width]: right
 *  widens, left narrows (never below 1), down raises the centre (the image darkens), up
 *  lowers it, as on most workstations. */
export function dragWindow(start, dx, dy, scale = dragScale(start[1])) {
  return [start[0] + dy * scale, Math.max(1, start[1] + dx * scale)];
}

/** A window's values as shown and sent: centre and width rounded to what a person reads. */
export function roundWindow([centre, width]) {
  const places = width < 10 ? 2 : width < 100 ? 1 : 0;
  const k = 10 ** places;
  return [Math.round(centre * k) / k, Math.max(1 / k, Math.round(width * k) / k)];
}

/** The CT preset `window` equals, or null. */
export function presetOf(window) {
  if (!window) return null;
  return Object.entries(CT_PRESETS).find(([, [c, w]]) => c === window[0] && w === window[1])?.[0] ?? null;
}

// -- the view: zoom and pan ------------------------------------------------------------------

export const MIN_ZOOM = 0.1;
export const MAX_ZOOM = 20;

/** Where an image `width` x `height` (pixels) sits in a canvas `canvasW` x `canvasH`: fitted
 *  whole and centred at zoom 1, then zoomed about a point and panned. Canvas coordinates are
 *  the canvas's own pixels. */
export class ViewTransform {
  constructor(width, height, canvasW, canvasH) {
    this.width = width;
    this.height = height;
    this.resize(canvasW, canvasH);
    this.reset();
  }

  resize(canvasW, canvasH) {
    this.canvasW = canvasW;
    this.canvasH = canvasH;
  }

  reset() {
    this.zoom = 1;
    this.panX = 0;
    this.panY = 0;
  }

  /** Canvas pixels per image pixel. */
  get scale() {
    return Math.min(this.canvasW / this.width, this.canvasH / this.height) * this.zoom;
  }

  /** The canvas position of the image's top left corner. */
  get origin() {
    const s = this.scale;
    return [(this.canvasW - this.width * s) / 2 + this.panX, (this.canvasH - this.height * s) / 2 + this.panY];
  }

  toImage(x, y) {
    const [ox, oy] = this.origin;
    return [(x - ox) / this.scale, (y - oy) / this.scale];
  }

  toCanvas(x, y) {
    const [ox, oy] = this.origin;
    return [ox + x * this.scale, oy + y * this.scale];
  }

  /** Zoom by `factor` keeping the image point under canvas (x, y) where it is. */
  zoomAt(factor, x, y) {
    const [ix, iy] = this.toImage(x, y);
    this.zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, this.zoom * factor));
    const [nx, ny] = this.toCanvas(ix, iy);
    this.panX += x - nx;
    this.panY += y - ny;
  }

  pan(dx, dy) {
    this.panX += dx;
    this.panY += dy;
  }

  /** True when image point (x, y) is on the image. */
  contains(x, y) {
    return x >= 0 && y >= 0 && x <= this.width && y <= this.height;
  }
}

/** The zoom factor of one wheel event's `deltaY` (a notch of 100: x1.2 in or out). */
export function wheelFactor(deltaY) {
  return Math.exp(-Math.max(-500, Math.min(500, deltaY)) * Math.log(1.2) / 100);
}

// -- measurement -----------------------------------------------------------------------------

/** The length from image point `a` to `b` ([x, y], x along columns): in pixels always; in mm
 *  when `spacing` ([row, column] mm, Pixel Spacing) is known, or else when both points lie
 *  in one calibrated ultrasound region (`regions`, from ultrasoundRegions); `mm` is null
 *  otherwise: a length across regions, or in none, has no physical size. */
export function measure(a, b, spacing, regions = []) {
  const dx = b[0] - a[0];
  const dy = b[1] - a[1];
  const px = Math.hypot(dx, dy);
  if (spacing) return { px, mm: Math.hypot(dx * spacing[1], dy * spacing[0]) };
  const inside = ([x, y], [x0, y0, x1, y1]) => x >= x0 && x <= x1 + 1 && y >= y0 && y <= y1 + 1;
  const region = regions.find((r) => inside(a, r.box) && inside(b, r.box));
  const mm = region ? Math.hypot(dx * region.mmPerPixel[0], dy * region.mmPerPixel[1]) : null;
  return { px, mm };
}

// -- schedulers --------------------------------------------------------------------------------

/** Runs the latest of rapid requests only: `request(job)` waits `delayMs` for a newer one;
 *  while one runs (a job returns a promise) newer ones wait and only the last of them runs
 *  after it. `timers` is injected ({ setTimeout, clearTimeout }). A job is told whether it is
 *  still the latest when it finishes (`isLatest()`), to drop a stale answer. */
export class LatestOnly {
  constructor(delayMs, timers = globalThis) {
    this.delayMs = delayMs;
    this.timers = timers;
    this.pending = null;
    this.running = false;
    this.timer = null;
    this.generation = 0;
  }

  request(job) {
    this.pending = job;
    const generation = ++this.generation;
    this.timers.clearTimeout(this.timer);
    this.timer = this.timers.setTimeout(() => this._run(), this.delayMs);
    return generation;
  }

  /** Run the pending job now (no wait), e.g. for a button press. */
  now(job) {
    this.request(job);
    this.timers.clearTimeout(this.timer);
    this._run();
  }

  cancel() {
    this.timers.clearTimeout(this.timer);
    this.pending = null;
    this.generation++;
  }

  async _run() {
    this.timer = null;
    if (this.running || !this.pending) return;
    const job = this.pending;
    this.pending = null;
    this.running = true;
    const generation = this.generation;
    try {
      await job(() => generation === this.generation);
    } catch {
      // The job reports its own failure; the next one still runs.
    } finally {
      this.running = false;
      if (this.pending) this._run();
    }
  }
}

/** Calls `send(value)` at most once every `intervalMs`: the first at once, the last of a
 *  burst when the interval is up (never lost, never duplicated). `clock` is injected
 *  ({ now(), setTimeout, clearTimeout }). */
export class Throttle {
  constructor(intervalMs, send, clock) {
    this.intervalMs = intervalMs;
    this.send = send;
    this.clock = clock;
    this.last = -Infinity;
    this.timer = null;
    this.value = undefined;
    this.waiting = false;
  }

  push(value) {
    this.value = value;
    const wait = this.last + this.intervalMs - this.clock.now();
    if (wait <= 0 && !this.waiting) {
      this._fire();
    } else if (!this.waiting) {
      this.waiting = true;
      this.timer = this.clock.setTimeout(() => this._fire(), Math.max(0, wait));
    }
  }

  _fire() {
    this.waiting = false;
    this.timer = null;
    this.last = this.clock.now();
    this.send(this.value);
  }

  cancel() {
    this.clock.clearTimeout(this.timer);
    this.waiting = false;
  }
}

/** A bounded least-recently-used cache: past `capacity` the oldest entry is dropped and
 *  `evict(value)` called (an ImageBitmap is closed, an object URL revoked). */
export class BoundedCache {
  constructor(capacity, evict = () => {}) {
    this.capacity = capacity;
    this.evict = evict;
    this.map = new Map();
  }

  get size() {
    return this.map.size;
  }

  has(key) {
    return this.map.has(key);
  }

  get(key) {
    if (!this.map.has(key)) return undefined;
    const value = this.map.get(key);
    this.map.delete(key);
    this.map.set(key, value); // most recent last
    return value;
  }

  set(key, value) {
    if (this.map.has(key)) {
      const old = this.map.get(key);
      this.map.delete(key);
      if (old !== value) this.evict(old);
    }
    this.map.set(key, value);
    while (this.map.size > this.capacity) {
      const [oldest, old] = this.map.entries().next().value;
      this.map.delete(oldest);
      this.evict(old);
    }
  }

  clear() {
    for (const value of this.map.values()) this.evict(value);
    this.map.clear();
  }
}

/** The frames to fetch ahead of `frame` (1-based) during cine: the next `ahead` of
 *  `count`, wrapping, that `have(n)` does not have, nearest first. */
export function framesToPrefetch(frame, count, ahead, have) {
  const out = [];
  for (let k = 1; k <= Math.min(ahead, count - 1); k++) {
    const n = ((frame - 1 + k) % count) + 1;
    if (!have(n)) out.push(n);
  }
  return out;
}
