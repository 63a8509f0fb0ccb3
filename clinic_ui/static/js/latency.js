// Latency where the doctor looks (issue 15): the bedside video's receivers tuned to render
// on arrival, and the engineer's latency overlay.
//
// Receivers. The gateway asks for playout delay min = max = 0 on every video packet
// (media/rtc/playout_delay.py); here each video receiver of the bedside link also gets
// `jitterBufferTarget` (Chromium; `playoutDelayHint` in seconds where only that exists) at
// the lowest the link allows: 0 on a clean link, raised at once when a second's getStats
// shows packets lost, frames dropped or jitter a zero target cannot absorb (to twice the
// jitter, plus one round trip when packets were lost: a retransmission's time), and lowered
// back by halves after CLEAN_S clean seconds. Measured (telemed bench browser): while the
// sender's playout delay has max 0, Chromium renders on arrival and ignores the target (200 ms
// asked: 1.6 ms per frame in its jitter buffer; without the extension, 175 ms); the target
// takes effect where the extension is not negotiated, or once the sender raises the maximum.
//
// So the link asks for that (PlayoutDelayPolicy, one for the bedside link: its cameras share
// one path): after TROUBLE_S seconds in a row in which the receivers together lost (or had to
// ask again: NACKs) more than LOSS_TROUBLE of their packets or saw jitter above
// JITTER_TROUBLE_MS (20-30 ms is seen on a loaded loopback: not trouble), a `playout-delay` with a
// maximum stepped by what was seen (DELAY_STEPS_MS: 100, 200 or 400 ms, at least twice the
// jitter plus a round trip when packets were lost), raised further if it worsens, never
// lowered while troubled; `clear` (max 0) after CLEAR_AFTER_S clean seconds in a row. At most
// one request per MIN_GAP_S, and the same one again only after RESEND_S when the bedside's
// `video` says another delay is in force (a new connection starts at 0; the bedside refuses
// more than a few changes a minute). The overlay shows the delay the bedside says is in force.
//
// The overlay (key F9, outside text fields): the bedside stamp (stamp.js, written by
// media/video/stamp.py with the capture time on the gateway's wall clock) is read from each
// frame of the room camera at requestVideoFrameCallback, and set against the frame's
// expected display time (metadata.expectedDisplayTime: when the compositor shows it, the
// best estimate of glass here), on this machine's wall clock. One machine: one clock. Across
// machines the figure also holds the two wall clocks' offset (both are taken to be NTP-
// synchronised; the round trip is shown beside it as the scale of what the path adds).
// Waveforms: the newest sample each animation frame draws, its device time (the gateway's
// sample clock) against the time of the draw. Shown: median, p95 and max over the last 5 s,
// with the receiver's jitter-buffer and decode shares per frame from getStats; reported to
// the gateway (`latency-report`) every 5 s while open, which logs it.
//
// Read-only hook for the tests and `telemed bench browser` (the figures the overlay shows,
// one code path): window.telemedLatency.
import { t } from "./i18n.js";
import { readStamp, STAMP_SIZE } from "./stamp.js";

export const OVERLAY_KEY = "F9";
/** The overlay's figures cover this much time. */
export const WINDOW_MS = 5000;
/** A `latency-report` to the gateway this often while the overlay is open (the gateway
 *  logs at most one every 2 s per viewer). */
export const REPORT_MS = 5000;
/** The first report once this much has been measured. */
const FIRST_REPORT_MS = 2000;
const STATS_MS = 1000;
const PLAYOUT_DELAY_URI = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay";
/** Per-frame records kept for the hook's readers (about a minute at 30 fps). */
const RECORDS = 2048;

// -- pure figures (tests/clinic_ui/latency.test.mjs) -----------------------------------------

/** { median_ms, p95_ms, max_ms, count } of `values` (ms), as LatencySummary has them; null
 *  when there are none. p95 is the sorted value at floor(0.95 n), as the benchmarks take it. */
export function summarize(values) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  const median = n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  const round = (v) => Math.round(Math.max(0, v) * 10) / 10;
  return {
    median_ms: round(median),
    p95_ms: round(sorted[Math.min(n - 1, Math.floor(0.95 * n))]),
    max_ms: round(sorted[n - 1]),
    count: n,
  };
}

const WRAP = 2 ** 32;

/** Milliseconds from a stamp's capture time (ms modulo 2^32) to `wallMs` (ms since the
 *  epoch), across the stamp's wrap; negative when the stamp is later (clocks apart). */
export function sinceStamp(captureMs, wallMs) {
  let d = ((wallMs % WRAP) - captureMs) % WRAP;
  if (d >= WRAP / 2) d -= WRAP;
  if (d < -WRAP / 2) d += WRAP;
  return d;
}

/** The receiver's jitter-buffer target is raised past this jitter (ms). */
export const JITTER_CLEAN_MS = 10;
/** Clean seconds before the target is lowered (by half each time). */
export const CLEAN_S = 3;
export const MAX_TARGET_MS = 400;

/** The next jitter-buffer target (ms) of a receiver and its clean run, from one interval's
 *  figures: `{ lost, dropped, jitterMs, rttMs }` (packets lost and frames dropped in the
 *  interval, the RTP interarrival jitter, the round trip). */
export function nextTarget({ targetMs, cleanS }, { lost, dropped, jitterMs, rttMs }, intervalS = 1) {
  const troubled = lost > 0 || dropped > 0 || jitterMs > JITTER_CLEAN_MS;
  if (troubled) {
    let need = 2 * jitterMs + (lost > 0 ? rttMs : 0);
    need = Math.min(MAX_TARGET_MS, Math.ceil(need / 10) * 10);
    return { targetMs: Math.max(targetMs, need), cleanS: 0 };
  }
  cleanS += intervalS;
  if (cleanS < CLEAN_S || targetMs === 0) return { targetMs, cleanS: targetMs === 0 ? 0 : cleanS };
  const lower = Math.floor(targetMs / 2 / 10) * 10;
  return { targetMs: lower, cleanS: 0 };
}

/** The playout delays (ms) a poor link asks the bedside for, by how poor it is. */
export const DELAY_STEPS_MS = [100, 200, 400];
/** A second is troubled past this fraction of packets lost ... */
export const LOSS_TROUBLE = 0.02;
/** ... or this interarrival jitter (ms). */
export const JITTER_TROUBLE_MS = 40;
/** Troubled seconds in a row before a delay is asked, and clean ones before it is cleared. */
export const TROUBLE_S = 2;
export const CLEAR_AFTER_S = 10;
/** Seconds between two requests at least, and before the same one is asked again when the
 *  bedside says another delay is in force. */
export const MIN_GAP_S = 5;
export const RESEND_S = 15;

/** The step of DELAY_STEPS_MS for one troubled interval: `{ lossFraction, jitterMs, rttMs }`. */
export function delayFor({ lossFraction, jitterMs, rttMs }) {
  const need = 2 * jitterMs + (lossFraction > 0 ? rttMs : 0);
  let step = 0;
  if (lossFraction >= 0.10 || jitterMs >= 60) step = 2;
  else if (lossFraction >= 0.03 || jitterMs >= 30) step = 1;
  while (step < DELAY_STEPS_MS.length - 1 && DELAY_STEPS_MS[step] < need) step++;
  return DELAY_STEPS_MS[step];
}

/** When to ask the bedside for a playout delay, and for how much (the module's comment).
 *  Pure: `step` takes one interval's figures of the whole link and returns the
 *  `playout-delay` message to send, or null; `told` takes the delay a `video` says is in
 *  force; `connected` is called for a new connection (whose delay starts at 0). */
export class PlayoutDelayPolicy {
  constructor() {
    this.askedMs = 0;
    this.reason = "clear";
    this.inForceMs = null; // unknown until the bedside's `video` says
    this.troubledS = 0;
    this.cleanS = 0;
    this.sinceSentS = Infinity;
    this.requests = 0;
  }

  /** `{ lost, received, jitterMs, rttMs }`: packets lost (or asked for again) and received
   *  in the interval, the worst interarrival jitter, the round trip. */
  step({ lost, received, jitterMs, rttMs }, intervalS = 1) {
    this.sinceSentS += intervalS;
    const lossFraction = lost > 0 ? lost / Math.max(1, lost + received) : 0;
    const lossy = lossFraction > LOSS_TROUBLE;
    if (lossy || jitterMs > JITTER_TROUBLE_MS) {
      this.troubledS += intervalS;
      this.cleanS = 0;
    } else {
      this.cleanS += intervalS;
      this.troubledS = 0;
    }
    let wanted = this.askedMs;
    let reason = this.reason;
    if (this.troubledS >= TROUBLE_S) {
      const step = delayFor({ lossFraction, jitterMs, rttMs });
      if (step > this.askedMs) {
        wanted = step;
        reason = lossy ? "loss" : "jitter";
      }
    } else if (this.cleanS >= CLEAR_AFTER_S && this.askedMs > 0) {
      wanted = 0;
      reason = "clear";
    }
    const changed = wanted !== this.askedMs && this.sinceSentS >= MIN_GAP_S;
    const unheard = wanted === this.askedMs && this.inForceMs !== null && this.inForceMs !== wanted
      && this.sinceSentS >= RESEND_S;
    if (!changed && !unheard) return null;
    this.askedMs = wanted;
    this.reason = reason;
    this.sinceSentS = 0;
    this.requests += 1;
    return { type: "playout-delay", max_ms: wanted, reason };
  }

  told(inForceMs) {
    this.inForceMs = inForceMs ?? null;
  }

  connected() {
    this.inForceMs = null;
    this.sinceSentS = RESEND_S; // the new connection may be told at once what the link needs
  }
}

/** Per-frame shares from two getStats readings of an inbound video stream: jitter buffer
 *  and decode in ms per frame over the interval (null where nothing passed). */
export function shares(before, after) {
  if (!before || !after) return { jitterBufferMs: null, decodeMs: null };
  const emitted = (after.jitterBufferEmittedCount ?? 0) - (before.jitterBufferEmittedCount ?? 0);
  const decoded = (after.framesDecoded ?? 0) - (before.framesDecoded ?? 0);
  const per = (key, count) => (count > 0 ? (1000 * ((after[key] ?? 0) - (before[key] ?? 0))) / count : null);
  return { jitterBufferMs: per("jitterBufferDelay", emitted), decodeMs: per("totalDecodeTime", decoded) };
}

/** Values with the time they were taken, the oldest dropped past `windowMs` or `limit`. */
export class Recent {
  constructor(windowMs, limit = RECORDS) {
    this.windowMs = windowMs;
    this.limit = limit;
    this.items = []; // [at, value]
  }

  add(at, value) {
    this.items.push([at, value]);
    if (this.items.length > this.limit) this.items.splice(0, this.items.length - this.limit);
  }

  values(now) {
    let old = 0;
    while (old < this.items.length && this.items[old][0] < now - this.windowMs) old++;
    if (old) this.items.splice(0, old);
    return this.items.map((item) => item[1]);
  }
}

/** Whether the stamp read at a frame's callback belongs to the frame presented. Under load
 *  the callback can run after a newer frame became current, and the picture drawn is that
 *  newer one. The RTP timestamp (90 kHz) is the presented frame's, and the gateway derives it
 *  from the capture time (media/rtc/tracks.py), so capture ms - RTP ms is the same for every
 *  frame of a stream (within the stamp's rounding): the least seen is the true one; a stamp
 *  ahead of it is a later frame's. A jump of over a second is a new stream (or a wrap). */
const MISMATCHED_IN_A_ROW = 30;

export class PresentedCheck {
  constructor() {
    this.offset = null;
    /** Callbacks whose picture was a newer frame than the one presented (not counted). */
    this.mismatched = 0;
    this.inARow = 0;
  }

  accept(captureMs, rtpTimestamp) {
    if (rtpTimestamp === undefined) return true;
    const offset = captureMs - rtpTimestamp / 90;
    const ahead = this.offset === null ? 0 : offset - this.offset;
    // Many in a row are no race: a new stream whose offset happens to be a little higher.
    if (this.offset === null || ahead < 0 || ahead > 1000 || this.inARow >= MISMATCHED_IN_A_ROW) {
      this.offset = offset;
      this.inARow = 0;
      return true;
    }
    if (ahead <= 2) {
      this.inARow = 0;
      return true;
    }
    this.mismatched += 1;
    this.inARow += 1;
    return false;
  }
}

// -- the receivers ---------------------------------------------------------------------------

function setTarget(receiver, ms) {
  if ("jitterBufferTarget" in receiver) receiver.jitterBufferTarget = ms;
  else if ("playoutDelayHint" in receiver) receiver.playoutDelayHint = ms / 1000;
}

/** Reads each video receiver's inbound stats once a second and keeps its jitter-buffer
 *  target at the lowest the link allows, and asks the bedside for a playout delay when the
 *  link needs one (the module's comment). `send(message)`: onto the bedside link's events
 *  channel (false while down). */
export class ReceiverTuning {
  constructor(getPc, { send = () => false } = {}) {
    this.getPc = getPc;
    this.send = send;
    this.playout = new PlayoutDelayPolicy();
    this.lastInterval = null;
    this.layer = null;
    this.state = new WeakMap(); // receiver -> { targetMs, cleanS, last }
    this.latest = new Map(); // track id -> { stats, targetMs }
    this.rttMs = null;
    this.history = new Map(); // track id -> Recent of stats readings (for the overlay's shares)
    this.busy = false; // a tick still waiting for getStats (a loaded page): the next is skipped
    this._timer = setInterval(() => {
      if (this.busy) return;
      this.busy = true;
      // A connection closed under a tick rejects its getStats: the next tick starts afresh.
      this.tick().catch(() => {}).finally(() => { this.busy = false; });
    }, STATS_MS);
  }

  async tick() {
    const pc = this.getPc();
    if (!pc || pc.connectionState === "closed") return;
    const receivers = pc.getReceivers().filter((r) => r.track?.kind === "video");
    // Only this connection's tracks are kept (a rebuilt link brings new ones).
    const live = new Set(receivers.map((r) => r.track.id));
    for (const table of [this.latest, this.history]) {
      for (const id of table.keys()) if (!live.has(id)) table.delete(id);
    }
    // The link's interval, all cameras together (one path): for the playout delay.
    const link = { lost: 0, received: 0, jitterMs: 0, rttMs: 0, intervalS: 0 };
    for (const receiver of receivers) {
      let state = this.state.get(receiver);
      if (!state) {
        state = { targetMs: 0, cleanS: 0, last: null };
        this.state.set(receiver, state);
        setTarget(receiver, 0);
      }
      const report = await receiver.getStats();
      let inbound = null;
      for (const stats of report.values()) {
        if (stats.type === "inbound-rtp" && stats.kind === "video") inbound = stats;
        if (stats.type === "candidate-pair" && stats.nominated && stats.currentRoundTripTime !== undefined) {
          this.rttMs = stats.currentRoundTripTime * 1000;
        }
      }
      if (!inbound) continue;
      const last = state.last;
      state.last = inbound;
      const id = receiver.track.id;
      let history = this.history.get(id);
      if (!history) { history = new Recent(WINDOW_MS + STATS_MS, 16); this.history.set(id, history); }
      history.add(performance.now(), inbound);
      if (last) {
        const interval = {
          lost: Math.max(0, (inbound.packetsLost ?? 0) - (last.packetsLost ?? 0)),
          dropped: Math.max(0, (inbound.framesDropped ?? 0) - (last.framesDropped ?? 0)),
          jitterMs: (inbound.jitter ?? 0) * 1000,
          rttMs: this.rttMs ?? 0,
        };
        const intervalS = (inbound.timestamp - last.timestamp) / 1000 || 1;
        const next = nextTarget(state, interval, intervalS);
        if (next.targetMs !== state.targetMs) setTarget(receiver, next.targetMs);
        Object.assign(state, next);
        // A packet Chromium had to ask for again (NACK) is loss the path did, even when its
        // retransmission made up for it (packetsLost then counts it as received): the frame
        // waited for it.
        link.lost += interval.lost + Math.max(0, (inbound.nackCount ?? 0) - (last.nackCount ?? 0));
        link.received += Math.max(0, (inbound.packetsReceived ?? 0) - (last.packetsReceived ?? 0));
        link.jitterMs = Math.max(link.jitterMs, interval.jitterMs);
        link.rttMs = interval.rttMs;
        link.intervalS = Math.max(link.intervalS, intervalS);
      }
      this.latest.set(id, { stats: inbound, targetMs: state.targetMs });
    }
    if (link.intervalS > 0) this.lastInterval = link;
    if (link.intervalS > 0 && pc.connectionState === "connected") {
      const request = this.playout.step(link, link.intervalS);
      if (request && !this.send(request)) {
        this.playout.sinceSentS = RESEND_S; // not sent (the channel is down): again next tick
      }
    }
  }

  /** The bedside's `video` event: the playout delay it says is in force for us, and the
   *  layer of its shared encode it sends us (null: paused, or encoded for us alone). */
  video(message) {
    this.playout.told(message.playout_delay_ms);
    this.layer = message.layer ?? null;
  }

  /** A new connection to the bedside (its `hello`): its playout delay starts afresh. */
  connected() {
    this.playout.connected();
  }

  /** Whether the playout-delay extension is in the bedside's offer and in our answer. */
  playoutDelay() {
    const pc = this.getPc();
    const has = (description) => Boolean(description?.sdp?.includes(PLAYOUT_DELAY_URI));
    return { offered: has(pc?.remoteDescription), accepted: has(pc?.localDescription) };
  }

  /** The jitter-buffer and decode shares (ms per frame) of `trackId` over the window. */
  shares(trackId) {
    const readings = this.history.get(trackId)?.values(performance.now()) ?? [];
    return shares(readings[0], readings[readings.length - 1]);
  }

  close() {
    clearInterval(this._timer);
  }
}

// -- the overlay -----------------------------------------------------------------------------

/** Reads the bedside stamp of each frame `video` presents (requestVideoFrameCallback). */
class VideoProbe {
  constructor(video, onFrame) {
    this.video = video;
    this.onFrame = onFrame;
    this.canvas = document.createElement("canvas");
    [this.canvas.width, this.canvas.height] = STAMP_SIZE;
    this.context = this.canvas.getContext("2d", { willReadFrequently: true });
    this.handle = null;
    this.lastFrameId = null;
    this.presented = new PresentedCheck();
  }

  start() {
    if (this.handle === null && this.video.requestVideoFrameCallback) {
      this.handle = this.video.requestVideoFrameCallback((now, meta) => this._frame(meta));
    }
  }

  stop() {
    if (this.handle !== null) this.video.cancelVideoFrameCallback(this.handle);
    this.handle = null;
  }

  _frame(meta) {
    this.handle = this.video.requestVideoFrameCallback((now, next) => this._frame(next));
    const [width, height] = STAMP_SIZE;
    if (meta.width < width || meta.height < height) return;
    // The frame presented is the video's current one during this callback.
    this.context.drawImage(this.video, 0, 0, width, height, 0, 0, width, height);
    const stamp = readStamp(this.context.getImageData(0, 0, width, height));
    if (!stamp || stamp.frameId === this.lastFrameId) return;
    if (!this.presented.accept(stamp.captureMs, meta.rtpTimestamp)) return; // its own callback comes
    this.lastFrameId = stamp.frameId;
    // This page's wall clock at the frame's expected display (and at its last packet's
    // arrival): Date.now() carried by the monotonic clock's distance to those instants.
    const wallAt = (instant) => Date.now() + (instant - performance.now());
    const shown = meta.expectedDisplayTime ?? meta.presentationTime;
    this.onFrame({
      frameId: stamp.frameId,
      width: meta.width,
      height: meta.height,
      latencyMs: sinceStamp(stamp.captureMs, wallAt(shown)),
      presentedMs: sinceStamp(stamp.captureMs, wallAt(meta.presentationTime)),
      receivedMs: meta.receiveTime === undefined ? null : sinceStamp(stamp.captureMs, wallAt(meta.receiveTime)),
    });
  }
}

export class LatencyOverlay {
  /** `video`: the room camera's element; `waveforms`: the WaveformView; `tuning`: the
   *  ReceiverTuning; `camera()`: the room camera's name; `send(message)`: onto the bedside
   *  link's events channel (false while down). */
  constructor({ video, waveforms, tuning, camera, send }) {
    this.video = video;
    this.waveforms = waveforms;
    this.tuning = tuning;
    this.camera = camera;
    this.send = send;
    this.open = false;
    this.frames = new Recent(WINDOW_MS);
    this.waves = new Recent(WINDOW_MS);
    this.records = []; // { seq, at, frameId, width, height, latencyMs, presentedMs, receivedMs }
    this.seq = 0;
    this.waveRecords = []; // { seq, ageMs }
    this.waveSeq = 0;
    this.reports = 0;
    this.probe = new VideoProbe(video, (frame) => this._frame(frame));
    this.root = document.getElementById("latency-overlay");
    this._onKey = (e) => {
      if (e.key !== OVERLAY_KEY || e.repeat || e.ctrlKey || e.altKey || e.metaKey) return;
      if (e.target instanceof HTMLElement && e.target.closest("input, textarea, select, [contenteditable]")) return;
      e.preventDefault();
      this.toggle();
    };
    document.addEventListener("keydown", this._onKey);
    globalThis.telemedLatency = this._hook();
  }

  toggle(open = !this.open) {
    this.open = open;
    this.root.hidden = !open;
    clearInterval(this._render);
    clearInterval(this._report);
    if (open) {
      this.probe.start();
      this._render = setInterval(() => this.render(), 500);
      this._report = setInterval(() => this.report(), REPORT_MS);
      clearTimeout(this._firstReport);
      this._firstReport = setTimeout(() => this.report(), FIRST_REPORT_MS);
      this.render();
    } else {
      this.probe.stop();
      clearTimeout(this._firstReport);
    }
  }

  _frame(frame) {
    this.seq += 1;
    const at = performance.now();
    this.frames.add(at, frame.latencyMs);
    this.records.push({ seq: this.seq, at, ...frame });
    if (this.records.length > RECORDS) this.records.splice(0, this.records.length - RECORDS);
  }

  /** After each animation frame's draw of the traces at `now` (s, nowSeconds()). */
  drawn(now) {
    if (!this.open) return;
    for (const age of this.waveforms.drawnAges(now)) {
      this.waves.add(performance.now(), age * 1000);
      this.waveSeq += 1;
      this.waveRecords.push({ seq: this.waveSeq, ageMs: age * 1000 });
    }
    if (this.waveRecords.length > RECORDS) this.waveRecords.splice(0, this.waveRecords.length - RECORDS);
  }

  figures() {
    const now = performance.now();
    const track = this.video.srcObject?.getVideoTracks?.()[0];
    const { jitterBufferMs, decodeMs } = track ? this.tuning.shares(track.id) : { jitterBufferMs: null, decodeMs: null };
    const latest = track ? this.tuning.latest.get(track.id) : null;
    return {
      at: now,
      camera: this.camera(),
      video: summarize(this.frames.values(now)),
      waveform: summarize(this.waves.values(now)),
      jitterBufferMs,
      decodeMs,
      targetMs: latest?.targetMs ?? null,
      framesDropped: latest?.stats.framesDropped ?? null,
      mismatched: this.probe.presented.mismatched,
      framesDecoded: latest?.stats.framesDecoded ?? null,
      // The receiver's cumulative jitter-buffer figures (s, frames), for per-frame shares
      // over any interval a reader chooses.
      jitterBufferDelayS: latest?.stats.jitterBufferDelay ?? null,
      jitterBufferEmitted: latest?.stats.jitterBufferEmittedCount ?? null,
      rttMs: this.tuning.rttMs,
      playoutDelay: this.tuning.playoutDelay(),
      // The maximum the bedside says it writes for us (null: not told yet), what we asked.
      playoutDelayMs: this.tuning.playout.inForceMs,
      playoutAskedMs: this.tuning.playout.askedMs,
      playoutReason: this.tuning.playout.reason,
      playoutRequests: this.tuning.playout.requests,
      layer: this.tuning.layer,
      // The link's last second as the playout delay's policy took it (all receivers).
      interval: this.tuning.lastInterval ?? null,
    };
  }

  report() {
    const f = this.figures();
    if (!f.video && !f.waveform) return false;
    const message = { type: "latency-report", camera: f.camera, video: f.video, waveform: f.waveform };
    const round = (v) => Math.round(Math.max(0, v) * 10) / 10;
    if (f.jitterBufferMs !== null) message.jitter_buffer_ms = round(f.jitterBufferMs);
    if (f.decodeMs !== null) message.decode_ms = round(f.decodeMs);
    const sent = this.send(message);
    if (sent) this.reports += 1;
    return sent;
  }

  render() {
    if (!this.open) return;
    const f = this.figures();
    const ms = (v) => (v === null || v === undefined ? "–" : t("latency.ms", { value: v.toFixed(1) }));
    const summary = (s) => (s
      ? t("latency.summary", { median: ms(s.median_ms), p95: ms(s.p95_ms), max: ms(s.max_ms), count: s.count })
      : t("latency.none"));
    const negotiated = f.playoutDelay.offered && f.playoutDelay.accepted;
    const inForce = f.playoutDelayMs ?? 0;
    const rows = [
      ["video", t("latency.video", { camera: f.camera ?? "" }), summary(f.video)],
      ["shares", t("latency.shares"), t("latency.sharesValue", { jitter: ms(f.jitterBufferMs), decode: ms(f.decodeMs) })],
      ["target", t("latency.target"), t(
        negotiated && inForce === 0 ? "latency.targetOverridden" : "latency.targetValue",
        { target: ms(f.targetMs), rtt: ms(f.rttMs) },
      )],
      ["playout", t("latency.playout"), t(negotiated ? "latency.negotiated" : "latency.notNegotiated", { max: inForce })],
    ];
    if (f.playoutRequests > 0) {
      rows.push(["asked", t("latency.playoutAsked"), t("latency.playoutAskedValue", {
        max: f.playoutAskedMs, reason: t(`latency.reason.${f.playoutReason}`),
      })]);
    }
    rows.push(["layer", t("latency.layer"), f.layer ?? "–"]);
    rows.push(["waveform", t("latency.waveform"), summary(f.waveform)]);
    const list = document.createElement("dl");
    for (const [key, label, value] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.textContent = value;
      dd.dataset.figure = key;
      list.append(dt, dd);
    }
    const title = document.createElement("h3");
    title.textContent = t("latency.title");
    const note = document.createElement("p");
    note.className = "note";
    note.textContent = t("latency.note", { key: OVERLAY_KEY });
    this.root.replaceChildren(title, list, note);
  }

  _hook() {
    return Object.freeze({
      open: () => this.open,
      figures: () => this.figures(),
      /** Per-frame records after sequence number `after` (the bench collects them all). */
      frames: (after = 0) => this.records.filter((r) => r.seq > after),
      /** Waveform sample -> draw records after sequence number `after`. */
      waveforms: (after = 0) => this.waveRecords.filter((r) => r.seq > after),
      reports: () => this.reports,
    });
  }

  close() {
    this.toggle(false);
    document.removeEventListener("keydown", this._onKey);
  }
}
