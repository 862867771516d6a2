// The volunteer app: enrolment, duty, offers, legs in hand, and the offline outbox.
import * as i18n from "./i18n.js";
import { t } from "./i18n.js";
import { ApiError, call, explain, newKey, token } from "./api.js";
import * as outbox from "./outbox.js";
import * as whereabouts from "./location.js";
import { configuredApps, mapLinks } from "./maps.js";

const $ = (id) => document.getElementById(id);
const CACHE = { me: "errands.me", assignments: "errands.assignments", device: "errands.device" };
// A sign-out the server has not heard of yet (made offline): the device and its token, kept only to
// revoke that token once the connection is back, so a phone signed out offline is signed out for good.
const SIGN_OUT = "errands.sign_out";
const ANNOUNCE_AT_S = [60, 30, 10];
const REPORT_REASONS = ["cannot_reach_pickup", "recipient_absent", "vehicle_problem", "unsafe", "other"];
const PHOTO_MAX_SIDE = 1280;

const state = {
  me: null,
  meAt: Date.now(),
  assignments: { offers: [], legs: [] },
  savedAt: null,
  fromCache: false,
  online: navigator.onLine,
  queued: [],
  announced: new Map(),
  expired: new Set(),
  answered: new Set(),
  photos: new Map(),
  poll: null,
  backoffS: 1,
  replayTimer: null,
  wakeLock: null,
  prefs: null,
};

// ---------- small helpers

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

// A message to the volunteer: `words` is a function, so that it can be said again in another language.
function notify(words, kind = "error") {
  state.notice = { words, kind };
  const notice = $("notice");
  const message = words ? words() : "";
  notice.textContent = message;
  notice.className = kind === "error" ? "notice" : "notice info";
  notice.hidden = !message;
}

function show(screen) {
  for (const name of ["welcome", "pending", "work"]) $(`screen-${name}`).hidden = name !== screen;
  $("sign-out").hidden = screen === "welcome";
  state.screen = screen;
}

function label(prefix, value) {
  return value && i18n.has(`${prefix}.${value}`) ? t(`${prefix}.${value}`) : value || "";
}

function firstName(name) {
  return (name || "").trim().split(/\s+/)[0];
}

function saveJSON(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // storage full: the live view still works
  }
}

function loadJSON(key) {
  try {
    return JSON.parse(localStorage.getItem(key) || "null");
  } catch {
    return null;
  }
}

// ---------- connection and sync badge

function setOnline(online) {
  state.online = online;
  const pill = $("connection");
  pill.textContent = online ? t("connection.online") : t("connection.offline");
  pill.className = online ? "pill" : "pill offline";
  renderDuty();
}

async function refreshQueued() {
  state.queued = await outbox.queued();
  const badge = $("sync-badge");
  badge.hidden = state.queued.length === 0;
  badge.textContent = t("sync.waiting", { count: state.queued.length });
}

let replaying = false;
let replayAgain = false;
async function replay() {
  if (!token.get()) return;
  if (replaying) {
    replayAgain = true; // an action queued meanwhile goes as soon as this replay ends
    return;
  }
  replaying = true;
  replayAgain = false;
  try {
    const result = await outbox.replay();
    for (const { entry, error } of result.refused) {
      notify(() => t("sync.refused", { action: t(`action.${entry.kind}`), reason: explain(error) }));
    }
    if (result.stopped instanceof ApiError && result.stopped.status === 401) return signedOut();
    clearTimeout(state.replayTimer);
    state.replayTimer = null;
    if (result.stopped) {
      state.backoffS = Math.min(state.backoffS * 2, 60);
      state.replayTimer = setTimeout(() => {
        state.replayTimer = null;
        replay();
      }, state.backoffS * 1000);
    } else {
      state.backoffS = 1;
    }
    if (result.sent || result.refused.length) restartPoll();
  } finally {
    replaying = false;
    await refreshQueued();
    renderAll();
  }
  whereabouts.flush();
  if (replayAgain && !state.replayTimer) replay();
}

async function act(kind, path, body, extra = {}) {
  if (extra.offer_id) state.answered.add(extra.offer_id);
  await outbox.enqueue({ kind, path, body: { ...body }, key: newKey(), occurred_at: body.occurred_at, ...extra });
  await refreshQueued();
  renderAll();
  replay();
}

// ---------- enrolment

async function enrol(linkToken) {
  try {
    const response = await call("POST", `/v1/enrolments/${encodeURIComponent(linkToken)}`);
    const issued = await response.json();
    token.set(issued.volunteer_token);
    localStorage.setItem(CACHE.device, issued.device_id);
    notify(() => t("enrol.done"), "info");
    await start();
  } catch (error) {
    notify(() => (error instanceof ApiError && error.status === 404 ? t("enrol.unknown") : explain(error)));
    show("welcome");
  }
}

function tokenFromLink(text) {
  const value = text.trim();
  const hash = value.indexOf("#");
  if (hash >= 0) return new URLSearchParams(value.slice(hash + 1)).get("token");
  return /^[A-Za-z0-9_-]{16,}$/.test(value) ? value : null;
}

async function signUp(form) {
  const data = new FormData(form);
  const body = { invite_code: String(data.get("invite_code")).trim(), name: String(data.get("name")).trim() };
  const phone = String(data.get("phone") || "").trim();
  if (phone) body.phone = phone;
  body.languages = [i18n.language];
  if (body.invite_code.length < 8 || !body.name) return notify(() => t("signup.incomplete"));
  try {
    const response = await call("POST", "/v1/signups", { body });
    const created = await response.json();
    token.set(created.volunteer_token);
    localStorage.setItem(CACHE.device, created.device_id);
    notify(null);
    await start();
  } catch (error) {
    notify(() => (error instanceof ApiError && error.status === 404 ? t("signup.unknown_code") : explain(error)));
  }
}

async function signOut() {
  const device = localStorage.getItem(CACHE.device);
  if (device && token.get()) {
    localStorage.setItem(SIGN_OUT, JSON.stringify({ device, token: token.get() }));
    await sendSignOut();
  }
  signedOut(() => t("settings.signed_out"));
}

// Revoke the token of a sign-out not yet sent; kept for the next time the phone is online if the
// network fails (or the server does, for a moment). Any other answer ends it: a token the server
// refuses (401) or a device it does not know (404) is signed out already.
async function sendSignOut() {
  let pending = null;
  try {
    pending = JSON.parse(localStorage.getItem(SIGN_OUT));
  } catch {
    pending = null;
  }
  if (!pending?.device || !pending?.token) {
    localStorage.removeItem(SIGN_OUT);
    return;
  }
  try {
    await call("DELETE", `/v1/me/devices/${pending.device}`, { bearer: pending.token });
  } catch (error) {
    if (!(error instanceof ApiError) || error.status >= 500 || error.status === 429) return;
  }
  localStorage.removeItem(SIGN_OUT);
}

async function signedOut(message = () => t("problem.unauthorized")) {
  token.forget();
  for (const key of Object.values(CACHE)) localStorage.removeItem(key);
  state.poll?.abort();
  state.poll = null;
  whereabouts.stop();
  await outbox.clear();
  await refreshQueued();
  state.me = null;
  state.prefs = null;
  renderPreferences();
  state.assignments = { offers: [], legs: [] };
  show("welcome");
  notify(message, "info");
  window.scrollTo(0, 0);
  $("main").focus();
}

// ---------- the volunteer's record: vetting, duty, shift clock, rest

async function refreshMe() {
  try {
    const response = await call("GET", "/v1/me");
    state.me = await response.json();
    state.meAt = Date.now();
    saveJSON(CACHE.me, { me: state.me, at: state.meAt });
    if (!state.prefs) loadPreferences(); // once online and signed in (the switch waits till then)
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return signedOut();
    if (!state.me) {
      const kept = loadJSON(CACHE.me);
      if (kept) {
        state.me = kept.me;
        state.meAt = kept.at;
      }
    }
  }
  route();
}

function route() {
  if (!state.me) return show("work");
  if (state.me.vetting_status !== "approved") {
    show("pending");
    $("pending-text").textContent = t(`pending.${state.me.vetting_status}`);
    return;
  }
  show("work");
  renderPreferences();
  if (state.me.on_duty) whereabouts.start((error) => {
    if (error.code === error.PERMISSION_DENIED) notify(() => t("location.denied"));
  });
  else whereabouts.stop();
  renderDuty();
}

function renderDuty() {
  const me = state.me;
  const button = $("duty-switch");
  if (!me) {
    $("duty-state").textContent = "";
    button.textContent = t("duty.go_on");
    button.disabled = true;
    return;
  }
  $("duty-state").textContent = me.on_duty ? t("duty.on") : t("duty.off");
  $("duty-state").className = me.on_duty ? "state on" : "state off";
  button.textContent = me.on_duty ? t("duty.go_off") : t("duty.go_on");
  button.className = me.on_duty ? "big on" : "big";
  button.disabled = !state.online;
  if (state.online) button.removeAttribute("aria-describedby");
  else button.setAttribute("aria-describedby", "rest-owed");
  const elapsed = (Date.now() - state.meAt) / 1000;
  const shift = me.shift_on_duty_s + (me.on_duty ? elapsed : 0);
  $("shift-clock").textContent = shift > 0 ? t("duty.shift", { duration: i18n.duration(shift) }) : "";
  const rest = me.rest_owed_until ? new Date(me.rest_owed_until) : null;
  let restText = "";
  if (rest && rest > new Date()) {
    restText = t("duty.rest_owed", { time: i18n.time(rest), duration: i18n.duration((rest - Date.now()) / 1000) });
  } else if (me.limit_reached && me.limit_reached !== "rest_owed" && me.may_work_from) {
    restText = t(`duty.limit.${me.limit_reached}`, { time: i18n.dateTime(new Date(me.may_work_from)) });
  }
  if (!state.online) restText = [restText, t("duty.offline")].filter(Boolean).join(" ");
  $("rest-owed").textContent = restText;
}

async function toggleDuty() {
  const button = $("duty-switch");
  button.disabled = true;
  try {
    const response = await call("PUT", "/v1/me/duty", { body: { on_duty: !state.me.on_duty } });
    state.me = await response.json();
    state.meAt = Date.now();
    saveJSON(CACHE.me, { me: state.me, at: state.meAt });
    notify(null);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return signedOut();
    notify(() => explain(error));
  } finally {
    route();
  }
}

// ---------- assignments: long polling with ETag

function restartPoll() {
  if (state.poll) state.poll.abort();
}

async function pollLoop() {
  let etag = null;
  while (token.get()) {
    const controller = new AbortController();
    state.poll = controller;
    try {
      const headers = etag ? { "If-None-Match": etag } : {};
      const wait = etag ? 25 : 0;
      const response = await call("GET", `/v1/me/assignments?wait=${wait}`, { headers, signal: controller.signal });
      setOnline(true);
      if (response.status === 200) {
        etag = response.headers.get("ETag");
        state.assignments = await response.json();
        state.savedAt = Date.now();
        state.fromCache = false;
        saveJSON(CACHE.assignments, { assignments: state.assignments, at: state.savedAt });
        refreshMe();
      }
      state.fromCache = false;
      renderAll();
      replay();
    } catch (error) {
      if (controller.signal.aborted) {
        if (!token.get()) return;
        etag = null;
        continue;
      }
      if (error instanceof ApiError && error.status === 401) return signedOut();
      if (!(error instanceof ApiError)) {
        setOnline(false);
        state.fromCache = true;
        renderAll();
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(state.backoffS, 10) * 1000));
    }
  }
}

// ---------- offers

function queuedFor(field, id) {
  return state.queued.filter((entry) => entry[field] === id);
}

function offerCard(offer) {
  const leg = offer.leg;
  const card = el("li", { class: "card offer", "data-offer-id": offer.id, "aria-labelledby": `offer-${offer.id}` });
  const heading = el("h3", { id: `offer-${offer.id}` }, label("kind", leg.kind) || t("kind.errand"), " ");
  heading.append(el("span", { class: `tag ${leg.priority}`, text: label("priority", leg.priority) }));
  card.append(heading);
  card.append(details(leg, { offer }));
  card.append(el("p", {}, el("span", { class: "countdown", "data-expires": offer.expires_at })));
  const pending = queuedFor("offer_id", offer.id)[0];
  if (pending) {
    card.append(el("p", { class: "queued", text: t(`offers.${pending.kind}_queued`) }));
  } else {
    card.append(
      el(
        "div",
        { class: "actions" },
        el("button", { type: "button", class: "primary", text: t("offers.accept"), onclick: () => act("accept", `/v1/me/offers/${offer.id}/accept`, {}, { offer_id: offer.id }) }),
        el("button", { type: "button", text: t("offers.decline"), onclick: () => act("decline", `/v1/me/offers/${offer.id}/decline`, {}, { offer_id: offer.id }) }),
      ),
    );
  }
  return card;
}

function itemsText(items) {
  return (items || []).map((item) => t("item", { quantity: item.quantity, name: item.name })).join(", ");
}

function totalWeight(items) {
  const kg = (items || []).reduce((sum, item) => sum + (item.weight_kg || 0) * (item.quantity || 1), 0);
  return kg > 0 ? i18n.weight(kg) : "";
}

function metres(a, b) {
  const rad = Math.PI / 180;
  const h =
    Math.sin(((b.lat - a.lat) * rad) / 2) ** 2 +
    Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(((b.lon - a.lon) * rad) / 2) ** 2;
  return 2 * 6371000 * Math.asin(Math.sqrt(h));
}

function stopName(stop) {
  return stop.address || stop.name || `${Number(stop.lat).toFixed(4)}, ${Number(stop.lon).toFixed(4)}`;
}

// The facts of a leg, as a description list: what an offer shows, and more once the leg is yours.
function details(leg, { offer = null } = {}) {
  const list = el("dl");
  const row = (key, value) => {
    if (value === undefined || value === null || value === "") return;
    list.append(el("dt", { text: t(key) }), el("dd", { text: String(value) }));
  };
  const { pickup = {}, dropoff = {} } = leg;
  row("leg.pickup", stopName(pickup));
  if (offer) {
    const area = dropoff.district || dropoff.area;
    row(
      "leg.dropoff_area",
      area || (pickup.lat !== undefined && dropoff.lat !== undefined ? t("leg.from_pickup", { distance: i18n.distance(metres(pickup, dropoff)) }) : ""),
    );
    row("leg.distance", t("leg.from_you", { distance: i18n.distance(offer.distance_m) }));
  } else {
    row("leg.dropoff", stopName(dropoff));
    row("leg.recipient", firstName(dropoff.recipient_name));
    row("leg.access_notes", dropoff.notes);
    row("leg.notes", leg.notes);
    // Estimates for what is still ahead, as the phone knows it (a queued report counts).
    const { status } = localStatus(leg);
    const eta = status === "assigned" ? leg.pickup_eta : status === "picked_up" ? leg.dropoff_eta : null;
    if (eta) row(status === "assigned" ? "leg.eta_pickup" : "leg.eta_dropoff", i18n.time(new Date(eta)) + (leg.eta_late ? ` (${t("leg.late")})` : ""));
  }
  row("leg.items", itemsText(leg.items));
  row("leg.weight", totalWeight(leg.items));
  if (leg.deliver_by) row("leg.deliver_by", i18n.dateTime(new Date(leg.deliver_by)));
  const route = leg.route || offer?.route;
  if (route && Array.isArray(route.stops) && route.stops.length) {
    const stops = el("ol", { class: "stops", "aria-label": t("leg.route") });
    for (const stop of route.stops) {
      const kind = stop.kind && i18n.has(`stop.${stop.kind}`) ? `${t(`stop.${stop.kind}`)}: ` : "";
      stops.append(el("li", { text: kind + stopName(stop) }));
    }
    const wrap = el("div", {}, el("p", { class: "muted", text: t("leg.route") }), stops);
    const holder = el("div");
    holder.append(list, wrap);
    return holder;
  }
  return list;
}

function tickOffers() {
  const announcer = $("offer-announcer");
  let changed = false;
  for (const span of document.querySelectorAll("#offers .countdown")) {
    const left = (new Date(span.dataset.expires) - Date.now()) / 1000;
    const card = span.closest("li");
    const id = card.dataset.offerId;
    if (left <= 0) {
      state.expired.add(id);
      card.remove();
      announcer.textContent = t("offers.expired");
      changed = true;
      continue;
    }
    span.textContent = t("offers.expires_in", { duration: i18n.duration(left) });
    span.classList.toggle("soon", left <= 10);
    const said = state.announced.get(id) || new Set();
    for (const threshold of ANNOUNCE_AT_S) {
      if (left <= threshold && !said.has(threshold)) {
        for (const earlier of ANNOUNCE_AT_S) if (earlier >= threshold) said.add(earlier);
        announcer.textContent = t("offers.announce", { title: card.querySelector("h3").textContent, duration: i18n.duration(threshold) });
      }
    }
    state.announced.set(id, said);
  }
  if (changed) $("offers-empty").hidden = document.querySelectorAll("#offers li").length > 0;
}

const offerCards = new Map();

function renderOffers() {
  const list = $("offers");
  const offers = state.assignments.offers.filter((o) => !state.expired.has(o.id) && new Date(o.expires_at) > new Date());
  // A card the server no longer lists (taken by someone else, withdrawn, expired) goes, and is said to.
  const now = new Set(offers.map((o) => o.id));
  const answered = new Set(state.queued.map((entry) => entry.offer_id));
  for (const item of list.querySelectorAll("li[data-offer-id]")) {
    const id = item.dataset.offerId;
    if (!now.has(id) && !answered.has(id) && !state.answered.has(id)) $("offer-announcer").textContent = t("offers.expired");
  }
  // Cards whose offer did not change stay as they are (focus and screen reader position kept).
  const cards = offers.map((offer) => {
    const signature = JSON.stringify([offer, queuedFor("offer_id", offer.id).length, i18n.language]);
    const known = offerCards.get(offer.id);
    const built = known && known.signature === signature ? known.card : offerCard(offer);
    return [offer.id, { card: built, signature }];
  });
  offerCards.clear();
  for (const [id, value] of cards) offerCards.set(id, value);
  const focused = document.activeElement;
  if (cards.length !== list.children.length || cards.some(([, { card }], i) => list.children[i] !== card)) {
    list.replaceChildren(...cards.map(([, { card }]) => card));
  }
  if (focused && focused !== document.activeElement && list.contains(focused)) focused.focus();
  $("offers-empty").hidden = offers.length > 0;
  tickOffers();
}

// ---------- legs in hand

const legCards = new Map();

// One link per map app the dispatcher offers (see maps.js): the first reads "Navigate", the others
// name their app.
function navigateLinks(target) {
  const apps = configuredApps(document.querySelector('meta[name="errands-map-apps"]')?.content);
  const apple = /iPhone|iPad|iPod|Macintosh/.test(navigator.userAgent) && "ontouchend" in document;
  const links = mapLinks(apps, { lat: target.lat, lon: target.lon, name: stopName(target) }, { apple });
  return links.map(({ app, href }, index) =>
    el("a", {
      class: "button",
      href,
      rel: "noopener",
      "data-map-app": app,
      text: index === 0 ? t("leg.navigate") : t("leg.navigate_with", { app: t(`maps.${app}`) }),
    }),
  );
}

function localStatus(leg) {
  const queued = queuedFor("leg_id", leg.id);
  const last = queued[queued.length - 1];
  return { status: last ? { picked_up: "picked_up", delivered: "delivered", problem: "problem" }[last.kind] : leg.status, queued: queued.length > 0 };
}

async function downscale(file) {
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  const scale = Math.min(1, PHOTO_MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = el("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close?.();
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.8));
}

function deliveryForm(leg) {
  const codeId = `code-${leg.id}`;
  const photoId = `photo-${leg.id}`;
  const hint = el("p", { class: "muted", id: `photo-state-${leg.id}`, "aria-live": "polite" });
  const error = el("p", { class: "notice", role: "alert", hidden: true });
  const form = el(
    "form",
    { class: "delivery", novalidate: true },
    el("label", { for: codeId }, el("span", { text: t("leg.code") })),
    el("input", { id: codeId, name: "code", inputmode: "numeric", pattern: "[0-9]*", autocomplete: "one-time-code", maxlength: "12" }),
    el("label", { for: photoId }, el("span", { text: t("leg.photo") })),
    el("input", { id: photoId, name: "photo", type: "file", accept: "image/*", capture: "environment" }),
    hint,
    error,
    el("div", { class: "actions" }, el("button", { type: "submit", class: "primary", text: t("leg.delivered") })),
  );
  form.elements.photo.addEventListener("change", async () => {
    const file = form.elements.photo.files[0];
    if (!file) return;
    hint.textContent = t("leg.photo_preparing");
    try {
      state.photos.set(leg.id, await downscale(file));
      hint.textContent = t("leg.photo_ready");
    } catch {
      state.photos.delete(leg.id);
      hint.textContent = t("leg.photo_unreadable");
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const code = form.elements.code.value.trim();
    const photo = state.photos.get(leg.id);
    const occurred_at = new Date().toISOString();
    if (photo && !code) {
      state.photos.delete(leg.id);
      return act("delivered", `/v1/me/legs/${leg.id}/delivered`, { occurred_at }, { leg_id: leg.id, photo });
    }
    if (!/^[0-9]{4,12}$/.test(code)) {
      error.textContent = t("leg.code_needed");
      error.hidden = false;
      form.elements.code.focus();
      return;
    }
    act("delivered", `/v1/me/legs/${leg.id}/delivered`, { confirmation_code: code, occurred_at }, { leg_id: leg.id });
  });
  return form;
}

function problemForm(leg) {
  const selectId = `reason-${leg.id}`;
  const select = el("select", { id: selectId });
  for (const reason of REPORT_REASONS) select.append(el("option", { value: reason, text: t(`problem_reason.${reason}`) }));
  const box = el(
    "details",
    { class: "problem" },
    el("summary", { text: t("leg.report") }),
    el("label", { for: selectId }, el("span", { text: t("leg.reason") })),
    select,
    el("div", { class: "actions" }, el("button", {
      type: "button",
      class: "danger",
      text: t("leg.report_send"),
      onclick: () => act("problem", `/v1/me/legs/${leg.id}/problem`, { reason: select.value, occurred_at: new Date().toISOString() }, { leg_id: leg.id }),
    })),
  );
  return box;
}

function legCard(leg, index) {
  const { status, queued } = localStatus(leg);
  const card = el("li", { class: "card leg", "data-leg-id": leg.id, "aria-labelledby": `leg-${leg.id}` });
  const heading = el("h3", { id: `leg-${leg.id}` }, `${index + 1}. `, label("kind", leg.kind) || t("kind.errand"), " ");
  heading.append(el("span", { class: `tag ${leg.priority}`, text: label("priority", leg.priority) }));
  card.append(heading);
  card.append(el("p", { class: "state", text: t(`status.${status}`) + (leg.flagged ? ` — ${t("status.flagged")}` : "") }));
  if (queued) card.append(el("p", { class: "queued", text: t("sync.this_waits") }));
  card.append(details(leg));
  if (status === "assigned") {
    card.append(el("div", { class: "actions" }, ...navigateLinks(leg.pickup), el("button", {
      type: "button",
      class: "primary",
      text: t("leg.picked_up"),
      onclick: () => act("picked_up", `/v1/me/legs/${leg.id}/picked-up`, { occurred_at: new Date().toISOString() }, { leg_id: leg.id }),
    })));
  } else if (status === "picked_up") {
    card.append(el("div", { class: "actions" }, ...navigateLinks(leg.dropoff)));
    card.append(deliveryForm(leg));
  }
  if (status === "assigned" || status === "picked_up") card.append(problemForm(leg));
  return card;
}

function renderLegs() {
  const list = $("legs");
  const legs = state.assignments.legs;
  // Cards whose content did not change stay as they are: a code being typed is not lost.
  const keep = new Map();
  const children = legs.map((leg, index) => {
    const signature = JSON.stringify([leg, index, localStatus(leg), i18n.language]);
    const known = legCards.get(leg.id);
    const card = known && known.signature === signature ? known.card : legCard(leg, index);
    keep.set(leg.id, { card, signature });
    return card;
  });
  legCards.clear();
  for (const [id, value] of keep) legCards.set(id, value);
  const focused = document.activeElement;
  list.replaceChildren(...children);
  if (focused && list.contains(focused)) focused.focus();
  $("legs-empty").hidden = legs.length > 0;
  const stale = $("legs-stale");
  stale.hidden = !(state.fromCache && state.savedAt);
  if (!stale.hidden) stale.textContent = t("legs.stale", { time: i18n.dateTime(new Date(state.savedAt)) });
}

function renderAll() {
  if (!token.get()) return;
  renderDuty();
  renderOffers();
  renderLegs();
}

// ---------- settings: language, wake lock, install note

function fillLanguages() {
  const select = $("language");
  select.replaceChildren(
    ...i18n.LANGUAGES.map((lang) => el("option", { value: lang, lang, text: i18n.LANGUAGE_NAMES[lang], selected: lang === i18n.language })),
  );
}

async function changeLanguage(lang) {
  localStorage.setItem("lang", lang);
  // The page itself then comes in this language too, before any script runs.
  document.cookie = `lang=${lang}; path=/app/; max-age=31536000; SameSite=Lax`;
  await i18n.load(lang);
  i18n.translate();
  fillLanguages();
  legCards.clear();
  offerCards.clear();
  setOnline(state.online);
  await refreshQueued();
  if (state.notice) notify(state.notice.words, state.notice.kind);
  $("offer-announcer").textContent = "";
  if (state.screen === "pending" && state.me) $("pending-text").textContent = t(`pending.${state.me.vetting_status}`);
  renderPreferences();
  if (state.prefs?.sms_on_offer) setSms(true); // the texts come in the new language too
  renderAll();
}

async function setWakeLock(on) {
  try {
    if (on) {
      state.wakeLock = await navigator.wakeLock.request("screen");
    } else {
      await state.wakeLock?.release();
      state.wakeLock = null;
    }
  } catch {
    $("wake-lock").checked = false;
    notify(() => t("settings.wake_lock_failed"));
  }
}

// An SMS when a new offer waits: the app cannot be woken by Web Push where push services are out
// of reach (mainland China), so the volunteer may ask the centre's SMS gateway instead.
async function loadPreferences() {
  try {
    const response = await call("GET", "/v1/me/preferences");
    state.prefs = await response.json();
  } catch {
    return; // offline: the switch shows once the record can be read
  }
  renderPreferences();
}

function renderPreferences() {
  const prefs = state.prefs;
  $("sms-row").hidden = !prefs || !token.get() || state.me?.vetting_status !== "approved";
  if (!prefs) return;
  const box = $("sms-on-offer");
  box.checked = prefs.sms_on_offer;
  box.disabled = !prefs.has_phone;
  $("sms-hint").textContent = t(prefs.has_phone ? "settings.sms_hint" : "settings.sms_no_phone");
}

async function setSms(on) {
  try {
    const response = await call("PUT", "/v1/me/preferences", { body: { sms_on_offer: on, language: i18n.language } });
    state.prefs = await response.json();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return signedOut();
    notify(() => explain(error));
  }
  renderPreferences();
}

function installNote() {
  const standalone = matchMedia("(display-mode: standalone)").matches || navigator.standalone;
  $("install-note").hidden = standalone || localStorage.getItem("errands.install-note") === "seen";
}

// ---------- start

async function start() {
  const kept = loadJSON(CACHE.assignments);
  if (kept) {
    state.assignments = kept.assignments;
    state.savedAt = kept.at;
    state.fromCache = true;
  }
  await refreshQueued();
  await refreshMe();
  renderAll();
  replay();
  if (!state.poll) pollLoop();
}

function bind() {
  $("enrol-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const linkToken = tokenFromLink($("enrol-link").value);
    if (!linkToken) return notify(() => t("enrol.bad_link"));
    enrol(linkToken);
  });
  $("signup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signUp(event.target);
  });
  $("pending-check").addEventListener("click", refreshMe);
  $("duty-switch").addEventListener("click", toggleDuty);
  $("sms-on-offer").addEventListener("change", (event) => setSms(event.target.checked));
  $("sign-out").addEventListener("click", signOut);
  $("language").addEventListener("change", (event) => changeLanguage(event.target.value));
  $("install-dismiss").addEventListener("click", () => {
    localStorage.setItem("errands.install-note", "seen");
    installNote();
  });
  if ("wakeLock" in navigator) {
    $("wake-row").hidden = false;
    $("wake-lock").addEventListener("change", (event) => setWakeLock(event.target.checked));
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && $("wake-lock").checked) setWakeLock(true);
    });
  }
  window.addEventListener("online", () => {
    setOnline(true);
    sendSignOut();
    state.backoffS = 1;
    replay();
    restartPoll();
  });
  window.addEventListener("offline", () => {
    setOnline(false);
    restartPoll();
  });
  setInterval(() => {
    tickOffers();
    if (state.screen === "work") renderDuty();
  }, 1000);
  setInterval(() => {
    if (token.get()) refreshMe();
  }, 60000);
}

async function boot() {
  await i18n.load(i18n.chosenLanguage());
  i18n.translate();
  fillLanguages();
  setOnline(navigator.onLine);
  bind();
  installNote();
  sendSignOut();
  if ("serviceWorker" in navigator) navigator.serviceWorker.register("/app/sw.js", { scope: "/app/" }).catch(() => undefined);
  const linkToken = new URLSearchParams(window.location.hash.slice(1)).get("token");
  if (linkToken) {
    history.replaceState(null, "", window.location.pathname);
    await enrol(linkToken);
  } else if (token.get()) {
    await start();
  } else {
    show("welcome");
  }
  document.body.dataset.ready = "true";
}

boot().catch((error) => {
  console.error(error);
  document.body.dataset.error = String(error?.stack || error);
});
