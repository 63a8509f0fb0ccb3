"""Test sounds and their measures, shared by the audio tests: WAV files made in the test,
the dominant frequency of a recording, band powers from Welch's PSD, and a heart-sound-like
recording with a reference multi-tone."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.signal import welch

FS = 48_000
#: Third-octave centres across the heart-sound band: the reference multi-tone.
REFERENCE_HZ = (20.0, 25.0, 31.5, 40.0, 50.0, 63.0, 80.0, 100.0, 125.0, 160.0, 200.0)
#: The bands compared between what the bedside sent and what the doctor heard.
BANDS_HZ = ((20.0, 40.0), (40.0, 80.0), (80.0, 150.0), (150.0, 200.0), (20.0, 200.0))


def write_wav(path: Path, samples: NDArray[np.float64], rate: int = FS) -> Path:
    """16-bit mono WAV of ``samples`` in [-1, 1]."""
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())
    return path


def read_wav(path: Path) -> tuple[NDArray[np.float64], int]:
    """A 16-bit WAV as float in [-1, 1] (channels averaged) and its rate."""
    with wave.open(str(path), "rb") as f:
        channels, rate = f.getnchannels(), f.getframerate()
        data = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
    return data.reshape(-1, channels).mean(axis=1) / 32768.0, rate


def dominant_hz(samples: NDArray[np.floating], rate: int = FS) -> float:
    windowed = samples * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(windowed, n=8 * len(samples)))
    return float(np.argmax(spectrum) * rate / (8 * len(samples)))


def heart_sounds(seconds: float, bpm: float = 70.0, seed: int = 7) -> NDArray[np.float64]:
    """Heart-sound-like bursts at ``bpm``: per beat an S1 (120 ms) and, 300 ms later, an S2
    (90 ms), each noise band-limited to 40-150 Hz under a smooth envelope, plus the
    reference multi-tone (``REFERENCE_HZ``, each at -40 dBFS) underneath throughout."""
    rng = np.random.default_rng(seed)
    n = round(seconds * FS)
    t = np.arange(n) / FS
    out = np.zeros(n)
    period = 60.0 / bpm

    def burst(length_s: float, amplitude: float) -> NDArray[np.float64]:
        m = round(length_s * FS)
        spectrum = np.fft.rfft(rng.standard_normal(m))
        freqs = np.fft.rfftfreq(m, 1 / FS)
        spectrum[(freqs < 40) | (freqs > 150)] = 0
        noise = np.fft.irfft(spectrum, m)
        shaped = noise * np.hanning(m)
        return np.asarray(amplitude * shaped / np.max(np.abs(shaped)))

    beat = 0.05
    while beat + 0.5 < seconds:
        for offset, length, amplitude in ((0.0, 0.12, 0.4), (0.3, 0.09, 0.3)):
            sound = burst(length, amplitude)
            start = round((beat + offset) * FS)
            out[start : start + len(sound)] += sound
        beat += period
    for hz in REFERENCE_HZ:
        out += 0.01 * np.sin(2 * np.pi * hz * t + hz)
    return out


def band_powers(samples: NDArray[np.floating], rate: int = FS) -> dict[tuple[float, float], float]:
    """Power in each of ``BANDS_HZ`` (dB, Welch's PSD summed over the band's bins)."""
    freqs, psd = welch(samples, fs=rate, nperseg=16384)
    return {
        (lo, hi): float(10 * np.log10(np.sum(psd[(freqs >= lo) & (freqs < hi)]) + 1e-30))
        for lo, hi in BANDS_HZ
    }


def align(received: NDArray[np.floating], source: NDArray[np.floating]) -> NDArray[np.float64]:
    """The stretch of ``source`` (looped) that ``received`` is a delayed copy of: the lag
    of the largest cross-correlation, found by FFT over the loop."""
    loops = int(np.ceil(len(received) / len(source))) + 2
    looped = np.tile(source, loops)
    n = len(looped)
    corr = np.fft.irfft(np.fft.rfft(looped, n) * np.conj(np.fft.rfft(received, n)), n)
    lag = int(np.argmax(corr[: len(source)]))
    return np.asarray(looped[lag : lag + len(received)], dtype=np.float64)
