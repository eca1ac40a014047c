// OkraInsight live page: camera -> student (onnxruntime-web, in the browser) -> mask overlay.
//
// The exported model takes `image` uint8 (1, H, W, 3) RGB at the card's input size and returns
// `mask` uint8 (1, 1, H, W) 0/255 (normalisation and sigmoid are inside), so the per-frame
// JavaScript is one drawImage, one RGBA->RGB copy and the overlay. One inference per new camera
// frame (requestVideoFrameCallback where available). Query options: ?backend=wasm|webgpu|server,
// ?threads=N (WASM threads; 1 by default: 2 threads were slower on 2 cores).
//
// Per-pod verdict (in the browser too): about twice a second (GRADE_MS) the largest MAX_GRADE pods
// of the current frame pass the grader's area/elongation gate (grade.js, thresholds from
// /grader/info.json) and the plausible ones go, as 64x32 crops (grade.js cnnInput, the port of
// Python's cnn_input), through the grader's cnn.onnx in one batch; between gradings each pod shows
// the cached verdict of the nearest graded pod. Without a CNN the page says so once and shows none.
//
// For tests: window.okraStats = {fps, frames, backend, inferMs, jsMs (= captureMs + drawMs), pods, width,
//   height, error, grader ('cnn' | 'none' | 'loading'), gradings, gradeMs, okra (true | false | null), verdicts}
// window.okraLastMask() -> {width, height, mask: base64 of H*W bytes 0/255}
// window.okraLastFrame() -> {width, height, rgb: base64 of H*W*3 bytes, mask: base64 (same frame)}
// window.okraLastGrade() -> {width, height, rgb, mask (the graded frame, base64), pods: [{bbox, area,
//   elongation, reason, tender_probability}]}
'use strict';

(() => {
  const params = new URLSearchParams(location.search);
  const stats = {
    fps: 0, frames: 0, backend: 'loading', inferMs: 0, jsMs: 0, captureMs: 0, drawMs: 0, pods: 0, width: 0, height: 0, error: null,
    grader: 'loading', gradings: 0, gradeMs: 0, okra: null, verdicts: [],
  };
  const GRADE_MS = 500, MAX_GRADE = 4;
  window.okraStats = stats;
  const $ = (id) => document.getElementById(id);
  const video = $('video');
  const overlay = $('overlay');
  const octx = overlay.getContext('2d');
  const say = (text) => { $('message').textContent = text || ''; };

  let W = 0, H = 0, session = null, tensor = null, rgb = null, seedThreshold = null;
  let lastMask = null, lastInput = null;
  let grader = null, cnn = null, lastGradeAt = -1e9, verdicts = [], lastGrade = null;
  let work, wctx, simg, spx, labels, stack;
  const frameTimes = [];

  const b64 = (bytes) => {
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  };
  window.okraLastMask = () => (lastMask ? { width: W, height: H, mask: b64(lastMask) } : null);
  window.okraLastFrame = () => (lastMask ? { width: W, height: H, rgb: b64(lastInput), mask: b64(lastMask) } : null);
  window.okraLastGrade = () => (lastGrade ? { width: W, height: H, rgb: b64(lastGrade.rgb), mask: b64(lastGrade.mask), pods: lastGrade.pods } : null);

  function wasmSimd() {
    try {
      return typeof WebAssembly === 'object' && WebAssembly.validate(new Uint8Array(
        [0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]));
    } catch (e) { return false; }
  }

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = src; s.onload = resolve; s.onerror = () => reject(new Error('cannot load ' + src));
      document.head.appendChild(s);
    });
  }

  async function pickBackend() {
    const asked = params.get('backend');
    if (asked === 'server') return 'server';
    if (!wasmSimd()) return 'server';
    if (asked === 'wasm') return 'wasm';
    if (navigator.gpu) {
      try {
        const adapter = await navigator.gpu.requestAdapter();
        if (adapter && !adapter.isFallbackAdapter) return 'webgpu';
      } catch (e) { /* no WebGPU: use WASM */ }
    }
    return asked === 'webgpu' ? 'wasm' : 'wasm';
  }

  async function startModel(backend) {
    await loadScript(backend === 'webgpu' ? '/static/vendor/ort.webgpu.min.js' : '/static/vendor/ort.wasm.min.js');
    /* global ort */
    ort.env.wasm.wasmPaths = '/static/vendor/';
    ort.env.wasm.numThreads = Math.max(1, Number(params.get('threads') || 1));
    const eps = backend === 'webgpu' ? ['webgpu', 'wasm'] : ['wasm'];
    session = await ort.InferenceSession.create('/model/model.onnx', { executionProviders: eps, graphOptimizationLevel: 'all' });
    tensor = new ort.Tensor('uint8', rgb, [1, H, W, 3]);
  }

  async function serverMask() {
    const blob = await new Promise((r) => work.toBlob(r, 'image/png'));
    const form = new FormData();
    form.append('file', blob, 'frame.png');
    // the frame is already the network's input size: one run, no tiles (zoom=0), no mirror
    // images (flips=none), as the browser backend runs it
    const res = await fetch('/api/segment?overlay=false&zoom=0&flips=none', { method: 'POST', body: form });
    if (!res.ok) throw new Error('server inference failed: ' + (await res.json()).detail);
    const bitmap = await createImageBitmap(await (await fetch('data:image/png;base64,' + (await res.json()).mask_png)).blob());
    const c = document.createElement('canvas');
    c.width = W; c.height = H;
    const cx = c.getContext('2d', { willReadFrequently: true });
    cx.drawImage(bitmap, 0, 0, W, H);
    const px = cx.getImageData(0, 0, W, H).data;
    const m = new Uint8Array(W * H);
    for (let i = 0; i < m.length; i++) m[i] = px[i * 4] > 127 ? 255 : 0;
    return m;
  }

  // Overlay: green fill, yellow outline of the mask; pods = 8-connected regions above a small area of
  // the mask cleaned as okrainsight.runtime.find_pods cleans it (OkraGrade.openClose).
  function drawOverlay(mask) {
    const clean = OkraGrade.openClose(mask, W, H);
    const FILL = (110 << 24) | (60 << 16) | (220 << 8) | 40, EDGE = (255 << 24) | (0 << 16) | (230 << 8) | 255;
    const n = W * H;
    spx.fill(0);
    labels.fill(0);
    const pods = [];
    const minArea = Math.max(16, Math.round(n * 0.0005));
    for (let i = 0; i < n; i++) {
      if (!mask[i]) continue;
      const x = i % W, y = (i - x) / W;
      const edge = x === 0 || y === 0 || x === W - 1 || y === H - 1 || !mask[i - 1] || !mask[i + 1] || !mask[i - W] || !mask[i + W];
      spx[i] = edge ? EDGE : FILL;
    }
    for (let i = 0; i < n; i++) {
      if (!clean[i] || labels[i]) continue;
      const x = i % W, y = (i - x) / W;
      // flood fill one region (8-connected)
      const id = pods.length + 1;
      let area = 0, x0 = x, x1 = x, y0 = y, y1 = y, sx = 0, sy = 0;
      OkraGrade.fillRegion(clean, labels, stack, W, H, i, id, (j) => {
        area++;
        const jx = j % W, jy = (j - jx) / W;
        sx += jx; sy += jy;
        if (jx < x0) x0 = jx; if (jx > x1) x1 = jx; if (jy < y0) y0 = jy; if (jy > y1) y1 = jy;
      });
      pods.push({ id, area, bbox: [x0, y0, x1 + 1, y1 + 1], cx: sx / area, cy: sy / area });
    }
    // The overlay canvas has the model's size; CSS stretches it over the video (as the model saw it).
    octx.putImageData(simg, 0, 0);
    return pods.filter((p) => p.area >= minArea).sort((a, b) => b.area - a.area);
  }

  // The verdict text of one graded pod: "tender 87%" / "tough 70%" (confidence in the verdict).
  const verdictText = (p) => (p >= grader.threshold ? `tender ${Math.round(100 * p)}%` : `tough ${Math.round(100 * (1 - p))}%`);

  // Gate and grade the largest pods of this frame (labels/rgb are this frame's); caches the verdicts.
  async function gradePods(pods, frame) {
    const t0 = performance.now();
    const graded = [], inputs = [];
    for (const p of pods.slice(0, MAX_GRADE)) {
      const shape = OkraGrade.podShape(labels, W, p.id, p.bbox);
      const reason = OkraGrade.gateReason(shape, W * H, grader.gate);
      const g = { bbox: p.bbox, cx: p.cx, cy: p.cy, area: shape.area, elongation: shape.elongation, reason, tender_probability: null };
      if (reason === 'ok') inputs.push([g, OkraGrade.cnnInput(frame, W, H, labels, p.id, p.bbox)]);
      graded.push(g);
    }
    if (inputs.length) {
      const n = inputs.length, size = 3 * OkraGrade.CNN_H * OkraGrade.CNN_W, batch = new Float32Array(n * size);
      inputs.forEach(([, x], i) => batch.set(x, i * size));
      const crop = new ort.Tensor('float32', batch, [n, 3, OkraGrade.CNN_H, OkraGrade.CNN_W]);
      const out = (await cnn.run({ crop }, ['tender_probability'])).tender_probability.data;
      inputs.forEach(([g], i) => { g.tender_probability = out[i]; });
    }
    verdicts = graded;
    stats.okra = graded.some((g) => g.reason === 'ok');
    stats.verdicts = graded.map((g) => ({ bbox: g.bbox, reason: g.reason, tender_probability: g.tender_probability, text: g.tender_probability === null ? null : verdictText(g.tender_probability) }));
    const mask = new Uint8Array(W * H);
    for (const g of graded) {
      const id = pods.find((p) => p.bbox === g.bbox).id;
      for (let y = g.bbox[1]; y < g.bbox[3]; y++) for (let x = g.bbox[0]; x < g.bbox[2]; x++) if (labels[y * W + x] === id) mask[y * W + x] = 255;
    }
    lastGrade = { rgb: frame.slice(), mask, pods: graded.map(({ bbox, area, elongation, reason, tender_probability }) => ({ bbox, area, elongation, reason, tender_probability })) };
    stats.gradings += 1;
    stats.gradeMs = performance.now() - t0;
  }

  // Labels: each pod takes the cached verdict of the nearest graded pod (centroids within a pod's size).
  function drawLabels(pods) {
    octx.font = `${Math.max(8, Math.round(H / 18))}px system-ui`;
    octx.lineWidth = 3;
    octx.strokeStyle = 'rgba(0,0,0,0.7)';
    const shown = [];
    pods.forEach((p, k) => {
      let text = `pod ${k + 1}`;
      if (cnn) {
        let best = null, bestD = Infinity;
        for (const g of verdicts) {
          const d = Math.hypot(g.cx - p.cx, g.cy - p.cy);
          if (d < bestD) { bestD = d; best = g; }
        }
        const reach = Math.max(p.bbox[2] - p.bbox[0], p.bbox[3] - p.bbox[1]) / 2;
        if (best && bestD <= reach && best.tender_probability !== null) { text = verdictText(best.tender_probability); shown.push(text); }
      }
      const ty = Math.max(10, p.bbox[1] - 2);
      octx.fillStyle = text.startsWith('tough') ? '#ff8a5c' : '#ffe600';
      octx.strokeText(text, p.bbox[0], ty);
      octx.fillText(text, p.bbox[0], ty);
    });
    if (!cnn) return;
    const tender = shown.filter((t) => t.startsWith('tender')).length;
    $('verdict').textContent = stats.okra === false ? 'not okra'
      : stats.okra === null ? 'grading…' : `${tender} tender, ${shown.length - tender} tough`;
  }

  async function processFrame() {
    const t0 = performance.now();
    wctx.drawImage(video, 0, 0, W, H);
    const px = wctx.getImageData(0, 0, W, H).data;
    for (let i = 0, j = 0; i < px.length; i += 4, j += 3) { rgb[j] = px[i]; rgb[j + 1] = px[i + 1]; rgb[j + 2] = px[i + 2]; }
    const t1 = performance.now();
    let mask;
    if (stats.backend === 'server') mask = await serverMask();  // the server applies the card's seeds itself
    else if (seedThreshold === null) mask = (await session.run({ image: tensor }, ['mask'])).mask.data;
    else {
      // the card's hysteresis (okrainsight.hysteresis): drop regions with no pixel >= seed_threshold
      const res = await session.run({ image: tensor }, ['mask', 'probability']);
      mask = OkraGrade.keepSeeded(res.mask.data, res.probability.data, W, H, seedThreshold);
    }
    const t2 = performance.now();
    lastMask = mask;
    lastInput = rgb.slice();
    const found = drawOverlay(mask);
    const pods = found.length;
    if (cnn && t2 - lastGradeAt >= GRADE_MS) {
      lastGradeAt = t2;
      await gradePods(found, rgb);
    }
    drawLabels(found);
    const t3 = performance.now();
    frameTimes.push(t3);
    while (frameTimes.length && frameTimes[0] < t3 - 1000) frameTimes.shift();
    stats.frames += 1;
    stats.fps = frameTimes.length > 1 ? ((frameTimes.length - 1) * 1000) / (t3 - frameTimes[0]) : 0;
    stats.inferMs = t2 - t1;
    stats.jsMs = (t1 - t0) + (t3 - t2);
    stats.captureMs = t1 - t0;
    stats.drawMs = t3 - t2;
    stats.pods = pods;
    $('fps').textContent = `${stats.fps.toFixed(1)} fps`;
    $('pods').textContent = `${pods} pod${pods === 1 ? '' : 's'}`;
  }

  // One inference per new camera frame: a frame that arrives while the model is busy is processed
  // as soon as it is free (the newest frame wins), so no frame period is lost waiting.
  function loop() {
    let lastRvfc = 0, running = false, pending = false;
    const step = async () => {
      if (running) { pending = true; return; }
      running = true;
      do {
        pending = false;
        try { await processFrame(); } catch (e) { stats.error = String(e); say(String(e)); }
      } while (pending);
      running = false;
    };
    if (video.requestVideoFrameCallback) {
      const onFrame = () => { lastRvfc = performance.now(); video.requestVideoFrameCallback(onFrame); step(); };
      video.requestVideoFrameCallback(onFrame);
    }
    // Watchdog: where frame callbacks do not arrive (some headless setups), poll once per animation frame.
    let lastTime = -1;
    const poll = () => {
      if (performance.now() - lastRvfc > 500 && video.currentTime !== lastTime) { lastTime = video.currentTime; step(); }
      requestAnimationFrame(poll);
    };
    setTimeout(() => requestAnimationFrame(poll), 1000);
  }

  async function setupCapture() {
    try {
      const health = await (await fetch('/api/health')).json();
      if (!health.data) { $('capture').title = 'Start okra serve with --data DIR to save captures'; return; }
    } catch (e) { return; }
    $('capture').disabled = false;
    $('capture').onclick = async () => {
      const c = document.createElement('canvas');
      c.width = video.videoWidth; c.height = video.videoHeight;
      c.getContext('2d').drawImage(video, 0, 0);
      const m = document.createElement('canvas');
      m.width = W; m.height = H;
      const mi = m.getContext('2d').createImageData(W, H);
      for (let i = 0; i < W * H; i++) { const v = lastMask ? lastMask[i] : 0; mi.data.set([v, v, v, 255], i * 4); }
      m.getContext('2d').putImageData(mi, 0, 0);
      const form = new FormData();
      form.append('image', await new Promise((r) => c.toBlob(r, 'image/png')), 'frame.png');
      form.append('mask', await new Promise((r) => m.toBlob(r, 'image/png')), 'mask.png');
      const res = await fetch('/api/capture', { method: 'POST', body: form });
      const body = await res.json();
      say(res.ok ? `saved ${body.stem}` : `capture failed: ${body.detail}`);
    };
  }

  // The grader's CNN (same onnxruntime-web as the student); without one the page says so once.
  async function startGrader() {
    try {
      grader = await (await fetch('/grader/info.json')).json();
    } catch (e) {
      grader = { cnn: false, message: 'no verdict: the grader information did not load' };
    }
    if (!grader.cnn) {
      stats.grader = 'none';
      $('verdict').textContent = 'no verdict';
      say(grader.message || 'no verdict: the grader has no CNN');
      return;
    }
    if (typeof ort === 'undefined' || typeof OkraGrade === 'undefined') {
      stats.grader = 'none';
      $('verdict').textContent = 'no verdict';
      say('no verdict: the pod grader needs the in-browser model (not ?backend=server)');
      return;
    }
    try {
      cnn = await ort.InferenceSession.create(grader.cnn_url, { executionProviders: ['wasm'] });
      stats.grader = 'cnn';
    } catch (e) {
      stats.grader = 'none';
      $('verdict').textContent = 'no verdict';
      say('no verdict: the grader CNN did not load (' + e + ')');
    }
  }

  async function main() {
    if ('serviceWorker' in navigator) navigator.serviceWorker.register('/sw.js').catch((e) => console.warn('service worker:', e));
    const card = await (await fetch('/model/card.json')).json();
    [W, H] = card.input_size;
    seedThreshold = card.seed_threshold > card.threshold ? card.seed_threshold : null;
    stats.width = W; stats.height = H;
    rgb = new Uint8Array(W * H * 3);
    work = document.createElement('canvas'); work.width = W; work.height = H;
    wctx = work.getContext('2d', { willReadFrequently: true });
    overlay.width = W; overlay.height = H;
    simg = octx.createImageData(W, H);
    spx = new Uint32Array(simg.data.buffer);
    labels = new Int32Array(W * H);
    stack = new Int32Array(W * H);
    let backend = await pickBackend();
    if (backend !== 'server') {
      try { await startModel(backend); } catch (e) {
        console.warn('in-browser model failed, using the server:', e);
        stats.error = String(e);
        backend = 'server';
      }
    }
    stats.backend = backend;
    await startGrader();
    $('backend').textContent = backend === 'server' ? 'server inference' : `on device (${backend})`;
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: false, video: { facingMode: { ideal: 'environment' }, width: { ideal: 1280 }, height: { ideal: 720 } },
    });
    video.srcObject = stream;
    await video.play();
    setupCapture();
    loop();
  }

  main().catch((e) => { stats.error = String(e); stats.backend = stats.backend === 'loading' ? 'failed' : stats.backend; say(String(e)); });
})();
