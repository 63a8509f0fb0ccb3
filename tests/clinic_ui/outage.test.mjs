// The outage review's pure parts (clinic_ui/static/js/outage.js): gaps found from the live
// packets' indices, and a review filled from the gateway's answers.
import assert from "node:assert/strict";
import { test } from "node:test";

import { GapTracker, MAX_REQUEST, MIN_GAP_S, Review } from "../../clinic_ui/static/js/outage.js";

const packet = (channel, firstIndex, n, rate = 60) => ({
  channel, sampleRate: rate, firstIndex, firstTime: 1000 + firstIndex / rate, samples: new Float32Array(n),
});

test("a jump of at least MIN_GAP_S is a gap; loss and reordering are not", () => {
  const gaps = new GapTracker();
  assert.equal(gaps.packet(packet(1, 0, 30)), null);
  assert.equal(gaps.packet(packet(1, 60, 30)), null); // 30 samples lost: half a second
  assert.equal(gaps.packet(packet(1, 30, 30)), null); // and then it came, late
  assert.deepEqual(gaps.gaps(), []);
  const gap = gaps.packet(packet(1, 90 + 5 * 60, 30));
  assert.deepEqual(gap, { channel: 1, from: 90, to: 390, fromTime: 1000 + 90 / 60, toTime: 1000 + 390 / 60, rate: 60 });
  assert.equal(MIN_GAP_S * 60 <= 300, true);
  // Another channel is its own; the latest gap of each is kept.
  gaps.packet(packet(2, 0, 250, 500));
  gaps.packet(packet(2, 250 + 1000, 250, 500));
  gaps.packet(packet(1, 420 + 120, 30));
  assert.deepEqual(gaps.gaps().map((g) => [g.channel, g.from, g.to]), [[1, 420, 540], [2, 250, 1250]]);
});

test("a channel whose indices start again (another gateway run) is no gap", () => {
  const gaps = new GapTracker();
  gaps.packet(packet(1, 100_000, 30));
  assert.equal(gaps.packet(packet(1, 0, 30)), null);
  assert.equal(gaps.packet(packet(1, 30, 30)), null);
  assert.deepEqual(gaps.gaps(), []);
});

test("a review asks for the gap (its newest part when long) and places answers by index", () => {
  const review = new Review({ channel: 1, from: 100, to: 110, rate: 60, fromTime: 0, toTime: 0 });
  assert.deepEqual([review.first, review.count], [100, 10]);
  const ask = { request_first: 100, request_count: 10 };
  assert.equal(review.answer({ ...ask, request_first: 99, first: 99, samples: [1], done: true }), false);
  assert.equal(review.answer({ ...ask, first: 104, samples: [4, null, 6, 7, 8, 9, 10], done: false }), true);
  assert.equal(review.answer({ ...ask, first: 98, samples: [-2, -1, 0, 1, 2], done: true }), true);
  assert.deepEqual(Array.from(review.values, (v) => (Number.isNaN(v) ? null : v)),
    [0, 1, 2, NaN, 4, NaN, 6, 7, 8, 9].map((v) => (Number.isNaN(v) ? null : v)));
  assert.equal(review.done, true);
  const long = new Review({ channel: 1, from: 0, to: MAX_REQUEST + 500, rate: 500, fromTime: 0, toTime: 0 });
  assert.deepEqual([long.first, long.count], [500, MAX_REQUEST]);
});
