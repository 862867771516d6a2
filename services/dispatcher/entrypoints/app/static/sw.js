// The service worker: the app's shell is cached so the app opens without a network. The API is never
// cached here: the app keeps the last assignments itself and marks them as such.
const VERSION = "__APP_VERSION__";
const CACHE = `errands-app-${VERSION}`;
const SHELL = [
  "/app/",
  "/app/app.css",
  "/app/boot.js",
  "/app/app.js",
  "/app/api.js",
  "/app/i18n.js",
  "/app/outbox.js",
  "/app/location.js",
  "/app/maps.js",
  "/app/manifest.webmanifest",
  "/app/icon.svg",
  "/app/icon-192.png",
  "/app/i18n/zh.json",
  "/app/i18n/en.json",
  "/app/i18n/ko.json",
  "/app/i18n/ja.json",
  "__IDB_URL__",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((name) => name.startsWith("errands-app-") && name !== CACHE).map((name) => caches.delete(name))))
      .then(() => self.clients.claim()),
  );
});

// The shell: from the cache at once, refreshed in the background (the next start shows a new version);
// from the network when not cached yet. Vendored files never change at their address.
self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (!(url.pathname.startsWith("/app/") || url.pathname.startsWith("/static/vendor/"))) return;
  const key = url.pathname;
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      const cached = await cache.match(key);
      const fresh = fetch(event.request).then((response) => {
        if (response.ok) event.waitUntil(cache.put(key, response.clone()));
        return response;
      });
      if (cached) {
        if (!url.pathname.startsWith("/static/vendor/")) event.waitUntil(fresh.catch(() => undefined));
        return cached;
      }
      return fresh;
    })(),
  );
});
