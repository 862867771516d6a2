// The outbox: every action the volunteer takes is stored here first, with its Idempotency-Key and the
// time it was done, then replayed in order. A replay of an action the server already took is answered
// from the server's record of that key, so replaying twice changes nothing.
import { openDB } from "__IDB_URL__";
import { ApiError, call } from "./api.js";

const database = openDB("errands-app", 1, {
  upgrade(db) {
    db.createObjectStore("outbox", { keyPath: "seq", autoIncrement: true });
    db.createObjectStore("fixes", { keyPath: "seq", autoIncrement: true });
  },
});

// action: {path, body, leg_id?, offer_id?, kind, key, occurred_at, photo?: Blob}
export async function enqueue(action) {
  const db = await database;
  await db.add("outbox", action);
}

export async function queued() {
  return (await database).getAll("outbox");
}

export async function clear() {
  const db = await database;
  await db.clear("outbox");
  await db.clear("fixes");
}

// One replayer at a time, across tabs where the Web Locks API exists, else within the page.
let tail = Promise.resolve();
function exclusively(work) {
  if (navigator.locks) return navigator.locks.request("errands-outbox", work);
  const run = tail.then(work, work);
  tail = run.catch(() => undefined);
  return run;
}

async function send(db, entry) {
  if (entry.photo && !entry.body.photo_id) {
    // First the photo, under a key of its own; then the delivery naming it.
    const response = await call("POST", `/v1/me/legs/${entry.leg_id}/photos`, {
      raw: entry.photo,
      headers: { "Idempotency-Key": `${entry.key}.photo` },
    });
    const photo = await response.json();
    entry.body = { ...entry.body, photo_id: photo.id };
    await db.put("outbox", entry);
  }
  return call("POST", entry.path, { body: entry.body, headers: { "Idempotency-Key": entry.key } });
}

// Replays the queue in order. Returns {sent, refused: [{entry, error}], stopped: error|null}: a 4xx is
// refused (dropped; the caller shows it), a 5xx or a network error stops the replay until later.
export function replay() {
  return exclusively(async () => {
    const db = await database;
    const result = { sent: 0, refused: [], stopped: null };
    for (const entry of await db.getAll("outbox")) {
      try {
        await send(db, entry);
        await db.delete("outbox", entry.seq);
        result.sent += 1;
      } catch (error) {
        if (error instanceof ApiError && error.status >= 400 && error.status < 500 && error.status !== 401 && error.status !== 429) {
          await db.delete("outbox", entry.seq);
          result.refused.push({ entry, error });
          continue;
        }
        result.stopped = error;
        break;
      }
    }
    return result;
  });
}

// Location fixes taken while they could not be sent, with their times; only the newest few are kept.
const FIX_BACKLOG = 200;

export async function keepFix(fix) {
  const db = await database;
  await db.add("fixes", fix);
  const keys = await db.getAllKeys("fixes");
  for (const key of keys.slice(0, Math.max(0, keys.length - FIX_BACKLOG))) await db.delete("fixes", key);
}

// The fixes waiting, oldest first, each with its `seq`; and dropping those the server took (or refused).
export async function pendingFixes() {
  return (await database).getAll("fixes");
}

export async function dropFixes(seqs) {
  const db = await database;
  const tx = db.transaction("fixes", "readwrite");
  await Promise.all([...seqs.map((seq) => tx.store.delete(seq)), tx.done]);
}

export async function sendFixes(post) {
  return exclusively(async () => {
    const db = await database;
    for (const fix of await db.getAll("fixes")) {
      const { seq, ...report } = fix;
      await post(report); // a failure leaves this fix and the later ones for the next try
      await db.delete("fixes", seq);
    }
  });
}
