// The waveform wire format, version 2 (media/rtc/wire.py is the reference): a 36-byte
// little-endian header (version, flags, sample count, channel id, sequence, sample rate,
// time of the first sample, scale, index of the first sample), n int16 counts scaled by
// `scale`, then an optional gap bitmap. Version 1 (no index) is refused with its version.
export const VERSION = 2;
export const HEADER_SIZE = 36;
export const MAX_SAMPLES = 8192;
const FLAG_GAPS = 0x01;

export class WireError extends Error {}

/** Decode one packet (an ArrayBuffer) to {channel, sequence, sampleRate, firstTime,
 *  firstIndex, samples}; channel is the gateway's id of a (device, signal), firstIndex the
 *  stream index of the first sample (a Number, exact below 2^53); samples is a Float32Array
 *  with NaN where the device had no value. Throws WireError. */
export function decode(buffer) {
  const view = new DataView(buffer);
  if (buffer.byteLength >= 1 && view.getUint8(0) !== VERSION) {
    throw new WireError(`wire format version ${view.getUint8(0)}; this page speaks ${VERSION}`);
  }
  if (buffer.byteLength < HEADER_SIZE) {
    throw new WireError(`${buffer.byteLength} bytes is shorter than the header`);
  }
  const flags = view.getUint8(1);
  const n = view.getUint16(2, true);
  if (n < 1 || n > MAX_SAMPLES) throw new WireError(`sample count ${n}`);
  const gapBytes = flags & FLAG_GAPS ? Math.ceil(n / 8) : 0;
  if (buffer.byteLength !== HEADER_SIZE + 2 * n + gapBytes) {
    throw new WireError(`${buffer.byteLength} bytes does not match the header`);
  }
  const channel = view.getUint32(4, true);
  const sequence = view.getUint32(8, true);
  const sampleRate = view.getFloat32(12, true);
  const firstTime = view.getFloat64(16, true);
  const scale = view.getFloat32(24, true);
  if (!(sampleRate > 0) || !Number.isFinite(firstTime) || !Number.isFinite(scale)) {
    throw new WireError("sample rate, time or scale is not a finite number");
  }
  const index = view.getBigUint64(28, true);
  if (index > BigInt(Number.MAX_SAFE_INTEGER)) throw new WireError(`first index ${index}`);
  const samples = new Float32Array(n);
  for (let k = 0; k < n; k++) samples[k] = view.getInt16(HEADER_SIZE + 2 * k, true) * scale;
  for (let k = 0; k < n && gapBytes; k++) {
    if (view.getUint8(HEADER_SIZE + 2 * n + (k >> 3)) & (1 << (k & 7))) samples[k] = NaN;
  }
  return { channel, sequence, sampleRate, firstTime, firstIndex: Number(index), samples };
}
