// The image viewer of the room's image panel: one instance's frame, rendered by the server
// (WADO-RS rendered: the browser never decodes DICOM), drawn on a canvas with zoom and pan,
// window and level by right-drag (or Ctrl/Shift-drag, or the window tool), a length
// measurement, cine for multi-frame images with frames fetched ahead into a bounded cache,
// and the other doctor's pointer. The panel (imaging.js) owns it and says what to show.
//
// Events (detail in brackets): "change" ({ what: "window" | "frame" }) when the user changed
// a shared part of the view; "pointer" ([x, y] in image pixels, or null) as the pointer
// moves over the image; "blocked" when the user tried to change a shared part while
// following someone.
import { t } from "./i18n.js";
import {
  BoundedCache, dragScale, dragWindow, framesToPrefetch, LatestOnly, measure, roundWindow,
  ViewTransform, wheelFactor,
} from "./imaging_math.js";

/** Rendered frames kept (ImageBitmaps: a 512x512 one is ~1 MB decoded). */
const CACHE_FRAMES = 48;
/** Frames fetched ahead of the one shown during cine, and at most this many at once (the
 *  server renders two at a time). */
const PREFETCH_AHEAD = 6;
const PREFETCH_PARALLEL = 2;
/** A window drag asks the server again after the drag rests this long (the last only). */
const WINDOW_DEBOUNCE_MS = 70;
/** Larger images are asked for at most this size (the pixel coordinates stay the file's). */
const MAX_RENDER = 2048;

export class ImageViewer extends EventTarget {
  /** `fetchImage(url)` resolves to a Blob (the panel's authorised fetch). */
  constructor(canvas, fetchImage) {
    super();
    this.canvas = canvas;
    this.fetchImage = fetchImage;
    this.image = null; // { base, sop, columns, rows, frames, spacing, regions }
    this.frame = 1;
    this.window = null; // [centre, width]; null: the file's own
    this.tool = "pan";
    this.mayChange = () => true;
    this.bitmap = null;
    this.transform = null;
    this.measurement = null; // { a: [x, y], b: [x, y] } in image pixels
    this.remotePointer = null; // { at: [x, y], name }
    // The frame on screen is not closed when dropped (a redraw would find it detached).
    this.cache = new BoundedCache(CACHE_FRAMES, (bitmap) => { if (bitmap !== this.bitmap) bitmap.close?.(); });
    this.inflight = new Map(); // cache key -> promise
    this.latest = new LatestOnly(WINDOW_DEBOUNCE_MS);
    this.rendered = 0;
    this.playing = false;
    this.fps = 15;
    this.controller = new AbortController();
    this._wire();
  }

  // -- what is shown ---------------------------------------------------------------------

  /** Show `image` (frame 1 unless `frame`), with `window` (null: the file's own). Zoom and
   *  pan stay while the images are of one series and one size (a CT stack scrolled). */
  show(image, { frame = 1, window = null } = {}) {
    const previous = this.image;
    const same = previous?.sop === image.sop;
    this.image = image;
    this.frame = Math.min(Math.max(1, frame), image.frames);
    this.window = window;
    if (!same) {
      this.stop();
      this.measurement = null;
      const stack = previous && previous.series === image.series
        && previous.columns === image.columns && previous.rows === image.rows;
      if (!stack || !this.transform) {
        this.transform = new ViewTransform(image.columns, image.rows, this.canvas.width || 1, this.canvas.height || 1);
      }
    }
    this._request({ now: true });
  }

  setWindow(window, { now = false } = {}) {
    this.window = window ? roundWindow(window) : null;
    this._request({ now });
  }

  setFrame(frame) {
    if (!this.image) return;
    this.frame = ((frame - 1 + this.image.frames) % this.image.frames) + 1;
    this._request({ now: true });
  }

  setTool(tool) {
    this.tool = tool;
    this.canvas.dataset.tool = tool;
  }

  clear() {
    this.stop();
    this.latest.cancel();
    this.image = null;
    this.bitmap = null;
    this.measurement = null;
    this.remotePointer = null;
    this.cache.clear();
    this.draw();
  }

  close() {
    this.clear();
    this.controller.abort();
  }

  // -- the server's rendering --------------------------------------------------------------

  _url(frame, window) {
    const { base, sop } = this.image;
    const query = new URLSearchParams();
    if (window) query.set("window", `${window[0]},${window[1]},linear`);
    if (this.image.columns > MAX_RENDER || this.image.rows > MAX_RENDER) query.set("viewport", `${MAX_RENDER},${MAX_RENDER}`);
    const q = query.toString();
    return `${base}/instances/${sop}/frames/${frame}/rendered${q ? `?${q}` : ""}`;
  }

  _key(frame, window) {
    return `${this.image.sop}|${frame}|${window ? window.join(",") : "file"}`;
  }

  /** The rendered frame `frame` at `window`: from the cache, or fetched (one fetch per key
   *  at a time) and kept. */
  _frame(frame, window) {
    const key = this._key(frame, window);
    if (this.cache.has(key)) return Promise.resolve(this.cache.get(key));
    if (this.inflight.has(key)) return this.inflight.get(key);
    const sop = this.image.sop;
    const promise = this.fetchImage(this._url(frame, window))
      .then((blob) => createImageBitmap(blob))
      .then((bitmap) => {
        if (this.image?.sop === sop) this.cache.set(key, bitmap);
        return bitmap;
      })
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, promise);
    return promise;
  }

  /** Show the current frame at the current window: the last asked only (a drag asks many
   *  times; the server renders the one it rests on). */
  _request({ now = false } = {}) {
    if (!this.image) return;
    const frame = this.frame;
    const window = this.window;
    const key = this._key(frame, window);
    if (this.cache.has(key)) {
      this.latest.cancel();
      delete this.canvas.dataset.loading;
      this._present(this.cache.get(key), frame, window);
      return;
    }
    this.canvas.dataset.loading = "true";
    const job = async (isLatest) => {
      try {
        const bitmap = await this._frame(frame, window);
        if (isLatest()) this._present(bitmap, frame, window);
      } catch (err) {
        if (isLatest()) this.dispatchEvent(new CustomEvent("error", { detail: err }));
      } finally {
        if (isLatest()) delete this.canvas.dataset.loading;
      }
    };
    if (now) this.latest.now(job);
    else this.latest.request(job);
  }

  _present(bitmap, frame, window) {
    this.bitmap = bitmap;
    this.shownFrame = frame;
    this.rendered += 1;
    this.canvas.dataset.sop = this.image.sop;
    this.canvas.dataset.frame = String(frame);
    this.canvas.dataset.window = window ? window.join(",") : "file";
    this.canvas.dataset.rendered = String(this.rendered);
    this.draw();
    this.dispatchEvent(new CustomEvent("shown", { detail: { frame, window } }));
  }

  // -- cine -------------------------------------------------------------------------------------

  play() {
    if (!this.image || this.image.frames < 2 || this.playing) return;
    this.playing = true;
    this._tick();
  }

  stop() {
    this.playing = false;
    clearTimeout(this._cineTimer);
  }

  /** The next frame once it is here (fetched ahead; never skipped: a slow line plays
   *  slower, it does not jump), then again after 1/fps. */
  async _tick() {
    if (!this.playing || !this.image) return;
    const started = performance.now();
    const next = (this.frame % this.image.frames) + 1;
    this._prefetch(next);
    try {
      const window = this.window;
      const bitmap = await this._frame(next, window);
      if (!this.playing) return;
      this.frame = next;
      this._present(bitmap, next, window);
      this.dispatchEvent(new CustomEvent("change", { detail: { what: "frame" } }));
    } catch (err) {
      this.stop();
      this.dispatchEvent(new CustomEvent("error", { detail: err }));
      return;
    }
    const wait = Math.max(0, 1000 / this.fps - (performance.now() - started));
    this._cineTimer = setTimeout(() => this._tick(), wait);
  }

  /** Fetch the frames after `from` into the cache (a cine here, or one followed). */
  prefetch(from) {
    if (this.image?.frames > 1) this._prefetch(from);
  }

  _prefetch(from) {
    const window = this.window;
    const wanted = framesToPrefetch(from, this.image.frames, PREFETCH_AHEAD,
      (n) => this.cache.has(this._key(n, window)) || this.inflight.has(this._key(n, window)));
    for (const n of wanted.slice(0, Math.max(0, PREFETCH_PARALLEL - this.inflight.size))) {
      this._frame(n, window).catch(() => {}); // the tick that needs it reports a failure
    }
  }

  // -- drawing -------------------------------------------------------------------------------

  /** Fit the canvas to its box (device pixels) and draw. */
  draw() {
    const canvas = this.canvas;
    const ratio = globalThis.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const h = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    this.transform?.resize(w, h);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, w, h);
    if (!this.bitmap || !this.transform || !this.image) return;
    const [ox, oy] = this.transform.origin;
    const s = this.transform.scale;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(this.bitmap, ox, oy, this.image.columns * s, this.image.rows * s);
    ctx.lineWidth = 2 * ratio;
    ctx.font = `${Math.round(13 * ratio)}px system-ui, sans-serif`;
    if (this.measurement) this._drawMeasurement(ctx, ratio);
    if (this.remotePointer) this._drawPointer(ctx, ratio);
  }

  _drawMeasurement(ctx, ratio) {
    const { a, b } = this.measurement;
    const [ax, ay] = this.transform.toCanvas(...a);
    const [bx, by] = this.transform.toCanvas(...b);
    ctx.strokeStyle = "#ffd200";
    ctx.fillStyle = "#ffd200";
    ctx.beginPath();
    ctx.moveTo(ax, ay);
    ctx.lineTo(bx, by);
    ctx.stroke();
    for (const [x, y] of [[ax, ay], [bx, by]]) ctx.fillRect(x - 3 * ratio, y - 3 * ratio, 6 * ratio, 6 * ratio);
    const text = this.measurementText();
    const x = (ax + bx) / 2 + 8 * ratio;
    const y = (ay + by) / 2 - 8 * ratio;
    ctx.fillStyle = "#000b";
    ctx.fillRect(x - 3 * ratio, y - 14 * ratio, ctx.measureText(text).width + 6 * ratio, 18 * ratio);
    ctx.fillStyle = "#ffd200";
    ctx.fillText(text, x, y);
  }

  _drawPointer(ctx, ratio) {
    const [x, y] = this.transform.toCanvas(...this.remotePointer.at);
    ctx.strokeStyle = "#3ddc84";
    ctx.beginPath();
    ctx.arc(x, y, 9 * ratio, 0, 2 * Math.PI);
    ctx.moveTo(x - 15 * ratio, y);
    ctx.lineTo(x + 15 * ratio, y);
    ctx.moveTo(x, y - 15 * ratio);
    ctx.lineTo(x, y + 15 * ratio);
    ctx.stroke();
    const name = this.remotePointer.name;
    ctx.fillStyle = "#000b";
    ctx.fillRect(x + 12 * ratio, y + 6 * ratio, ctx.measureText(name).width + 6 * ratio, 18 * ratio);
    ctx.fillStyle = "#3ddc84";
    ctx.fillText(name, x + 15 * ratio, y + 20 * ratio);
  }

  /** The measurement in words: mm with Pixel Spacing or an ultrasound region's calibration;
   *  pixels, and why, without. */
  measurementText() {
    if (!this.measurement) return "";
    const { px, mm } = measure(
      this.measurement.a, this.measurement.b, this.image?.spacing, this.image?.regions ?? [],
    );
    return mm === null
      ? t("imaging.lengthPx", { px: px.toFixed(1) })
      : t("imaging.lengthMm", { mm: mm.toFixed(1) });
  }

  setRemotePointer(at, name) {
    this.remotePointer = at ? { at, name } : null;
    if (at) this.canvas.dataset.remotePointer = at.join(",");
    else delete this.canvas.dataset.remotePointer;
    this.draw();
  }

  // -- the user's hands ---------------------------------------------------------------------------

  _canvasPoint(event) {
    const box = this.canvas.getBoundingClientRect();
    const ratio = this.canvas.width / Math.max(1, box.width);
    return [(event.clientX - box.left) * ratio, (event.clientY - box.top) * ratio];
  }

  _changeWindow(window, now = false) {
    if (!this.mayChange()) {
      this.dispatchEvent(new CustomEvent("blocked"));
      return;
    }
    this.setWindow(window, { now });
    this.dispatchEvent(new CustomEvent("change", { detail: { what: "window" } }));
  }

  /** The window a drag starts from: the current one, else the file's (the panel's). */
  startWindow() {
    return this.window ?? this.image?.dragFrom ?? [128, 256];
  }

  _wire() {
    const canvas = this.canvas;
    const signal = this.controller.signal;
    let drag = null;
    canvas.addEventListener("contextmenu", (e) => e.preventDefault(), { signal });
    canvas.addEventListener("pointerdown", (e) => {
      if (!this.image || !this.transform) return;
      canvas.focus();
      const at = this._canvasPoint(e);
      const windowing = e.button === 2 || e.ctrlKey || e.shiftKey || this.tool === "window";
      const kind = windowing ? "window" : this.tool === "measure" ? "measure" : "pan";
      if (kind === "window" && !this.mayChange()) {
        this.dispatchEvent(new CustomEvent("blocked"));
        return;
      }
      drag = { kind, from: at, last: at, window: this.startWindow() };
      if (kind === "measure") {
        const p = this.transform.toImage(...at);
        this.measurement = { a: p, b: p };
      }
      canvas.setPointerCapture(e.pointerId);
      e.preventDefault();
    }, { signal });
    canvas.addEventListener("pointermove", (e) => {
      if (!this.transform) return;
      const at = this._canvasPoint(e);
      const p = this.transform.toImage(...at);
      this.dispatchEvent(new CustomEvent("pointer", { detail: this.transform.contains(...p) ? p : null }));
      if (!drag) return;
      const ratio = globalThis.devicePixelRatio || 1;
      if (drag.kind === "pan") {
        this.transform.pan(at[0] - drag.last[0], at[1] - drag.last[1]);
        this.draw();
      } else if (drag.kind === "measure") {
        this.measurement.b = p;
        this.draw();
      } else {
        const dx = (at[0] - drag.from[0]) / ratio;
        const dy = (at[1] - drag.from[1]) / ratio;
        this._changeWindow(dragWindow(drag.window, dx, dy, dragScale(drag.window[1])));
      }
      drag.last = at;
    }, { signal });
    const end = (e) => {
      if (!drag) return;
      if (drag.kind === "measure") this.dispatchEvent(new CustomEvent("measured"));
      drag = null;
      if (canvas.hasPointerCapture?.(e.pointerId)) canvas.releasePointerCapture(e.pointerId);
    };
    canvas.addEventListener("pointerup", end, { signal });
    canvas.addEventListener("pointercancel", end, { signal });
    canvas.addEventListener("pointerleave", () => { if (!drag) this.dispatchEvent(new CustomEvent("pointer", { detail: null })); }, { signal });
    canvas.addEventListener("wheel", (e) => {
      if (!this.transform) return;
      e.preventDefault();
      this.transform.zoomAt(wheelFactor(e.deltaY), ...this._canvasPoint(e));
      this.draw();
      this.dispatchEvent(new CustomEvent("zoom"));
    }, { signal, passive: false });
    canvas.addEventListener("keydown", (e) => this._onKey(e), { signal });
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  /** Zoom by `factor` about the canvas's centre (the buttons and keys). */
  zoomBy(factor) {
    if (!this.transform) return;
    this.transform.zoomAt(factor, this.canvas.width / 2, this.canvas.height / 2);
    this.draw();
    this.dispatchEvent(new CustomEvent("zoom"));
  }

  resetView() {
    this.transform?.reset();
    this.draw();
    this.dispatchEvent(new CustomEvent("zoom"));
  }

  /** Keyboard: arrows pan, Shift+arrows window (up/down the level, left/right the width),
   *  + and - zoom, 0 fits, Escape clears the measurement. The panel handles the rest. */
  _onKey(e) {
    if (!this.transform) return;
    const step = 24 * (globalThis.devicePixelRatio || 1);
    const arrows = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (e.key in arrows) {
      const [x, y] = arrows[e.key];
      if (e.shiftKey) {
        const start = this.startWindow();
        this._changeWindow(dragWindow(start, x * 10, y * 10, dragScale(start[1])));
      } else {
        this.transform.pan(-x * step, -y * step);
        this.draw();
      }
    } else if (e.key === "+" || e.key === "=") {
      this.zoomBy(1.2);
    } else if (e.key === "-") {
      this.zoomBy(1 / 1.2);
    } else if (e.key === "0") {
      this.resetView();
    } else if (e.key === "Escape" && this.measurement) {
      this.measurement = null;
      this.draw();
      this.dispatchEvent(new CustomEvent("measured"));
    } else {
      return;
    }
    e.preventDefault();
  }
}
