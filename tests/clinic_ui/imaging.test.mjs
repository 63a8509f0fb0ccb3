// The image panel's pure logic (clinic_ui/static/js/imaging_*.js): DICOM JSON values, window
// and level, zoom and pan, lengths with Pixel Spacing, the schedulers on a driven clock, the
// imaging.view messages against the generated schema, and who leads the shared view.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  BoundedCache, cineRate, CT_PRESETS, deidentified, dragWindow, fileWindow, framesToPrefetch,
  LatestOnly, measure, personName, pixelSpacing, presetOf, roundWindow, storedRange, Throttle, ViewTransform,
  ultrasoundRegions, wheelFactor,
} from "../../clinic_ui/static/js/imaging_math.js";
import { checkImagingMessage, ImagingMessageError, viewMessage } from "../../clinic_ui/static/js/imaging_messages.js";
import { ShareState } from "../../clinic_ui/static/js/imaging_share.js";

/** A driven clock: setTimeout callbacks run when `advance` passes their time. */
function drivenClock() {
  let now = 0;
  let next = 1;
  const timers = new Map();
  return {
    now: () => now,
    setTimeout(fn, ms) { const id = next++; timers.set(id, { at: now + ms, fn }); return id; },
    clearTimeout(id) { timers.delete(id); },
    async advance(ms) {
      const end = now + ms;
      for (;;) {
        const due = [...timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        timers.delete(due[0]);
        now = due[1].at;
        due[1].fn();
        await new Promise((resolve) => setImmediate(resolve));
      }
      now = end;
    },
  };
}

const UID = "1.2.840.113619.2.1";

test("DICOM JSON values: numbers from IS/DS strings, names as stored, de-identified", () => {
  const meta = {
    "00280030": { vr: "DS", Value: ["0.661468", "0.661469"] },
    "00281050": { vr: "DS", Value: [40, 50] },
    "00281051": { vr: "DS", Value: ["400", "350"] },
    "00100010": { vr: "PN", Value: [{ Alphabetic: "Yamada^Tarou", Ideographic: "山田^太郎", Phonetic: "やまだ^たろう" }] },
    "00120062": { vr: "CS", Value: ["YES"] },
  };
  assert.deepEqual(pixelSpacing(meta), [0.661468, 0.661469]);
  assert.deepEqual(fileWindow(meta), [40, 400]); // the first pair
  assert.equal(personName(meta), "山田 太郎 (Yamada Tarou / やまだ たろう)");
  assert.equal(personName({ "00100010": { vr: "PN", Value: [{ Alphabetic: "Hong^Gildong", Ideographic: "洪^吉洞" }] } }), "洪 吉洞 (Hong Gildong)");
  assert.equal(personName({ "00100010": { vr: "PN", Value: [{ Ideographic: "김^민준" }] } }), "김 민준");
  assert.equal(personName({ "00100010": { vr: "PN" } }), "");
  assert.ok(deidentified(meta));
  assert.ok(!deidentified({}));
  // No Pixel Spacing, or a nonsense one: none (never a made-up mm).
  assert.equal(pixelSpacing({}), null);
  assert.equal(pixelSpacing({ "00280030": { vr: "DS", Value: ["0", "0.5"] } }), null);
  assert.equal(pixelSpacing({ "00280030": { vr: "DS", Value: ["abc", "0.5"] } }), null);
});

test("the file's own window only when it gives one; a drag's start from the stored range", () => {
  // 12-bit unsigned CT with the usual -1024 intercept: [-1024, 3071].
  const ct = { "00280101": { Value: [12] }, "00280103": { Value: [0] }, "00281052": { Value: ["-1024"] }, "00281053": { Value: ["1"] } };
  assert.equal(fileWindow(ct), null); // not made up: the server renders the frame's range
  assert.deepEqual(storedRange(ct), [1023.5, 4095]);
  const signed = { "00280101": { Value: [16] }, "00280103": { Value: [1] } };
  assert.deepEqual(storedRange(signed), [-0.5, 65535]);
  // Colour (three samples): no window applies.
  assert.equal(storedRange({ "00280101": { Value: [8] }, "00280002": { Value: [3] } }), null);
  assert.equal(storedRange({}), null);
  assert.equal(fileWindow({ "00281050": { Value: [40] }, "00281051": { Value: [0] } }), null);
});

test("cine rate from Cine Rate, Frame Time or the recommended rate, bounded", () => {
  assert.equal(cineRate({ "00180040": { Value: [30] } }), 30);
  assert.equal(cineRate({ "00181063": { Value: ["40"] } }), 25);
  assert.equal(cineRate({ "00082144": { Value: [12] } }), 12);
  assert.equal(cineRate({}), 15);
  assert.equal(cineRate({ "00181063": { Value: ["1"] } }), 60);
});

test("window by drag: right widens, down raises the centre, never below width 1", () => {
  const start = [40, 400];
  const [c, w] = dragWindow(start, 300, 0);
  assert.equal(c, 40);
  assert.ok(Math.abs(w - 800) < 1e-9, w); // ~300 px moves it by its own width
  assert.deepEqual(dragWindow(start, 0, 150), [240, 400]);
  assert.equal(dragWindow(start, -10_000, 0)[1], 1);
  // The scale holds for the whole drag (from the start's width): no runaway.
  assert.deepEqual(dragWindow(start, 30, 0), dragWindow(start, 30, 0, 400 / 300));
  assert.deepEqual(roundWindow([40.04, 399.6]), [40, 400]);
  assert.deepEqual(roundWindow([0.1234, 2.345]), [0.12, 2.35]);
  assert.equal(presetOf([400, 1800]), "bone");
  assert.equal(presetOf([401, 1800]), null);
  assert.deepEqual(CT_PRESETS.lung, [-600, 1500]);
});

test("zoom keeps the point under the cursor; image and canvas coordinates round-trip", () => {
  const v = new ViewTransform(512, 256, 800, 600);
  // Fitted whole: 800/512 wide limits it; centred vertically.
  assert.equal(v.scale, 800 / 512);
  assert.deepEqual(v.toCanvas(0, 0), [0, (600 - 256 * v.scale) / 2]);
  const before = v.toImage(300, 200);
  v.zoomAt(2, 300, 200);
  const after = v.toImage(300, 200);
  assert.ok(Math.abs(before[0] - after[0]) < 1e-9 && Math.abs(before[1] - after[1]) < 1e-9);
  assert.equal(v.zoom, 2);
  v.pan(10, -5);
  const [x, y] = v.toCanvas(...v.toImage(123, 456));
  assert.ok(Math.abs(x - 123) < 1e-9 && Math.abs(y - 456) < 1e-9);
  v.zoomAt(1e9, 0, 0);
  assert.equal(v.zoom, 20);
  v.reset();
  assert.equal(v.zoom, 1);
  assert.ok(wheelFactor(-100) > 1 && Math.abs(wheelFactor(-100) - 1.2) < 1e-9);
  assert.ok(Math.abs(wheelFactor(100) * wheelFactor(-100) - 1) < 1e-12);
  assert.ok(v.contains(0, 0) && v.contains(512, 256) && !v.contains(-1, 3));
});

test("length in mm with Pixel Spacing (rows, then columns), pixels without", () => {
  // 100 columns across at 0.5 mm, 0 rows: 50 mm; 30 rows down at 2 mm: 60 mm.
  assert.deepEqual(measure([0, 0], [100, 0], [2, 0.5]), { px: 100, mm: 50 });
  assert.deepEqual(measure([0, 0], [0, 30], [2, 0.5]), { px: 30, mm: 60 });
  const { px, mm } = measure([10, 10], [40, 50], [0.5, 0.5]);
  assert.equal(px, 50);
  assert.equal(mm, 25);
  assert.deepEqual(measure([0, 0], [3, 4], null), { px: 5, mm: null });
});

/** One Sequence of Ultrasound Regions item as the server's metadata writes it (DICOM JSON). */
function region([x0, y0, x1, y1], [dx, dy], units = [3, 3]) {
  const us = (v) => ({ vr: "US", Value: [v] });
  const ul = (v) => ({ vr: "UL", Value: [v] });
  const fd = (v) => ({ vr: "FD", Value: [v] });
  return {
    "00186012": us(1), "00186018": ul(x0), "0018601A": ul(y0), "0018601C": ul(x1), "0018601E": ul(y1),
    "00186024": us(units[0]), "00186026": us(units[1]), "0018602C": fd(dx), "0018602E": fd(dy),
  };
}

test("an ultrasound is measured with the calibration of the region both points lie in", () => {
  const meta = {
    "00186011": {
      vr: "SQ",
      Value: [
        region([20, 40, 619, 339], [0.02, 0.025]), // the B-mode sector: 0.2 mm by 0.25 mm
        region([20, 350, 619, 479], [0.01, 5], [4, 7]), // a Doppler strip: seconds and cm/s
        region([0, 0, 10, 10], [-1, 0.1]), // a broken one: ignored
      ],
    },
  };
  const regions = ultrasoundRegions(meta);
  assert.equal(regions.length, 1);
  assert.deepEqual(regions[0].box, [20, 40, 619, 339]);
  // 100 px across at 0.2 mm, 40 px down at 0.25 mm.
  assert.ok(Math.abs(measure([100, 100], [200, 100], null, regions).mm - 20) < 1e-9);
  assert.ok(Math.abs(measure([100, 100], [100, 140], null, regions).mm - 10) < 1e-9);
  // From the sector into the Doppler strip, or outside any region: no physical length.
  assert.equal(measure([100, 100], [100, 400], null, regions).mm, null);
  assert.equal(measure([5, 5], [8, 8], null, regions).mm, null);
  // Pixel Spacing, when the file has it, is what the length is measured with.
  assert.equal(measure([100, 100], [200, 100], [1, 1], regions).mm, 100);
  assert.deepEqual(ultrasoundRegions({}), []);
});

test("latest only: a burst of window drags asks once, for the last; none run at once", async () => {
  const clock = drivenClock();
  const latest = new LatestOnly(80, clock);
  const ran = [];
  let release;
  const job = (name, slow = false) => async (isLatest) => {
    ran.push(name);
    if (slow) await new Promise((resolve) => { release = resolve; });
    if (!isLatest()) ran.push(`${name}:stale`);
  };
  for (const name of ["a", "b", "c"]) { latest.request(job(name)); await clock.advance(20); }
  assert.deepEqual(ran, []);
  await clock.advance(80);
  assert.deepEqual(ran, ["c"]);
  // One in flight: the newer ones wait, only the last of them runs after it.
  latest.request(job("d", true));
  await clock.advance(80);
  assert.deepEqual(ran, ["c", "d"]);
  latest.request(job("e"));
  latest.request(job("f"));
  await clock.advance(200);
  assert.deepEqual(ran, ["c", "d"]);
  release();
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(ran, ["c", "d", "d:stale", "f"]);
  latest.now(job("g"));
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(ran.at(-1), "g");
});

test("throttle: first at once, the last of a burst at the interval, nothing lost or doubled", async () => {
  const clock = drivenClock();
  const sent = [];
  const throttle = new Throttle(100, (v) => sent.push([clock.now(), v]), clock);
  throttle.push(1);
  throttle.push(2);
  throttle.push(3);
  assert.deepEqual(sent, [[0, 1]]);
  await clock.advance(100);
  assert.deepEqual(sent, [[0, 1], [100, 3]]);
  await clock.advance(500);
  throttle.push(4);
  assert.deepEqual(sent.at(-1), [600, 4]);
  assert.equal(sent.length, 3);
});

test("the frame cache is bounded and releases what it drops", () => {
  const dropped = [];
  const cache = new BoundedCache(3, (v) => dropped.push(v));
  for (const n of [1, 2, 3]) cache.set(n, `f${n}`);
  cache.get(1); // 1 is recent now: 2 goes first
  cache.set(4, "f4");
  assert.deepEqual(dropped, ["f2"]);
  assert.equal(cache.size, 3);
  assert.ok(cache.has(1) && !cache.has(2));
  cache.set(4, "f4b");
  assert.deepEqual(dropped, ["f2", "f4"]);
  cache.clear();
  assert.equal(cache.size, 0);
  assert.deepEqual(dropped.slice(2).sort(), ["f1", "f3", "f4b"]);
  // Prefetch: the next frames not yet had, wrapping round the end.
  assert.deepEqual(framesToPrefetch(9, 10, 4, (n) => n === 1), [10, 2, 3]);
  assert.deepEqual(framesToPrefetch(1, 1, 4, () => false), []);
});

test("imaging.view messages: built, rounded and checked against the generated schema", () => {
  const m = viewMessage({ study: UID, series: `${UID}.2`, sop: `${UID}.3`, frame: 4, window: [40.004, 400], pointer: [10.04, 20.06] });
  assert.deepEqual(m, { type: "imaging.view", study: UID, series: `${UID}.2`, sop: `${UID}.3`, frame: 4, window: [40, 400], pointer: [10, 20.1] });
  const from = { ...m, from: "peer-1" };
  assert.equal(checkImagingMessage(from), from);
  const bad = [
    { ...m, study: "1.02.3" }, // a UID has no leading zero
    { ...m, study: "x".repeat(65) },
    { ...m, frame: 0 },
    { ...m, frame: 1.5 },
    { ...m, window: [40, 0] }, // width must be positive
    { ...m, window: [40] },
    { ...m, pointer: [1, 2, 3] },
    { ...m, pointer: [1e7, 0] },
    { ...m, extra: true },
    { ...m, from: "bad peer id" },
    { type: "imaging.view", study: UID, series: UID },
    { type: "chat", text: "hi" },
    [m],
    null,
  ];
  for (const message of bad) {
    assert.throws(() => checkImagingMessage(message), ImagingMessageError, JSON.stringify(message));
  }
  assert.throws(() => viewMessage({ study: UID, series: UID, sop: UID, window: [0, -1] }), ImagingMessageError);
  const stored = { type: "imaging.stored", consultation_id: "c1", study: UID, series: UID, sop: UID, modality: "CT", frames: 1 };
  assert.equal(checkImagingMessage(stored), stored);
  assert.throws(() => checkImagingMessage({ ...stored, frames: "1" }), ImagingMessageError);
});

test("the shared view: the first to change leads, the last to take control wins", () => {
  const a = new ShareState();
  const b = new ShareState();
  assert.equal(a.mode, "alone");
  // A changes the window: A leads and sends; B receives and follows A.
  assert.equal(a.localChange(), true);
  assert.equal(a.mode, "leading");
  assert.equal(b.received("A"), true);
  assert.deepEqual([b.mode, b.leader, b.mayChange], ["following", "A", false]);
  // B's changes wait for "take control"; then B leads and A follows.
  b.takeControl();
  assert.equal(b.localChange(), true);
  assert.equal(a.received("B"), true);
  assert.deepEqual([a.mode, a.leader], ["following", "B"]);
  // A looks alone: B's views are not applied, and A sends nothing.
  a.goIndependent();
  assert.equal(a.received("B"), false);
  assert.equal(a.localChange(), false);
  assert.equal(a.mayChange, true);
  a.follow();
  assert.equal(a.mode, "following");
  // The leader leaves: nobody leads; the next change leads again.
  a.left("B");
  assert.deepEqual([a.mode, a.leader], ["alone", null]);
  assert.equal(a.received(null), false);
  a.left("nobody");
  assert.equal(a.mode, "alone");
});
