// The latency overlay's figures and the receivers' jitter-buffer target
// (clinic_ui/static/js/latency.js): summaries as the benchmarks take them, the stamp's
// 32-bit wrap, the target raised on trouble and lowered back when clean, getStats shares, and
// the playout delay the link asks the bedside for (raised on sustained trouble, cleared after
// clean seconds, never flapping).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  CLEAN_S, CLEAR_AFTER_S, DELAY_STEPS_MS, JITTER_CLEAN_MS, JITTER_TROUBLE_MS, LOSS_TROUBLE, MAX_TARGET_MS,
  MIN_GAP_S, PlayoutDelayPolicy, PresentedCheck, RESEND_S, Recent, TROUBLE_S, delayFor, nextTarget, shares,
  sinceStamp, summarize,
} from "../../clinic_ui/static/js/latency.js";

test("summaries: median, p95 at floor(0.95 n), max and count; none without values", () => {
  assert.equal(summarize([]), null);
  const values = Array.from({ length: 100 }, (_, k) => k + 1); // 1..100
  assert.deepEqual(summarize(values.reverse()), { median_ms: 50.5, p95_ms: 96, max_ms: 100, count: 100 });
  assert.deepEqual(summarize([12.34]), { median_ms: 12.3, p95_ms: 12.3, max_ms: 12.3, count: 1 });
});

test("the stamp's capture time is read across its 2^32 ms wrap", () => {
  const wall = 1_764_000_000_123.5; // ms since the epoch
  const stamp = (wall - 25) % 2 ** 32;
  assert.equal(sinceStamp(stamp, wall), 25);
  // Captured just before the wrap, shown just after it.
  assert.equal(sinceStamp(2 ** 32 - 10, 2 ** 32 * 411 + 5), 15);
  // A stamp later than the wall clock (two machines' clocks apart) is negative, not 49 days.
  assert.equal(sinceStamp((wall + 3) % 2 ** 32, wall), -3);
});

test("the target stays at zero on a clean link", () => {
  let state = { targetMs: 0, cleanS: 0 };
  for (let k = 0; k < 10; k++) state = nextTarget(state, { lost: 0, dropped: 0, jitterMs: 2, rttMs: 1 });
  assert.equal(state.targetMs, 0);
});

test("loss raises the target to twice the jitter plus a round trip; it comes down by halves once clean", () => {
  let state = nextTarget({ targetMs: 0, cleanS: 0 }, { lost: 3, dropped: 0, jitterMs: 6, rttMs: 41 });
  assert.equal(state.targetMs, 60); // 2 * 6 + 41 = 53, in 10 ms steps
  state = nextTarget(state, { lost: 0, dropped: 0, jitterMs: JITTER_CLEAN_MS + 10, rttMs: 41 });
  assert.equal(state.targetMs, 60); // never lowered by trouble
  const clean = { lost: 0, dropped: 0, jitterMs: 1, rttMs: 41 };
  for (let k = 0; k < CLEAN_S - 1; k++) state = nextTarget(state, clean);
  assert.equal(state.targetMs, 60);
  state = nextTarget(state, clean);
  assert.equal(state.targetMs, 30);
  for (let k = 0; k < 2 * CLEAN_S; k++) state = nextTarget(state, clean);
  assert.equal(state.targetMs, 0);
});

test("jitter or dropped frames alone raise it too, never past the ceiling", () => {
  assert.equal(nextTarget({ targetMs: 0, cleanS: 0 }, { lost: 0, dropped: 0, jitterMs: 14, rttMs: 9 }).targetMs, 30);
  assert.equal(nextTarget({ targetMs: 0, cleanS: 2 }, { lost: 0, dropped: 2, jitterMs: 0, rttMs: 9 }).cleanS, 0);
  assert.equal(nextTarget({ targetMs: 0, cleanS: 0 }, { lost: 9, dropped: 0, jitterMs: 900, rttMs: 9 }).targetMs, MAX_TARGET_MS);
});

test("shares: jitter buffer and decode per frame between two readings", () => {
  const before = { jitterBufferDelay: 1.0, jitterBufferEmittedCount: 100, totalDecodeTime: 0.2, framesDecoded: 100 };
  const after = { jitterBufferDelay: 1.3, jitterBufferEmittedCount: 130, totalDecodeTime: 0.26, framesDecoded: 130 };
  const { jitterBufferMs, decodeMs } = shares(before, after);
  assert.ok(Math.abs(jitterBufferMs - 10) < 1e-9);
  assert.ok(Math.abs(decodeMs - 2) < 1e-9);
  assert.deepEqual(shares(after, after), { jitterBufferMs: null, decodeMs: null });
  assert.deepEqual(shares(undefined, after), { jitterBufferMs: null, decodeMs: null });
});

test("recent values: older than the window or past the limit are dropped", () => {
  const recent = new Recent(1000, 3);
  for (const at of [0, 100, 200, 300]) recent.add(at, at);
  assert.deepEqual(recent.values(300), [100, 200, 300]);
  assert.deepEqual(recent.values(1250), [300]);
});

test("a stamp ahead of the presented frame's RTP timestamp is a later frame's, not counted", () => {
  const check = new PresentedCheck();
  const rtp = (ms) => (ms - 1000) * 90; // the gateway's RTP clock: capture time, from its start
  assert.equal(check.accept(1000, rtp(1000)), true);
  assert.equal(check.accept(1034, rtp(1033.4)), true); // the stamp's ms rounding
  // The callback for the frame captured at 1067 drew the next one (1100).
  assert.equal(check.accept(1100, rtp(1067)), false);
  assert.equal(check.mismatched, 1);
  assert.equal(check.accept(1100, rtp(1100)), true);
  // A new stream (another origin): taken afresh.
  assert.equal(check.accept(5000, 123), true);
  assert.equal(check.accept(5033, 123 + 33 * 90), true);
  // A new stream whose offset is a little above the old one's: taken after 30 in a row.
  const next = (k) => 5033 + 200 + 33 * k;
  for (let k = 1; k <= 30; k++) assert.equal(check.accept(next(k), 123 + 33 * (k + 1) * 90), false);
  assert.equal(check.accept(next(31), 123 + 33 * 32 * 90), true);
  assert.equal(check.accept(next(32), 123 + 33 * 33 * 90), true);
  // Without an RTP timestamp nothing can be checked.
  assert.equal(check.accept(9, undefined), true);
});

// -- the playout delay the link asks the bedside for ----------------------------------------

const CLEAN = { lost: 0, received: 200, jitterMs: 2, rttMs: 1 };
const LOSSY = { lost: 12, received: 188, jitterMs: 4, rttMs: 1 }; // 6 %

function run(policy, figures, seconds) {
  const sent = [];
  for (let k = 0; k < seconds; k++) {
    const message = policy.step(figures);
    if (message) sent.push(message);
  }
  return sent;
}

test("the steps follow what was seen: loss, jitter, and twice the jitter plus a round trip", () => {
  assert.equal(delayFor({ lossFraction: 0.02, jitterMs: 3, rttMs: 10 }), 100);
  assert.equal(delayFor({ lossFraction: 0.05, jitterMs: 3, rttMs: 10 }), 200);
  assert.equal(delayFor({ lossFraction: 0.15, jitterMs: 3, rttMs: 10 }), 400);
  assert.equal(delayFor({ lossFraction: 0, jitterMs: 35, rttMs: 300 }), 200); // rtt only with loss
  assert.equal(delayFor({ lossFraction: 0.02, jitterMs: 10, rttMs: 150 }), 200); // 170 ms needed
  assert.equal(delayFor({ lossFraction: 0.5, jitterMs: 900, rttMs: 900 }), DELAY_STEPS_MS.at(-1));
});

test("a clean link asks for nothing; a second of trouble alone neither", () => {
  const policy = new PlayoutDelayPolicy();
  policy.told(0);
  assert.deepEqual(run(policy, CLEAN, 30), []);
  for (let k = 0; k < 10; k++) {
    assert.equal(policy.step(LOSSY), null);
    assert.equal(policy.step(CLEAN), null);
  }
});

test("sustained loss asks for a delay, worse asks for more, and clean seconds clear it once", () => {
  const policy = new PlayoutDelayPolicy();
  policy.told(0);
  assert.equal(policy.step(LOSSY), null);
  assert.deepEqual(policy.step(LOSSY), { type: "playout-delay", max_ms: 200, reason: "loss" });
  policy.told(200);
  // Milder trouble never lowers it; worse raises it, no sooner than MIN_GAP_S after the last.
  const heavy = { lost: 40, received: 160, jitterMs: 4, rttMs: 1 };
  const raised = run(policy, heavy, MIN_GAP_S);
  assert.deepEqual(raised, [{ type: "playout-delay", max_ms: 400, reason: "loss" }]);
  policy.told(400);
  assert.deepEqual(run(policy, LOSSY, 20), []);
  // Clean, but not for long enough: kept (hysteresis); a troubled second starts the count again.
  assert.deepEqual(run(policy, CLEAN, CLEAR_AFTER_S - 1), []);
  assert.equal(policy.step(LOSSY), null);
  assert.deepEqual(run(policy, CLEAN, CLEAR_AFTER_S - 1), []);
  assert.deepEqual(policy.step(CLEAN), { type: "playout-delay", max_ms: 0, reason: "clear" });
  policy.told(0);
  assert.deepEqual(run(policy, CLEAN, 60), []);
});

test("jitter alone asks too, as jitter", () => {
  const policy = new PlayoutDelayPolicy();
  assert.deepEqual(run(policy, { lost: 0, received: 200, jitterMs: 30, rttMs: 80 }, 20), []); // a loaded loopback
  const jittery = { lost: 0, received: 200, jitterMs: JITTER_TROUBLE_MS + 5, rttMs: 80 };
  assert.deepEqual(run(policy, jittery, TROUBLE_S), [{ type: "playout-delay", max_ms: 200, reason: "jitter" }]);
  assert.ok(LOSS_TROUBLE < 0.06);
});

test("the same delay is asked again only when the bedside says another is in force, and slowly", () => {
  const policy = new PlayoutDelayPolicy();
  assert.equal(run(policy, LOSSY, TROUBLE_S).length, 1);
  policy.told(0); // refused (asked too often), or not applied yet
  assert.deepEqual(run(policy, LOSSY, RESEND_S - TROUBLE_S + 1), []);
  assert.deepEqual(run(policy, LOSSY, TROUBLE_S), [{ type: "playout-delay", max_ms: 200, reason: "loss" }]);
  policy.told(200);
  assert.deepEqual(run(policy, LOSSY, 3 * RESEND_S), []);
  // A new connection starts at 0: it is told at once what the link needs.
  policy.connected();
  assert.deepEqual(run(policy, LOSSY, 3), []); // until its first `video` says
  policy.told(0);
  assert.deepEqual(policy.step(LOSSY), { type: "playout-delay", max_ms: 200, reason: "loss" });
});
