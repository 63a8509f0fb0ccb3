// Waveform traces on canvas: the last `spanS` seconds of each channel, newest at the right,
// gaps left blank (never drawn as zero).
export class Trace {
  constructor(canvas, { spanS = 6, colour = "#3ddc84" } = {}) {
    this.canvas = canvas;
    this.spanS = spanS;
    this.colour = colour;
    this.sampleRate = 0;
    this.values = new Float32Array(0);
    this.filled = 0;
    this.endTime = 0; // time of the sample after the newest
    this.drawnFrames = 0;
  }

  push(packet) {
    if (packet.sampleRate !== this.sampleRate) {
      this.sampleRate = packet.sampleRate;
      this.values = new Float32Array(Math.ceil(this.spanS * packet.sampleRate)).fill(NaN);
      this.filled = 0;
    }
    const start = packet.firstTime;
    if (this.filled && start > this.endTime + 1 / this.sampleRate) {
      // Samples lost in transit: shift in a gap of the right length.
      this._append(new Float32Array(Math.round((start - this.endTime) * this.sampleRate)).fill(NaN));
    }
    this._append(packet.samples);
    this.endTime = start + packet.samples.length / this.sampleRate;
  }

  _append(samples) {
    const n = this.values.length;
    if (samples.length >= n) {
      this.values.set(samples.subarray(samples.length - n));
    } else {
      this.values.copyWithin(0, samples.length);
      this.values.set(samples, n - samples.length);
    }
    this.filled = Math.min(n, this.filled + samples.length);
  }

  draw() {
    const { canvas } = this;
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height;
    ctx.fillStyle = "#0b1117";
    ctx.fillRect(0, 0, w, h);
    if (!this.filled) return;
    let lo = Infinity, hi = -Infinity;
    for (const v of this.values) if (!Number.isNaN(v)) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (!(hi > lo)) { lo -= 1; hi += 1; }
    const pad = (hi - lo) * 0.1;
    const y = (v) => h - ((v - lo + pad) / (hi - lo + 2 * pad)) * h;
    const n = this.values.length;
    ctx.strokeStyle = this.colour;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let pen = false;
    for (let k = n - this.filled; k < n; k++) {
      const v = this.values[k];
      if (Number.isNaN(v)) { pen = false; continue; }
      const x = (k / (n - 1)) * w;
      if (pen) ctx.lineTo(x, y(v)); else ctx.moveTo(x, y(v));
      pen = true;
    }
    ctx.stroke();
    this.drawnFrames++;
  }
}
