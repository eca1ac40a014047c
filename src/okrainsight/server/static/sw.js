// OkraInsight service worker: caches the live page, the ONNX runtime and the model so the app
// installs to the home screen and works offline after the first visit.
// The server replaces __OKRA_VERSION__ with a hash of the page, runtime, model and grader files, and
// the EXTRA list with the grader's CNN URL when the served grader has one.
const CACHE = 'okra-__OKRA_VERSION__';
const PRECACHE = [
  '/',
  '/static/app.js',
  '/static/grade.js',
  '/static/style.css',
  '/manifest.webmanifest',
  '/icons/icon-192.png',
  '/icons/icon-512.png',
  '/model/card.json',
  '/model/model.onnx',
  '/grader/info.json',
  '/static/vendor/ort.wasm.min.js',
  '/static/vendor/ort-wasm-simd-threaded.mjs',
  '/static/vendor/ort-wasm-simd-threaded.wasm',
];
const EXTRA = /*__OKRA_EXTRA__*/[];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(PRECACHE.concat(EXTRA))).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('okra-') && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

// Network first for the page, the model and the API (fresh when online), cache when offline;
// cache first for the versioned runtime files. API calls (POST) are never cached.
self.addEventListener('fetch', (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== 'GET' || url.origin !== self.location.origin || url.pathname.startsWith('/api/')) return;
  if (url.pathname.startsWith('/static/vendor/')) {
    event.respondWith(caches.match(req).then((hit) => hit || fetchAndCache(req)));
    return;
  }
  event.respondWith(fetchAndCache(req).catch(() => caches.match(req, { ignoreSearch: true })
    .then((hit) => hit || Response.error())));
});

async function fetchAndCache(req) {
  const res = await fetch(req);
  if (res.ok && res.type === 'basic') {
    const copy = res.clone();
    caches.open(CACHE).then((c) => c.put(req, copy));
  }
  return res;
}
