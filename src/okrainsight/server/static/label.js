// OkraInsight label page: click points, see the teacher's mask, accept it into the dataset.
// Points are (x, y) pixels of the oriented image (origin top-left); labels 1 okra, 0 not okra.
// For tests: window.okraLabel = {stem, index, points, labels, area, accepted, busy, error}.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const photo = $('photo'), canvas = $('overlay'), ctx = canvas.getContext('2d');
  const st = { stem: null, index: 0, points: [], labels: [], area: 0, accepted: 0, busy: false, error: null, images: [], mask: null };
  window.okraLabel = st;
  let negative = false, seq = 0;

  const status = (t) => { $('status').textContent = t; };

  async function api(path, body) {
    const res = await fetch(path, body === undefined ? {} : {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    });
    const data = await res.json();
    if (!res.ok) throw new Error(data.detail || res.statusText);
    return data;
  }

  function progress() {
    const done = st.images.filter((i) => i.has_mask).length;
    $('progress').textContent = st.images.length
      ? `${st.index + 1} / ${st.images.length} · ${done} labelled` : 'no images';
  }

  function draw() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (st.mask) ctx.drawImage(st.mask, 0, 0);
    const r = Math.max(4, Math.round(canvas.width / 120));
    st.points.forEach(([x, y], i) => {
      ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI);
      ctx.fillStyle = st.labels[i] ? '#3cff5a' : '#ff3c3c'; ctx.fill();
      ctx.lineWidth = Math.max(1, r / 3); ctx.strokeStyle = '#000'; ctx.stroke();
    });
  }

  async function tint(b64) {
    const bmp = await createImageBitmap(await (await fetch('data:image/png;base64,' + b64)).blob());
    const c = document.createElement('canvas'); c.width = bmp.width; c.height = bmp.height;
    const cx = c.getContext('2d', { willReadFrequently: true }); cx.drawImage(bmp, 0, 0);
    const img = cx.getImageData(0, 0, c.width, c.height), d = img.data;
    for (let i = 0; i < d.length; i += 4) {
      const on = d[i] > 127; d[i] = 40; d[i + 1] = 220; d[i + 2] = 60; d[i + 3] = on ? 120 : 0;
    }
    cx.putImageData(img, 0, 0);
    return c;
  }

  async function update() {
    const mine = ++seq;
    if (!st.points.length) { st.mask = null; st.area = 0; $('accept').disabled = true; draw(); return; }
    st.busy = true; status('…');
    try {
      const t0 = performance.now();
      const r = await api('/api/label', { stem: st.stem, points: st.points, labels: st.labels });
      if (mine !== seq) return;
      st.mask = await tint(r.mask_png); st.area = r.area_px; st.error = null;
      $('accept').disabled = r.area_px === 0;
      status(`${r.area_px} px · ${Math.round(performance.now() - t0)} ms`);
    } catch (e) { st.error = String(e); status(String(e)); }
    finally { if (mine === seq) st.busy = false; draw(); }
  }

  async function show(index) {
    if (!st.images.length) { progress(); status('no images in the dataset'); return; }
    st.index = (index + st.images.length) % st.images.length;
    const item = st.images[st.index];
    st.stem = item.stem; st.points = []; st.labels = []; st.mask = null; st.area = 0;
    $('accept').disabled = true;
    await new Promise((resolve) => { photo.onload = resolve; photo.onerror = resolve; photo.src = item.url; });
    canvas.width = photo.naturalWidth; canvas.height = photo.naturalHeight;
    draw(); progress(); status(item.has_mask ? 'already labelled' : '');
  }

  async function load() {
    const review = $('review').checked;
    const data = await api('/api/images' + (review ? '?review=true' : ''));
    st.images = data.images;
    $('review').disabled = !data.review_available && !review;
    await show(0);
  }

  function click(ev, label) {
    if (!st.stem) return;
    const rect = canvas.getBoundingClientRect();
    const x = ((ev.clientX - rect.left) / rect.width) * canvas.width;
    const y = ((ev.clientY - rect.top) / rect.height) * canvas.height;
    st.points.push([Math.round(x * 10) / 10, Math.round(y * 10) / 10]); st.labels.push(label);
    update();
  }

  async function accept() {
    if (!st.points.length || st.busy) return;
    try {
      await api('/api/label/accept', { stem: st.stem, points: st.points, labels: st.labels });
      st.images[st.index].has_mask = true; st.accepted += 1;
      await show(st.index + 1);
      status('saved');
    } catch (e) { st.error = String(e); status(String(e)); }
  }

  const actions = {
    a: accept,
    s: () => show(st.index + 1),
    u: () => { st.points.pop(); st.labels.pop(); update(); },
    c: () => { st.points = []; st.labels = []; update(); },
    n: () => { negative = !negative; $('negative').setAttribute('aria-pressed', String(negative)); },
    ArrowRight: () => show(st.index + 1),
    ArrowLeft: () => show(st.index - 1),
  };
  canvas.addEventListener('click', (e) => click(e, negative ? 0 : 1));
  canvas.addEventListener('contextmenu', (e) => { e.preventDefault(); click(e, 0); });
  document.addEventListener('keydown', (e) => {
    if (e.target.tagName === 'INPUT' || e.ctrlKey || e.metaKey || e.altKey) return;
    const f = actions[e.key]; if (f) { e.preventDefault(); f(); }
  });
  $('accept').onclick = accept; $('skip').onclick = actions.s; $('undo').onclick = actions.u;
  $('clear').onclick = actions.c; $('negative').onclick = actions.n;
  $('prev').onclick = actions.ArrowLeft; $('next').onclick = actions.ArrowRight;
  $('review').onchange = load;
  load().catch((e) => { st.error = String(e); status(String(e)); });
})();
