// Notices a clinician must not miss: shown in the notice area (an ARIA live region, so a
// screen reader says them too) and, for new requests, a short chime.
const $ = (id) => document.getElementById(id);

let audio = null;

/** Show `text` for `ms` milliseconds; `kind` styles it ("info", "request", "error"). */
export function notify(text, { kind = "info", ms = 8000, chime = false } = {}) {
  const area = $("notices");
  const item = document.createElement("div");
  item.className = `notice ${kind}`;
  item.textContent = text;
  area.append(item);
  setTimeout(() => item.remove(), ms);
  if (chime) playChime();
  return item;
}

/** Two soft tones. Browsers allow sound only after the user has interacted with the page,
 *  which signing in is; before that the chime is silently skipped, the notice still shows. */
export function playChime() {
  try {
    audio ??= new AudioContext();
    if (audio.state === "suspended") audio.resume();
    const now = audio.currentTime;
    for (const [k, freq] of [[0, 880], [1, 1175]]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + k * 0.18);
      gain.gain.exponentialRampToValueAtTime(0.2, now + k * 0.18 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + k * 0.18 + 0.16);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + k * 0.18);
      osc.stop(now + k * 0.18 + 0.17);
    }
  } catch {
    // No audio output here: the visible notice is enough.
  }
}
