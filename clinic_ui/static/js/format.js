// Pure formatting for what the clinician reads: units, values, site names. No DOM.
import { t } from "./i18n.js";

/** UCUM unit codes as a clinician writes them ("{1}": a signal without a physical unit). */
const UNITS = { "/min": "/min", "%": "%", "mm[Hg]": "mmHg", "Cel": "°C", "{1}": "" };

export function displayUnit(ucum) {
  return UNITS[ucum] ?? ucum ?? "";
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
