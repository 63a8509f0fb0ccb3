// The trace buffer (clinic_ui/static/js/traces.js): the last spanS seconds of a channel,
// newest at the right, lost samples kept as gaps; and gaps drawn as breaks, never as zero.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Trace } from "../../clinic_ui/static/js/traces.js";

/** A canvas whose 2-D context records the path it is asked to draw. */
function recordingCanvas(width = 100, height = 50) {
  const calls = [];
  const ctx = {
    fillRect: () => {},
    beginPath: () => calls.push(["begin"]),
    moveTo: (x, y) => calls.push(["move", x, y]),
    lineTo: (x, y) => calls.push(["line", x, y]),
    stroke: () => calls.push(["stroke"]),
  };
  return { canvas: { width, height, getContext: () => ctx }, calls };
}

function packet(firstTime, values, sampleRate = 10) {
  return { sampleRate, firstTime, samples: Float32Array.from(values) };
}

const tail = (trace, n) => Array.from(trace.values.subarray(trace.values.length - n));
const isNaNs = (values) => values.every(Number.isNaN);

test("the first packet sizes the buffer to the span and lands at the right", () => {
  const trace = new Trace(null, { spanS: 2 });
  trace.push(packet(100, [1, 2, 3]));
  assert.equal(trace.values.length, 20); // 2 s at 10 Hz
  assert.equal(trace.filled, 3);
  assert.deepEqual(tail(trace, 3), [1, 2, 3]);
  assert.ok(isNaNs(Array.from(trace.values.subarray(0, 17)))); // nothing yet is no value
  assert.equal(trace.endTime, 100.3);
});

test("a packet that follows on is appended without a gap", () => {
  const trace = new Trace(null, { spanS: 2 });
  trace.push(packet(100, [1, 2, 3]));
  trace.push(packet(100.3, [4, 5]));
  assert.equal(trace.filled, 5);
  assert.deepEqual(tail(trace, 5), [1, 2, 3, 4, 5]);
  assert.ok(Math.abs(trace.endTime - 100.5) < 1e-9);
});

test("samples lost in transit become a gap of their length", () => {
  const trace = new Trace(null, { spanS: 2 });
  trace.push(packet(100, [1, 2]));
  trace.push(packet(100.6, [7, 8])); // 100.2 .. 100.6 never arrived: 4 samples
  assert.equal(trace.filled, 8);
  const last = tail(trace, 8);
  assert.deepEqual(last.slice(0, 2), [1, 2]);
  assert.ok(isNaNs(last.slice(2, 6)));
  assert.deepEqual(last.slice(6), [7, 8]);
});

test("less than a sample of jitter is not a gap", () => {
  const trace = new Trace(null, { spanS: 2 });
  trace.push(packet(100, [1, 2]));
  trace.push(packet(100.25, [3])); // half a sample late
  assert.deepEqual(tail(trace, 3), [1, 2, 3]);
});

test("the buffer keeps only the newest span", () => {
  const trace = new Trace(null, { spanS: 1 }); // 10 samples
  trace.push(packet(0, [0, 1, 2, 3, 4, 5, 6, 7]));
  trace.push(packet(0.8, [8, 9, 10, 11]));
  assert.equal(trace.filled, 10);
  assert.deepEqual(Array.from(trace.values), [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  trace.push(packet(1.2, Array.from({ length: 25 }, (_, k) => 100 + k))); // longer than the span
  assert.deepEqual(Array.from(trace.values), Array.from({ length: 10 }, (_, k) => 115 + k));
});

test("a new sample rate starts the trace afresh", () => {
  const trace = new Trace(null, { spanS: 2 });
  trace.push(packet(100, [1, 2, 3], 10));
  trace.push(packet(100.3, [4, 5], 20));
  assert.equal(trace.values.length, 40);
  assert.equal(trace.filled, 2);
  assert.deepEqual(tail(trace, 2), [4, 5]);
});

test("a gap is drawn as a break in the line, not as a value", () => {
  const { canvas, calls } = recordingCanvas();
  const trace = new Trace(canvas, { spanS: 1 });
  trace.draw(); // nothing received: background only
  assert.deepEqual(calls, []);
  trace.push(packet(0, [1, 2, NaN, NaN, 3, 4]));
  trace.draw();
  const path = calls.map((call) => call[0]);
  assert.deepEqual(path, ["begin", "move", "line", "move", "line", "stroke"]);
  assert.equal(trace.drawnFrames, 1);
  // The newest sample is at the right edge.
  assert.equal(calls.at(-2)[1], canvas.width);
});
