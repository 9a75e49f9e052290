// Service worker: precaches the app shell (the list is filled in at build time) so the app loads and works
// with the network off. Sync traffic is never cached: it goes to the network, and the app queues writes while
// it fails.
const CACHE = 'journal-__VERSION__';
const PRECACHE = self.__PRECACHE__;
const NETWORK_ONLY = ['/sync/', '/signin', '/dummy-signin', '/health'];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(PRECACHE)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== 'GET' || url.origin !== location.origin) return;
  if (NETWORK_ONLY.some((p) => url.pathname.startsWith(p))) return;
  if (req.mode === 'navigate') {
    // Network first (a deploy shows up at once), the cached shell when offline.
    event.respondWith(fetch(req).catch(() => caches.match('/', { ignoreSearch: true })));
    return;
  }
  event.respondWith(caches.match(req).then((hit) => hit ?? fetch(req)));
});
