// The browser's waveform decoder (clinic_ui/static/js/wire.js) against packets the Python
// encoder wrote (wire_packets.json, kept current by test_wire_fixture.py), and against
// every way a packet can be malformed.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { decode, HEADER_SIZE, MAX_SAMPLES, WireError } from "../../clinic_ui/static/js/wire.js";

const PACKETS = JSON.parse(readFileSync(new URL("./wire_packets.json", import.meta.url), "utf8"));

function bytes(hex) {
  const array = new Uint8Array(hex.length / 2);
  for (let i = 0; i < array.length; i++) array[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return array.buffer;
}

function packet(name) {
  return PACKETS.find((p) => p.name === name);
}

/** A copy of `name`'s bytes changed by `edit(view, buffer)`. */
function edited(name, edit) {
  const buffer = bytes(packet(name).hex);
  edit(new DataView(buffer), buffer);
  return buffer;
}

test("decodes what the Python encoder wrote, value for value", () => {
  assert.ok(PACKETS.length >= 3);
  for (const expected of PACKETS) {
    const got = decode(bytes(expected.hex));
    assert.equal(got.channel, expected.channel, expected.name);
    assert.equal(got.sequence, expected.sequence, expected.name);
    assert.equal(got.sampleRate, expected.sampleRate, expected.name);
    assert.equal(got.firstTime, expected.firstTime, expected.name);
    assert.equal(got.firstIndex, expected.firstIndex, expected.name);
    assert.ok(got.samples instanceof Float32Array);
    const samples = Array.from(got.samples, (v) => (Number.isNaN(v) ? null : v));
    assert.deepEqual(samples, expected.samples, expected.name);
  }
});

test("gaps are NaN, never zero", () => {
  const got = decode(bytes(packet("pleth 125 Hz, gaps").hex));
  const gaps = Array.from(got.samples, (v, k) => (Number.isNaN(v) ? k : -1)).filter((k) => k >= 0);
  assert.deepEqual(gaps, [0, 8, 11]); // index 8 and 11 are in the bitmap's second byte
  assert.ok(decode(bytes(packet("nothing but gaps").hex)).samples.every(Number.isNaN));
  const ecg = decode(bytes(packet("ecg 500 Hz, no gaps").hex)).samples;
  assert.ok(!ecg.some(Number.isNaN));
});

test("a truncated packet is refused", () => {
  const whole = bytes(packet("pleth 125 Hz, gaps").hex);
  assert.throws(() => decode(new ArrayBuffer(0)), WireError);
  assert.throws(() => decode(whole.slice(0, HEADER_SIZE - 1)), /shorter than the header/);
  assert.throws(() => decode(whole.slice(0, HEADER_SIZE)), /does not match the header/);
  assert.throws(() => decode(whole.slice(0, whole.byteLength - 1)), /does not match/);
});

test("a bitmap flag without its bitmap, or bytes past the packet, are refused", () => {
  const ecg = bytes(packet("ecg 500 Hz, no gaps").hex);
  const flagged = edited("ecg 500 Hz, no gaps", (view) => view.setUint8(1, 0x01));
  assert.throws(() => decode(flagged), /does not match the header/);
  const longer = new Uint8Array(ecg.byteLength + 1);
  longer.set(new Uint8Array(ecg));
  assert.throws(() => decode(longer.buffer), /does not match the header/);
});

test("another version of the format is refused", () => {
  for (const version of [0, 1, 3, 255]) {
    const buffer = edited("ecg 500 Hz, no gaps", (view) => view.setUint8(0, version));
    assert.throws(() => decode(buffer), new RegExp(`version ${version}; this page speaks 2`));
  }
});

test("a version 1 packet (a 28-byte header, no sample index) is refused with its version", () => {
  const old = new Uint8Array(28 + 4);
  const view = new DataView(old.buffer);
  view.setUint8(0, 1);
  view.setUint16(2, 2, true);
  view.setUint32(4, 150452, true);
  view.setFloat32(12, 60, true);
  view.setFloat32(24, 1, true);
  assert.throws(() => decode(old.buffer), /version 1/);
});

test("the first sample's index is read whole, past 32 bits", () => {
  assert.equal(decode(bytes(packet("pleth 125 Hz, gaps").hex)).firstIndex, 2 ** 40 + 3);
  assert.equal(decode(bytes(packet("nothing but gaps").hex)).firstIndex, Number.MAX_SAFE_INTEGER);
});

test("an index a JavaScript number cannot hold exactly is refused", () => {
  const buffer = edited("ecg 500 Hz, no gaps", (view) => view.setBigUint64(28, 2n ** 53n, true));
  assert.throws(() => decode(buffer), /first index 9007199254740992/);
});

test("a sample count outside 1..MAX_SAMPLES is refused", () => {
  for (const n of [0, MAX_SAMPLES + 1, 65535]) {
    const buffer = edited("ecg 500 Hz, no gaps", (view) => view.setUint16(2, n, true));
    assert.throws(() => decode(buffer), new RegExp(`sample count ${n}`));
  }
});

test("a rate, time or scale that is not a finite number is refused", () => {
  const edits = [
    (view) => view.setFloat32(12, 0, true), // sample rate 0
    (view) => view.setFloat32(12, -500, true),
    (view) => view.setFloat32(12, NaN, true),
    (view) => view.setFloat64(16, Infinity, true), // first sample time
    (view) => view.setFloat32(24, NaN, true), // scale
  ];
  for (const edit of edits) {
    assert.throws(() => decode(edited("ecg 500 Hz, no gaps", edit)), /not a finite number/);
  }
});

test("every refusal is a WireError", () => {
  assert.throws(() => decode(new ArrayBuffer(3)), (error) => error instanceof WireError);
});
