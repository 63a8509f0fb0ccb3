// Pure formatting for what the clinician reads: units, values, site names. No DOM.
import * as i18n from "./i18n.js";
import { t } from "./i18n.js";

/** UCUM unit codes as a clinician writes them ("{1}": a signal without a physical unit). */
const UNITS = { "/min": "/min", "%": "%", "mm[Hg]": "mmHg", "Cel": "°C", "{1}": "" };

/** Rates of the heart as clinicians write them. */
const BEATS = new Set(["heart_rate", "pulse_rate"]);

/** The unit as a clinician reads it; `code` (optional) tells heart rates (bpm) apart. */
export function displayUnit(ucum, code = "") {
  if (ucum === "/min" && BEATS.has(code)) return "bpm";
  return UNITS[ucum] ?? ucum ?? "";
}

/** How long ago, in words: "12 s ago", "3 min ago", "2 h ago". */
export function formatAge(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return t("age.seconds", { n: s });
  if (s < 7200) return t("age.minutes", { n: Math.round(s / 60) });
  return t("age.hours", { n: Math.round(s / 3600) });
}

export function formatValue(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) >= 100 ? 0 : 1);
}

/** A site's name in the current language; the server's name for a site we have no
 *  translation of; the code itself for a site nobody knows. */
export function siteName(sites, code) {
  const key = `site.${code}`;
  const text = t(key);
  return text === key ? (sites.find((s) => s.code === code)?.name ?? code) : text;
}

/** A time in the viewer's own zone, labelled with it: the bedside video's overlay shows the
 *  bedside's zone, the chat the viewer's, and a reader must never have to guess which. */
export function formatTime(iso, language = i18n.language) {
  return new Date(iso).toLocaleTimeString(language, { timeZoneName: "short" });
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h}:${String(m).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`
    : `${m}:${String(s % 60).padStart(2, "0")}`;
}
