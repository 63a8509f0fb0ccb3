// The traces (clinic_ui/static/js/traces.js): samples placed by index in a 60 s buffer, the
// playout delay that paces the sweep, and drawing as a monitor draws (gaps as breaks, the
// sweep's wrap, ECG gain and calibration, the ECG grid, a slowly adapting auto range).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  AutoRange, CSS_PX_PER_MM, Playout, SampleBuffer, Trace, pxPerMm,
} from "../../clinic_ui/static/js/traces.js";

/** A canvas whose 2-D context records each path it strokes, with its colour. */
function recordingCanvas(width = 400, height = 100) {
  const paths = [];
  let path = [];
  const ctx = {
    fillRect: () => {},
    beginPath: () => { path = []; },
    moveTo: (x, y) => path.push(["move", x, y]),
    lineTo: (x, y) => path.push(["line", x, y]),
    stroke: () => paths.push({ colour: ctx.strokeStyle, path }),
  };
  return { canvas: { width, height, getContext: () => ctx }, paths };
}

function packet(firstIndex, values, { sampleRate = 10, firstTime = 100 + firstIndex / 10 } = {}) {
  return { sampleRate, firstIndex, firstTime, samples: Float32Array.from(values) };
}

const range = (n, from = 0) => Array.from({ length: n }, (_, k) => from + k);

test("samples are placed by index, whatever order or time they come in", () => {
  const buffer = new SampleBuffer(10, 60);
  buffer.place(5, [5, 6, 7]);
  buffer.place(0, [0, 1, 2, 3, 4]); // late, but in its place
  buffer.place(8, [8, NaN, 10]); // NaN: a placed "no value"
  buffer.place(14, [14]); // 11..13 never came
  const { indices, values } = buffer.samples(0, 20);
  assert.deepEqual(indices, [...range(11), 14]);
  assert.deepEqual(values.slice(0, 8), range(8));
  assert.ok(Number.isNaN(values[9]));
  assert.equal(buffer.newest, 15);
  assert.equal(buffer.value(12), undefined);
});

test("the buffer keeps the last 60 s and forgets what is older", () => {
  const buffer = new SampleBuffer(10, 60); // 600 samples
  buffer.place(0, range(600));
  buffer.place(600, range(100, 600));
  assert.equal(buffer.oldest, 100);
  assert.deepEqual(buffer.samples(0, 105).indices, range(5, 100));
  buffer.place(50, [-1]); // older than the span: ignored, not written over 650
  assert.equal(buffer.value(650), 650);
  buffer.place(5000, [1]); // a leap: nothing before it is mistaken for its neighbours
  assert.deepEqual(buffer.samples(4400, 5001).indices, [5000]);
});

test("packets whose times jitter are one line by index: the old defect, gone", () => {
  // 60 Hz pleth in reads of 1-3 samples; each packet's time off by up to +-20 ms, as serial
  // reads made them. Placed by time, a 20 ms late start shifted in a blank sample and an
  // early one overlapped; placed by index, every sample is there, once.
  const trace = new Trace(null, { unit: "{1}" });
  let index = 0;
  let seed = 7;
  const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  for (let k = 0; k < 600; k++) {
    const n = 1 + Math.floor(random() * 3);
    const jitter = (random() - 0.5) * 0.040;
    const p = packet(index, range(n, index), { sampleRate: 60, firstTime: 1000 + index / 60 + jitter });
    trace.push(p, 1000.05 + index / 60);
    index += n;
  }
  const { indices, values } = trace.samples(0, index);
  assert.deepEqual(indices, range(index));
  assert.deepEqual(values, range(index));
});

test("a hole in the indices is exactly the samples lost", () => {
  const trace = new Trace(null, { unit: "{1}" });
  trace.push(packet(0, range(5)), 100.5);
  trace.push(packet(9, range(3, 9)), 101.2); // 5..8 lost
  assert.deepEqual(trace.samples(0, 12).indices, [0, 1, 2, 3, 4, 9, 10, 11]);
});

test("the playout delay covers the arrivals' jitter and the shown index moves at the device's pace", () => {
  const playout = new Playout(100);
  let seed = 3;
  const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  const shown = [];
  for (let k = 0; k < 400; k++) { // a packet of 10 samples every 100 ms for 40 s
    const firstTime = 1000 + k * 0.1;
    playout.arrived({ firstIndex: k * 10, firstTime, samples: new Float32Array(10) },
      firstTime + 0.1 + 0.2 + random() * 0.04); // its length, 200 ms of link, 0-40 ms jitter
    for (let f = 0; f < 6; f++) shown.push([firstTime + 0.3 + f / 60, playout.cursor(firstTime + 0.3 + f / 60)]);
  }
  assert.ok(playout.delay > 0.33 && playout.delay < 0.38, String(playout.delay));
  // Monotonic, and at 100 samples a second within the 2 % slew once settled.
  const later = shown.filter(([t]) => t > 1010);
  for (let k = 1; k < later.length; k++) {
    const rate = (later[k][1] - later[k - 1][1]) / (later[k][0] - later[k - 1][0]);
    assert.ok(rate >= 97.99 && rate <= 102.01, `rate ${rate}`);
  }
  // And what it shows has arrived: its index is behind the newest packet's start.
  const [t, cursor] = later.at(-1);
  assert.ok(cursor < (t - 1000 - 0.3) * 100 + 10, `${cursor}`);
});

test("at least 10 s of ECG at 25 mm/s; CSS's own mm where the trace is wide enough", () => {
  assert.equal(pxPerMm(2000), CSS_PX_PER_MM);
  assert.ok(pxPerMm(600) * 25 * 10 <= 600);
  assert.ok(Math.abs(pxPerMm(600) * 250 - 600) < 1e-9);
});

function ecgTrace(options = {}) {
  const { canvas, paths } = recordingCanvas(options.width ?? 400, 100);
  const view = { speed: 25, gain: options.gain ?? 1, mode: options.mode ?? "sweep" };
  const trace = new Trace(canvas, { unit: "mV", sample_rate: 100 }, view, { colour: "green" });
  return { trace, paths, canvas };
}

const traced = (paths) => paths.filter((p) => p.colour === "green");

test("an ECG is drawn at 10 mm/mV times the gain, with a 1 mV calibration pulse", () => {
  for (const gain of [0.5, 1, 2]) {
    const { trace, paths } = ecgTrace({ gain });
    trace.push(packet(0, [0, 0, 1, 1, 0], { sampleRate: 100, firstTime: 100 }), 100.05);
    trace.draw(101);
    const g = trace.geometry();
    const [calibration, samples] = traced(paths);
    const heights = calibration.path.map((c) => c[2]);
    const pulse = Math.max(...heights) - Math.min(...heights);
    assert.ok(Math.abs(pulse - 10 * gain * g.mm) < 1e-9, `gain ${gain}: ${pulse}`);
    const ys = samples.path.map((c) => c[2]);
    assert.ok(Math.abs(Math.max(...ys) - Math.min(...ys) - pulse) < 1e-9);
  }
});

test("the ECG has its grid (1 mm, 5 mm); a pleth has none and is scaled to its range", () => {
  const { trace, paths } = ecgTrace({ width: 800 });
  trace.push(packet(0, [0, 0.5], { sampleRate: 100, firstTime: 100 }), 100.05);
  trace.draw(101);
  const grid = paths.filter((p) => p.colour !== "green");
  assert.equal(grid.length, 2); // minor and major lines
  const g = trace.geometry();
  const xs = grid[0].path.filter((c) => c[0] === "move" && c[2] === 0).map((c) => c[1]);
  assert.ok(Math.abs(xs[1] - xs[0] - g.mm) <= 1);
  const { canvas, paths: plethPaths } = recordingCanvas(400, 100);
  const pleth = new Trace(canvas, { unit: "{1}" }, { speed: 25, gain: 1, mode: "sweep" }, { colour: "green" });
  pleth.push(packet(0, range(50), { firstTime: 100 }), 100.1);
  pleth.draw(106);
  assert.equal(plethPaths.length, 1);
  const ys = plethPaths[0].path.map((c) => c[2]);
  assert.ok(Math.min(...ys) >= 0 && Math.max(...ys) <= 100);
  assert.ok(Math.max(...ys) - Math.min(...ys) > 70); // the range fills the trace
});

test("gaps are breaks in the line, never values; the sweep wraps without a line back", () => {
  const { trace, paths } = ecgTrace({ width: 200 });
  const n = Math.floor(trace.geometry().seconds * 100); // one screen
  const values = range(n).map((k) => (k % 7) / 10);
  values[40] = NaN; // the device's "no value"
  trace.push(packet(0, values.slice(0, 60), { sampleRate: 100, firstTime: 100 }), 100.05);
  trace.push(packet(70, values.slice(70), { sampleRate: 100, firstTime: 100.7 }), 100.75);
  trace.draw(100 + (n - 1) / 100 + 0.08); // the cursor at the newest sample
  const path = traced(paths)[1].path;
  const pieces = path.filter((c) => c[0] === "move").length;
  assert.equal(pieces, 4); // broken at the NaN, at the lost 60..69 and where the sweep wraps
  for (let k = 1; k < path.length; k++) { // no segment runs right to left across the screen
    if (path[k][0] === "line") assert.ok(path[k][1] >= path[k - 1][1]);
  }
});

test("an auto range moves over seconds, not from one frame to the next", () => {
  const buffer = new SampleBuffer(60);
  const auto = new AutoRange();
  const his = [];
  for (let f = 0; f < 600; f++) { // 10 s of frames; the amplitude jumps tenfold at 1 s
    const now = f / 60;
    buffer.place(f, [now < 1 ? 1 : 10]);
    auto.update(buffer, f, now);
    if (now >= 1) his.push(auto.hi);
  }
  const steps = his.slice(1).map((h, k) => h - his[k]);
  assert.ok(Math.max(...steps) < 0.2, `${Math.max(...steps)}`); // of a range of about 10
  const settled = his.findIndex((h) => h > 9.5) / 60;
  assert.ok(settled > 2 && settled < 8, `${settled} s`);
});

test("a frozen trace keeps its screen and can be reviewed back through its buffer", () => {
  const { trace, paths } = ecgTrace();
  for (let k = 0; k < 100; k++) { // 30 s in packets of 0.3 s
    const firstTime = 100 + k * 0.3;
    trace.push(packet(k * 30, range(30).map(() => 0.1), { sampleRate: 100, firstTime }), firstTime + 0.35);
  }
  trace.freeze(130.5);
  trace.push(packet(3000, range(100).map(() => 0.9), { sampleRate: 100, firstTime: 130 }), 131);
  assert.ok(trace.reviewable() > 10);
  trace.review = 10;
  trace.draw(140);
  const ys = traced(paths)[1].path.map((c) => c[2]);
  const g = trace.geometry();
  assert.ok(ys.every((y) => Math.abs(y - (50 - 0.1 * 10 * g.mm)) < 1e-6)); // not the new 0.9
});
