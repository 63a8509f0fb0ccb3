// The bedside's stamp read back from a picture (media/video/stamp.py draws it; this reads it
// as its read_stamp does): 72 bits, a 9 x 8 grid of 8-px blocks inside a 2-px grey border in
// the top-left corner, white for 1 and black for 0, each block read from its centre, then a
// 32-bit frame id, 32-bit capture time (ms modulo 2^32) and a CRC-8 that rejects a misread.
// The app names a frozen frame by it: the bedside keeps that frame as it was captured.

const COLUMNS = 9;
const ROWS = 8;
const BLOCK = 8;
const MARGIN = 2;

/** The pixels the stamp covers: [width, height]. */
export const STAMP_SIZE = Object.freeze([COLUMNS * BLOCK + 2 * MARGIN, ROWS * BLOCK + 2 * MARGIN]);

function crc8(bytes) {
  let crc = 0xff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 0x80 ? ((crc << 1) ^ 0x07) & 0xff : (crc << 1) & 0xff;
  }
  return crc ^ 0x55;
}

/** { frameId, captureMs } from `image` ({ width, height, data: RGBA bytes }, as a canvas's
 *  getImageData gives, at the video's own size), or null when it holds no valid stamp. */
export function readStamp(image) {
  const [width, height] = STAMP_SIZE;
  if (!image || image.width < width || image.height < height) return null;
  const lo = BLOCK / 4;
  const hi = BLOCK - BLOCK / 4;
  const levels = new Float64Array(ROWS * COLUMNS);
  for (let r = 0; r < ROWS; r++) {
    for (let c = 0; c < COLUMNS; c++) {
      let sum = 0;
      for (let y = MARGIN + r * BLOCK + lo; y < MARGIN + r * BLOCK + hi; y++) {
        for (let x = MARGIN + c * BLOCK + lo; x < MARGIN + c * BLOCK + hi; x++) {
          const at = (y * image.width + x) * 4;
          sum += (image.data[at] + image.data[at + 1] + image.data[at + 2]) / 3;
        }
      }
      levels[r * COLUMNS + c] = sum / ((hi - lo) * (hi - lo));
    }
  }
  const bits = Array.from(levels, (level) => level > 128);
  const ones = levels.filter((_, k) => bits[k]);
  const zeros = levels.filter((_, k) => !bits[k]);
  if (!ones.length || !zeros.length) return null; // no black-and-white code here
  const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;
  if (mean(ones) - mean(zeros) < 64) return null;
  const bytes = [];
  for (let k = 0; k < 9; k++) {
    let byte = 0;
    for (let b = 0; b < 8; b++) byte = (byte << 1) | (bits[k * 8 + b] ? 1 : 0);
    bytes.push(byte);
  }
  if (crc8(bytes.slice(0, 8)) !== bytes[8]) return null;
  const word = (at) => ((bytes[at] << 24) >>> 0) + (bytes[at + 1] << 16) + (bytes[at + 2] << 8) + bytes[at + 3];
  return { frameId: word(0), captureMs: word(4) };
}
