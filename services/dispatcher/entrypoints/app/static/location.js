// Where the volunteer is, while on duty and the app is open: a fix at most every 30 s or 100 m.
// Every fix is kept in IndexedDB with the time it was taken, then sent, oldest first, on the location
// WebSocket (one connection for the shift; the token rides as the subprotocol `bearer.<token>`, since a
// browser cannot set `Authorization` on a handshake). A fix leaves IndexedDB only once the server has
// acknowledged it. When the socket cannot open, fixes go by HTTP (POST /v1/me/location) instead, and
// the socket is tried again a minute later. Fixes taken offline wait and go once the connection returns.
import { ApiError, call, token } from "./api.js";
import { dropFixes, keepFix, pendingFixes, sendFixes } from "./outbox.js";

const EVERY_S = 30;
const EVERY_M = 100;
const SOCKET_RETRY_MS = 60000;
const PER_MESSAGE = 500; // the stream's own cap on fixes per message
let watch = null;
let last = null;
let socket = null;
let socketFailedAt = 0;
// Messages sent on the open socket, in order, not yet acknowledged: [{seqs, count}].
let unacked = [];
let acked = 0;
const inFlight = new Set();

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

// Acknowledgements are cumulative over the connection: the first messages they cover are done.
async function acknowledged(count) {
  const done = [];
  while (unacked.length && acked + unacked[0].count <= count) {
    const message = unacked.shift();
    acked += message.count;
    done.push(...message.seqs);
  }
  for (const seq of done) inFlight.delete(seq);
  if (done.length) await dropFixes(done);
}

async function answered(event) {
  let body;
  try {
    body = JSON.parse(event.data);
  } catch {
    return;
  }
  await acknowledged(body.accepted ?? 0);
  if (body.status === undefined) return;
  // A problem answers the first message not yet taken: taken none of it. A refusal of the fixes
  // themselves drops them (as over HTTP); a full buffer or too many messages leaves them for later.
  const refused = unacked.shift();
  if (!refused) return;
  for (const seq of refused.seqs) inFlight.delete(seq);
  if (body.status >= 400 && body.status < 500 && body.status !== 429) await dropFixes(refused.seqs);
}

function closed() {
  socket = null;
  unacked = [];
  acked = 0;
  inFlight.clear(); // what was not acknowledged stays in IndexedDB and goes again
}

function open() {
  const bearer = token.get();
  if (!bearer) return;
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  let opened = false;
  try {
    socket = new WebSocket(`${scheme}//${window.location.host}/v1/me/location/stream`, ["errands.v1", `bearer.${bearer}`]);
  } catch {
    socketFailedAt = Date.now();
    socket = null;
    return;
  }
  const mine = socket;
  mine.addEventListener("open", () => {
    opened = true;
    flush();
  });
  mine.addEventListener("message", answered);
  mine.addEventListener("close", () => {
    if (!opened) socketFailedAt = Date.now();
    if (socket === mine) closed();
    // Still on duty and the socket worked: what is left goes by the next one (or by HTTP).
    if (opened && watch !== null) flush();
  });
}

async function sendOnSocket() {
  const fixes = (await pendingFixes()).filter((fix) => !inFlight.has(fix.seq)).slice(0, PER_MESSAGE);
  if (!fixes.length || !socket || socket.readyState !== WebSocket.OPEN) return;
  const seqs = fixes.map((fix) => fix.seq);
  for (const seq of seqs) inFlight.add(seq);
  unacked.push({ seqs, count: fixes.length });
  socket.send(JSON.stringify(fixes.map(({ seq, ...report }) => report)));
}

export async function flush() {
  if (watch === null && !socket) {
    // Off duty: a backlog from the shift still goes, by HTTP.
    return sendFixes(post).catch(() => undefined);
  }
  if (socket?.readyState === WebSocket.OPEN) return sendOnSocket();
  if (socket?.readyState === WebSocket.CONNECTING) return undefined; // sent once it opens
  if (Date.now() - socketFailedAt >= SOCKET_RETRY_MS && navigator.onLine) return open();
  try {
    await sendFixes(post);
  } catch {
    // offline still: the backlog waits
  }
  return undefined;
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
  const open = socket;
  closed();
  open?.close(1000);
}
