// The app's texts: one catalogue per language, fetched from /app/i18n/<lang>.json (cached offline by
// the service worker). Every visible string comes from it; dates, times and distances use Intl.
export const LANGUAGES = ["zh", "en", "ko", "ja"];
export const LANGUAGE_NAMES = { zh: "中文", en: "English", ko: "한국어", ja: "日本語" };
const LOCALES = { zh: "zh-CN", en: "en-GB", ko: "ko-KR", ja: "ja-JP" };

let texts = {};
export let language = "zh";

export function chosenLanguage() {
  const kept = localStorage.getItem("lang");
  if (LANGUAGES.includes(kept)) return kept;
  for (const tag of navigator.languages || [navigator.language || ""]) {
    const primary = tag.toLowerCase().split("-")[0];
    if (LANGUAGES.includes(primary)) return primary;
  }
  return "zh";
}

export async function load(lang) {
  const early = window.errandsCatalogue; // requested by boot.js while the modules loaded
  if (early && early.language === lang) {
    texts = await early.texts;
  } else {
    const response = await fetch(`/app/i18n/${lang}.json`);
    if (!response.ok) throw new Error(`catalogue ${lang}: ${response.status}`);
    texts = await response.json();
  }
  language = lang;
  document.documentElement.lang = lang;
}

export function t(key, values = {}) {
  const text = texts[key];
  if (text === undefined) {
    console.error("missing text", key);
    return "";
  }
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in values ? String(values[name]) : `{${name}}`));
}

export function has(key) {
  return key in texts;
}

// Fill every element marked data-i18n (its text) and data-i18n-label (its aria-label).
export function translate(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  document.title = t("app.title");
}

const locale = () => LOCALES[language];

export function time(date) {
  return new Intl.DateTimeFormat(locale(), { hour: "2-digit", minute: "2-digit" }).format(date);
}

export function dateTime(date) {
  return new Intl.DateTimeFormat(locale(), { dateStyle: "short", timeStyle: "short" }).format(date);
}

export function distance(metres) {
  if (metres < 1000) {
    return new Intl.NumberFormat(locale(), { style: "unit", unit: "meter", maximumFractionDigits: 0 }).format(
      Math.round(metres / 10) * 10,
    );
  }
  return new Intl.NumberFormat(locale(), { style: "unit", unit: "kilometer", maximumFractionDigits: 1 }).format(
    metres / 1000,
  );
}

export function weight(kg) {
  return new Intl.NumberFormat(locale(), { style: "unit", unit: "kilogram", maximumFractionDigits: 1 }).format(kg);
}

// A span of time: hours and minutes ("1 hr 5 min"), minutes and seconds under ten minutes.
export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return new Intl.NumberFormat(locale(), { style: "unit", unit: "second", unitDisplay: "short" }).format(s);
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const h = new Intl.NumberFormat(locale(), { style: "unit", unit: "hour", unitDisplay: "short" }).format(hours);
  const m = new Intl.NumberFormat(locale(), { style: "unit", unit: "minute", unitDisplay: "short" }).format(minutes);
  if (hours) return `${h} ${m}`;
  if (s >= 600 || s % 60 === 0) return m;
  // Under ten minutes the seconds count too (an offer's countdown).
  const rest = new Intl.NumberFormat(locale(), { style: "unit", unit: "second", unitDisplay: "short" }).format(s % 60);
  return `${m} ${rest}`;
}
