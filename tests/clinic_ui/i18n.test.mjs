// Translations (clinic_ui/static/js/i18n.js): placeholders, the English fallback, and which
// language a user gets. The browser's globals are stubbed with the little the module uses.
import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

const TRANSLATIONS = {
  en: { greeting: "Hello {name}, {count} new", only_en: "English only", title: "Consultations" },
  ja: { greeting: "{name}さん、新着{count}件", title: "診療相談" },
  ko: { title: "협진" },
};

let fetched;
let stored;

function stub(name, value) {
  // Node 21+ defines some of these (navigator) as getters: replace, do not assign.
  Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
}

beforeEach(() => {
  fetched = [];
  stored = new Map();
  stub("fetch", async (url) => {
    fetched.push(url);
    const lang = /i18n\/(\w+)\.json$/.exec(url)?.[1];
    const body = TRANSLATIONS[lang];
    return { ok: body !== undefined, json: async () => body };
  });
  stub("localStorage", {
    getItem: (key) => (stored.has(key) ? stored.get(key) : null),
    setItem: (key, value) => stored.set(key, String(value)),
  });
  stub("navigator", { language: "en-US" });
  stub("document", { documentElement: { lang: "" }, querySelectorAll: () => [] });
});

let instances = 0;
/** A fresh copy of the module: its loaded strings and language are module state. */
function freshI18n() {
  instances += 1;
  return import(`../../clinic_ui/static/js/i18n.js?instance=${instances}`);
}

test("t() fills named placeholders and leaves unknown ones visible", async () => {
  const i18n = await freshI18n();
  await i18n.setLanguage("en");
  assert.equal(i18n.t("greeting", { name: "Aiko", count: 3 }), "Hello Aiko, 3 new");
  assert.equal(i18n.t("greeting", { name: "Aiko" }), "Hello Aiko, {count} new");
  assert.equal(i18n.t("greeting", { count: 0, name: "" }), "Hello , 0 new");
});

test("a key missing in a language falls back to English, then to the key itself", async () => {
  const i18n = await freshI18n();
  await i18n.setLanguage("ja");
  assert.equal(i18n.language, "ja");
  assert.equal(globalThis.document.documentElement.lang, "ja");
  assert.equal(i18n.t("greeting", { name: "Aiko", count: 2 }), "Aikoさん、新着2件");
  assert.equal(i18n.t("only_en"), "English only");
  assert.equal(i18n.t("no.such.key"), "no.such.key");
  assert.deepEqual(fetched, ["i18n/en.json", "i18n/ja.json"]);
});

test("an unknown language is English; a chosen one is remembered", async () => {
  const i18n = await freshI18n();
  await i18n.setLanguage("fr");
  assert.equal(i18n.language, "en");
  assert.equal(stored.size, 0); // not chosen by the user: nothing remembered
  await i18n.setLanguage("ko", { chosen: true });
  assert.equal(stored.get("telemed.language"), "ko");
  assert.equal(i18n.t("title"), "협진");
});

test("a missing translation file is an error, not a blank page of keys", async () => {
  const i18n = await freshI18n();
  delete TRANSLATIONS.ko;
  try {
    await assert.rejects(i18n.setLanguage("ko"), /no translation ko/);
  } finally {
    TRANSLATIONS.ko = { title: "협진" };
  }
});

test("the language: the user's choice, else the site's, else the browser's, else English", async () => {
  const { preferredLanguage } = await freshI18n();
  assert.equal(preferredLanguage("ko"), "ko");
  assert.equal(preferredLanguage(undefined), "en"); // navigator says en-US
  stub("navigator", { language: "ja-JP" });
  assert.equal(preferredLanguage(null), "ja");
  assert.equal(preferredLanguage("de"), "ja"); // a site language the app lacks
  stub("navigator", { language: "fr-FR" });
  assert.equal(preferredLanguage(null), "en");
  stored.set("telemed.language", "ko");
  assert.equal(preferredLanguage("ja"), "ko");
  stored.set("telemed.language", "xx"); // a stale or tampered choice is ignored
  assert.equal(preferredLanguage("ja"), "ja");
});

test("apply() translates text, placeholders and labels under a root", async () => {
  const i18n = await freshI18n();
  await i18n.setLanguage("en");
  const heading = { dataset: { i18n: "title" }, textContent: "" };
  const input = { dataset: { i18nPlaceholder: "only_en" }, placeholder: "" };
  const attributes = {};
  const button = {
    dataset: { i18nAriaLabel: "title" },
    setAttribute: (name, value) => (attributes[name] = value),
  };
  const elements = {
    "[data-i18n]": [heading],
    "[data-i18n-placeholder]": [input],
    "[data-i18n-aria-label]": [button],
  };
  i18n.apply({ querySelectorAll: (selector) => elements[selector] ?? [] });
  assert.equal(heading.textContent, "Consultations");
  assert.equal(input.placeholder, "English only");
  assert.deepEqual(attributes, { "aria-label": "Consultations" });
});
