// Where the volunteer is, while on duty and the app is open: a fix at most every 30 s or 100 m.
// Fixes go by HTTP (POST /v1/me/location) with the time each was taken: a browser cannot put the
// device's bearer token on a WebSocket handshake, which the location stream requires. Fixes taken
// offline wait in IndexedDB and are sent, oldest first, once the connection returns.
import { ApiError, call } from "./api.js";
import { keepFix, sendFixes } from "./outbox.js";

const EVERY_S = 30;
const EVERY_M = 100;
let watch = null;
let last = null;

function metresBetween(a, b) {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * 6371000 * Math.asin(Math.sqrt(h));
}

async function post(report) {
  try {
    await call("POST", "/v1/me/location", { body: report });
  } catch (error) {
    // A fix the server refuses (too old, say) is dropped; anything else is tried again later.
    if (error instanceof ApiError && error.status >= 400 && error.status < 500 && error.status !== 429) return;
    throw error;
  }
}

export async function flush() {
  try {
    await sendFixes(post);
  } catch {
    // offline still: the backlog waits
  }
}

async function take(position) {
  const fix = {
    lat: position.coords.latitude,
    lon: position.coords.longitude,
    accuracy_m: Math.min(position.coords.accuracy ?? 0, 100000),
    at: new Date(position.timestamp || Date.now()).toISOString(),
  };
  const now = Date.now();
  if (last && now - last.time < EVERY_S * 1000 && metresBetween(last, fix) < EVERY_M) return;
  last = { ...fix, time: now };
  await keepFix(fix);
  await flush();
}

export function start(onError) {
  if (watch !== null || !("geolocation" in navigator)) return;
  watch = navigator.geolocation.watchPosition(take, onError, { enableHighAccuracy: true, maximumAge: 10000 });
}

export function stop() {
  if (watch !== null) navigator.geolocation.clearWatch(watch);
  watch = null;
  last = null;
}
