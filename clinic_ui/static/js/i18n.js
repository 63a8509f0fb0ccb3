// Translations: one JSON file per language under /i18n/. Elements carry data-i18n="key"
// (text), data-i18n-placeholder="key" or data-i18n-aria-label="key"; code calls
// t("key", {name: value}). The language: the one the user picked (remembered in this
// browser), else their site's, else the browser's.
export const LANGUAGES = ["ja", "ko", "en"];
let strings = {};
let fallback = {};
export let language = "en";

async function load(lang) {
  const response = await fetch(`i18n/${lang}.json`);
  if (!response.ok) throw new Error(`no translation ${lang}`);
  return response.json();
}

/** Switch to `lang`; `chosen`: the user picked it, so it wins over the site's from now on. */
export async function setLanguage(lang, { chosen = false } = {}) {
  if (!LANGUAGES.includes(lang)) lang = "en";
  if (!Object.keys(fallback).length) fallback = await load("en");
  strings = lang === "en" ? fallback : await load(lang);
  language = lang;
  document.documentElement.lang = lang;
  if (chosen) localStorage.setItem("telemed.language", lang);
  apply(document);
}

export function preferredLanguage(siteLanguage) {
  const saved = localStorage.getItem("telemed.language");
  if (saved && LANGUAGES.includes(saved)) return saved;
  if (siteLanguage && LANGUAGES.includes(siteLanguage)) return siteLanguage;
  const browser = (navigator.language || "en").slice(0, 2);
  return LANGUAGES.includes(browser) ? browser : "en";
}

export function t(key, values = {}) {
  const text = strings[key] ?? fallback[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in values ? String(values[name]) : `{${name}}`));
}

export function apply(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  for (const el of root.querySelectorAll("[data-i18n-aria-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nAriaLabel));
  }
}
