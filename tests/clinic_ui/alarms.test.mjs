// The alarm view's rules (clinic_ui/static/js/alarms.js), on a driven clock: which tone
// sounds, its IEC 60601-1-8 burst patterns, a pause of two minutes that ends by itself (and
// early for an alarm that starts meanwhile), never an "off"; what stays in the list.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  DONE_VISIBLE_MS, ENDED_VISIBLE_MS, isVisible, PATTERNS, PAUSE_MS, sortAlarms, soundingPriority,
  ToneState,
} from "../../clinic_ui/static/js/alarms.js";

const T0 = 1_800_000_000_000; // ms

function alarm(id, priority, extra = {}) {
  return { id, priority, state: "active", started: T0 / 1000, kind: "physiological", ...extra };
}

test("the patterns are the standard's: 10 pulses high, 3 medium, at most 2 low", () => {
  assert.equal(PATTERNS.high.pulses.length, 10);
  assert.equal(PATTERNS.medium.pulses.length, 3);
  assert.ok(PATTERNS.low.pulses.length <= 2);
  for (const p of Object.values(PATTERNS)) {
    // Pulses do not overlap, and the burst ends well before the next one.
    p.pulses.slice(1).forEach((onset, k) => assert.ok(onset - p.pulses[k] > p.length));
    assert.ok(p.pulses.at(-1) + p.length < p.every);
    assert.ok(p.frequency >= 150 && p.frequency <= 1000);
  }
  // High repeats within 2.5-15 s, medium within 2.5-30 s, low no faster than 15 s.
  assert.ok(PATTERNS.high.every >= 2.5 && PATTERNS.high.every <= 15);
  assert.ok(PATTERNS.medium.every >= 2.5 && PATTERNS.medium.every <= 30);
  assert.ok(PATTERNS.low.every >= 15);
});

test("the highest active, unacknowledged alarm sounds", () => {
  assert.equal(soundingPriority([]), null);
  const alarms = [
    alarm("a", "low"),
    alarm("b", "high", { acknowledged_by: "doctor.koriyama" }),
    alarm("c", "medium"),
    alarm("d", "high", { state: "ended", ended: T0 / 1000 }),
  ];
  assert.equal(soundingPriority(alarms), "medium");
});

test("bursts repeat on the pattern's period and at once when the priority rises", () => {
  const tone = new ToneState();
  const medium = [alarm("a", "medium")];
  assert.equal(tone.due(medium, T0), "medium");
  assert.equal(tone.due(medium, T0 + 5000), null);
  assert.equal(tone.due(medium, T0 + PATTERNS.medium.every * 1000), "medium");
  const both = [...medium, alarm("b", "high")];
  assert.equal(tone.due(both, T0 + PATTERNS.medium.every * 1000 + 250), "high");
  assert.equal(tone.bursts, 3);
  assert.equal(tone.state(both, T0), "high");
  assert.equal(tone.due([], T0 + 60000), null);
  assert.equal(tone.state([], T0 + 60000), "silent");
});

test("a pause lasts two minutes, then the tone comes back by itself", () => {
  const tone = new ToneState();
  const alarms = [alarm("a", "medium")];
  assert.equal(tone.due(alarms, T0), "medium");
  tone.pause(alarms, T0 + 1000);
  assert.equal(tone.state(alarms, T0 + 1000), "paused");
  for (let ms = 1000; ms < 1000 + PAUSE_MS; ms += 5000) assert.equal(tone.due(alarms, T0 + ms), null);
  assert.equal(tone.due(alarms, T0 + 1000 + PAUSE_MS - 1), null);
  // Pausing again while paused does not lengthen it.
  tone.pause(alarms, T0 + 100000);
  assert.equal(tone.pausedUntil, T0 + 1000 + PAUSE_MS);
  assert.equal(tone.state(alarms, T0 + 1000 + PAUSE_MS), "medium");
  assert.equal(tone.due(alarms, T0 + 1000 + PAUSE_MS), "medium");
});

test("an alarm starting during a pause ends it; resuming is always possible", () => {
  const tone = new ToneState();
  const first = [alarm("a", "low")];
  tone.due(first, T0);
  tone.pause(first, T0);
  assert.equal(tone.due(first, T0 + 10000), null);
  const second = [...first, alarm("b", "medium")];
  assert.equal(tone.due(second, T0 + 11000), "medium");
  assert.equal(tone.state(second, T0 + 11000), "medium");
  tone.pause(second, T0 + 12000);
  tone.resume();
  assert.equal(tone.state(second, T0 + 12000), "medium");
});

test("ended alarms stay until acknowledged, or for a while", () => {
  const now = T0 + 1_000_000;
  const endedAt = (ms) => ({ state: "ended", ended: (now - ms) / 1000 });
  assert.ok(isVisible(alarm("a", "high"), now));
  assert.ok(isVisible(alarm("b", "high", endedAt(ENDED_VISIBLE_MS - 1000)), now));
  assert.ok(!isVisible(alarm("c", "high", endedAt(ENDED_VISIBLE_MS + 1000)), now));
  const acked = (ms) => ({ ...endedAt(ms), acknowledged_by: "doctor", acknowledged_at: (now - ms) / 1000 });
  assert.ok(isVisible(alarm("d", "medium", acked(DONE_VISIBLE_MS - 1000)), now));
  assert.ok(!isVisible(alarm("e", "medium", acked(DONE_VISIBLE_MS + 1000)), now));
});

test("the list: active first, the most urgent first, the newest first", () => {
  const list = sortAlarms([
    alarm("old-medium", "medium", { started: 1 }),
    alarm("ended-high", "high", { state: "ended", ended: 5 }),
    alarm("new-medium", "medium", { started: 2 }),
    alarm("low", "low"),
    alarm("high", "high"),
  ]);
  assert.deepEqual(list.map((a) => a.id), ["high", "new-medium", "old-medium", "low", "ended-high"]);
});
