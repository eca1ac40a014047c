// OkraInsight per-pod grading helpers for the live page (plain functions, no DOM; also loads in node).
//
// cnnInput() is a port of okrainsight.grading.cnn.cnn_input: the pod's crop with the background
// zeroed, rotated about its pixel centroid so its principal axis is horizontal (cv2.getRotationMatrix2D
// + warpAffine: bilinear for the colours, nearest (fixed point) for the mask, zero border), tightly cropped to the
// rotated mask and resized to 64x32 like cv2.resize(INTER_AREA). The eigenvector's sign follows
// numpy.linalg.eigh for 2x2 matrices, so the rotation (not only its axis) matches Python's.
// podShape() is the gate's area and elongation (okrainsight.grading.features.pod_shape_stats):
// length = geodesic tip-to-tip length (alternating 4-/8-neighbour growth, path measured every 4 px),
// max width = twice the largest distance to the background (5x5 chamfer, OpenCV's DIST_L2 weights).
//
// Images are row-major; `rgb` is H*W*3 uint8 RGB of the whole frame; `labels` is any H*W array and a
// pixel belongs to the pod when labels[y * width + x] === id; bbox is [x0, y0, x1, y1] (x1, y1 exclusive).
'use strict';

(function (root) {
  const CNN_W = 64, CNN_H = 32;

  // cvRound: round half to even (OpenCV's saturate_cast<int>(double)).
  function roundEven(v) {
    const r = Math.round(v);
    return (Math.abs(v % 1) === 0.5 && r % 2 !== 0) ? r - 1 : r;
  }

  // Principal axis angle in degrees, with numpy's eigh sign for a 2x2 covariance [[a, b], [b, d]].
  function principalAngle(a, b, d) {
    let tx, ty;
    if (b === 0) {
      [tx, ty] = a >= d ? [1, 0] : [0, 1];
    } else {
      const lam = (a + d) / 2 + Math.sqrt(((a - d) / 2) ** 2 + b * b);
      [tx, ty] = a >= d ? [lam - d, b] : [b, lam - a];
      const n = Math.hypot(tx, ty);
      tx /= n; ty /= n;
      // eigh: b < 0 -> (-, +); b > 0 and a > d -> (-, -); b > 0 and a <= d -> (+, +)
      const flip = b < 0 ? ty < 0 : (a > d ? tx > 0 : tx < 0);
      if (flip) { tx = -tx; ty = -ty; }
    }
    return Math.atan2(ty, tx) * 180 / Math.PI;
  }

  // 1-D resampling weights of cv2.resize(INTER_AREA) along one axis: list of [src, dst, weight].
  function areaWeights(ssize, dsize, areaPath) {
    const inv = dsize / ssize, scale = 1 / inv;
    const tab = [];
    if (areaPath) { // computeResizeAreaTab
      for (let dx = 0; dx < dsize; dx++) {
        const f1 = dx * scale, f2 = f1 + scale;
        const cell = Math.min(scale, ssize - f1);
        let s1 = Math.ceil(f1), s2 = Math.floor(f2);
        s2 = Math.min(s2, ssize - 1);
        s1 = Math.min(s1, s2);
        if (s1 - f1 > 1e-3) tab.push([s1 - 1, dx, (s1 - f1) / cell]);
        for (let s = s1; s < s2; s++) tab.push([s, dx, 1 / cell]);
        if (f2 - s2 > 1e-3) tab.push([s2, dx, Math.min(Math.min(f2 - s2, 1), cell) / cell]);
      }
      return tab;
    }
    for (let dx = 0; dx < dsize; dx++) { // the linear kernel of INTER_AREA when enlarging
      let sx = Math.floor(dx * scale);
      let fx = Math.fround((dx + 1) - (sx + 1) * inv);
      fx = fx <= 0 ? 0 : fx - Math.floor(fx);
      if (sx < 0) { fx = 0; sx = 0; }
      if (sx >= ssize - 1) { fx = 0; sx = ssize - 1; }
      tab.push([sx, dx, 1 - fx]);
      if (fx) tab.push([sx + 1, dx, fx]);
    }
    return tab;
  }

  // cv2.resize(src (h, w, 3) float, (dw, dh), INTER_AREA) -> Float32Array (dh, dw, 3).
  function resizeArea(src, w, h, dw, dh) {
    const out = new Float32Array(dw * dh * 3);
    if (w === dw && h === dh) { out.set(src); return out; }
    const areaPath = w / dw >= 1 && h / dh >= 1 && 1 / (dw / w) >= 1 && 1 / (dh / h) >= 1;
    const xt = areaWeights(w, dw, areaPath), yt = areaWeights(h, dh, areaPath);
    const rows = new Float64Array(h * dw * 3); // horizontal pass
    for (let y = 0; y < h; y++) {
      for (const [s, d, a] of xt) {
        const i = (y * w + s) * 3, o = (y * dw + d) * 3;
        rows[o] += a * src[i]; rows[o + 1] += a * src[i + 1]; rows[o + 2] += a * src[i + 2];
      }
    }
    const acc = new Float64Array(dw * dh * 3);
    for (const [s, d, a] of yt) {
      const i = s * dw * 3, o = d * dw * 3;
      for (let k = 0; k < dw * 3; k++) acc[o + k] += a * rows[i + k];
    }
    out.set(acc);
    return out;
  }

  // The CNN input of one pod: Float32Array (3, 32, 64) CHW, RGB 0..1 (zeros when the pod is empty).
  function cnnInput(rgb, width, height, labels, id, bbox) {
    const out = new Float32Array(3 * CNN_H * CNN_W);
    const [x0, y0, x1, y1] = bbox;
    const bw = x1 - x0, bh = y1 - y0;
    const m = new Uint8Array(bw * bh);
    const crop = new Float32Array(bw * bh * 3);
    let n = 0, sx = 0, sy = 0;
    for (let y = 0; y < bh; y++) {
      for (let x = 0; x < bw; x++) {
        const p = (y + y0) * width + (x + x0);
        if (labels[p] !== id) continue;
        const q = y * bw + x;
        m[q] = 1;
        crop[q * 3] = rgb[p * 3] / 255; crop[q * 3 + 1] = rgb[p * 3 + 1] / 255; crop[q * 3 + 2] = rgb[p * 3 + 2] / 255;
        n++; sx += x; sy += y;
      }
    }
    if (n < 2) return out;
    const cx = sx / n, cy = sy / n;
    let cxx = 0, cxy = 0, cyy = 0;
    for (let y = 0; y < bh; y++) {
      for (let x = 0; x < bw; x++) {
        if (!m[y * bw + x]) continue;
        const dx = x - cx, dy = y - cy;
        cxx += dx * dx; cxy += dx * dy; cyy += dy * dy;
      }
    }
    const angle = principalAngle(cxx / (n - 1), cxy / (n - 1), cyy / (n - 1));
    const side = Math.ceil(Math.hypot(bh, bw)) + 2;
    // getRotationMatrix2D(centre, angle, 1) + translation of the centre to the middle of side x side
    const rad = angle * Math.PI / 180, al = Math.cos(rad), be = Math.sin(rad);
    const M = [al, be, (1 - al) * cx - be * cy + (side / 2 - cx), -be, al, be * cx + (1 - al) * cy + (side / 2 - cy)];
    // warpAffine maps destination pixels through the inverse transform
    let D = M[0] * M[4] - M[1] * M[3];
    D = D !== 0 ? 1 / D : 0;
    const A11 = M[4] * D, A22 = M[0] * D, A12 = -M[1] * D, A21 = -M[3] * D;
    const B1 = -A11 * M[2] - A12 * M[5], B2 = -A21 * M[2] - A22 * M[5];
    const AB = 1024, ad = new Int32Array(side), bd = new Int32Array(side);
    for (let x = 0; x < side; x++) { ad[x] = roundEven(A11 * x * AB); bd[x] = roundEven(A21 * x * AB); }
    // the rotated mask (INTER_NEAREST) and its bounding box
    let tx0 = side, ty0 = side, tx1 = -1, ty1 = -1;
    for (let y = 0; y < side; y++) {
      const X0 = roundEven((A12 * y + B1) * AB) + AB / 2, Y0 = roundEven((A22 * y + B2) * AB) + AB / 2;
      for (let x = 0; x < side; x++) {
        const X = (X0 + ad[x]) >> 10, Y = (Y0 + bd[x]) >> 10;
        if (X >= 0 && Y >= 0 && X < bw && Y < bh && m[Y * bw + X]) {
          if (x < tx0) tx0 = x; if (x > tx1) tx1 = x; if (y < ty0) ty0 = y; if (y > ty1) ty1 = y;
        }
      }
    }
    if (tx1 < 0) return out;
    // the rotated colours (INTER_LINEAR at float source coordinates, as OpenCV >= 4.11) in the tight box only
    const tw = tx1 - tx0 + 1, th = ty1 - ty0 + 1;
    const tight = new Float32Array(tw * th * 3);
    const at = (X, Y, c) => (X >= 0 && Y >= 0 && X < bw && Y < bh ? crop[(Y * bw + X) * 3 + c] : 0);
    for (let y = ty0; y <= ty1; y++) {
      for (let x = tx0; x <= tx1; x++) {
        const sxf = A11 * x + A12 * y + B1, syf = A21 * x + A22 * y + B2;
        const ix = Math.floor(sxf), iy = Math.floor(syf), fx = sxf - ix, fy = syf - iy;
        const w00 = (1 - fy) * (1 - fx), w01 = (1 - fy) * fx, w10 = fy * (1 - fx), w11 = fy * fx;
        const o = ((y - ty0) * tw + (x - tx0)) * 3;
        for (let c = 0; c < 3; c++) {
          tight[o + c] = w00 * at(ix, iy, c) + w01 * at(ix + 1, iy, c) + w10 * at(ix, iy + 1, c) + w11 * at(ix + 1, iy + 1, c);
        }
      }
    }
    const small = resizeArea(tight, tw, th, CNN_W, CNN_H);
    for (let i = 0; i < CNN_W * CNN_H; i++) {
      out[i] = small[i * 3]; out[CNN_W * CNN_H + i] = small[i * 3 + 1]; out[2 * CNN_W * CNN_H + i] = small[i * 3 + 2];
    }
    return out;
  }

  // Geodesic tip-to-tip length of a (h, w) 0/1 mask, as okrainsight.runtime.pod_length (no down-scaling).
  function geodesicLength(m, w, h) {
    const steps = (seed) => {
      const st = new Int32Array(w * h).fill(-1);
      st[seed] = 0;
      let frontier = [seed], older = [], k = 0;
      for (;;) {
        // cross step from the newest ring; square step also reaches the diagonals of the ring before
        const square = k % 2 === 1, next = [];
        const grow = (p, diag) => {
          const px = p % w, py = (p - px) / w;
          for (let dy = -1; dy <= 1; dy++) {
            for (let dx = -1; dx <= 1; dx++) {
              if ((!dx && !dy) || (!diag && dx && dy)) continue;
              const nx = px + dx, ny = py + dy;
              if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
              const q = ny * w + nx;
              if (m[q] && st[q] < 0) { st[q] = k + 1; next.push(q); }
            }
          }
        };
        for (const p of frontier) grow(p, square);
        if (square) for (const p of older) grow(p, true);
        if (!next.length && !square) {
          // pixels joined only diagonally (a cross step finds nothing): take the square step now,
          // from every pixel reached, as okrainsight.runtime._geodesic_steps does
          for (let q = 0; q < st.length; q++) if (st[q] >= 0 && st[q] <= k) grow(q, true);
        }
        if (!next.length) return st;
        k++;
        older = square ? [] : frontier;
        frontier = next;
      }
    };
    const farthest = (st) => { let b = 0; for (let i = 1; i < st.length; i++) if (st[i] > st[b]) b = i; return b; };
    let first = -1;
    for (let i = 0; i < m.length; i++) if (m[i]) { first = i; break; }
    if (first < 0) return 0;
    const st = steps(farthest(steps(first)));
    let p = farthest(st);
    const pts = [p];
    const order = [[1, 0], [0, 1], [-1, 0], [0, -1], [1, 1], [-1, 1], [1, -1], [-1, -1]]; // (dx, dy)
    while (st[p] > 0) {
      const px = p % w, py = (p - px) / w;
      let best = -1;
      for (const [dx, dy] of order) {
        const nx = px + dx, ny = py + dy;
        if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
        const q = ny * w + nx;
        if (st[q] >= 0 && st[q] < st[p]) { best = q; break; }
      }
      if (best < 0) break;
      p = best;
      pts.push(p);
    }
    const keep = pts.filter((_, i) => i % 4 === 0);
    if ((pts.length - 1) % 4) keep.push(pts[pts.length - 1]);
    let len = 0;
    for (let i = 1; i < keep.length; i++) {
      const ax = keep[i - 1] % w, ay = (keep[i - 1] - ax) / w, bx = keep[i] % w, by = (keep[i] - bx) / w;
      len += Math.hypot(ax - bx, ay - by);
    }
    return len + 1;
  }

  // Largest distance to the background of a (h, w) 0/1 mask padded by one zero pixel (5x5 chamfer).
  function maxDistance(m, w, h) {
    const W = w + 2, H = h + 2, INF = 1e9;
    const d = new Float64Array(W * H);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) d[(y + 1) * W + x + 1] = m[y * w + x] ? INF : 0;
    const A = 1, B = 1.4, C = 2.1969;
    const fwd = [[-1, 0, A], [0, -1, A], [-1, -1, B], [1, -1, B], [-1, -2, C], [1, -2, C], [-2, -1, C], [2, -1, C]];
    const pass = (ys, xs, offs) => {
      for (const y of ys) {
        for (const x of xs) {
          const i = y * W + x;
          if (!d[i]) continue;
          let v = d[i];
          for (const [dx, dy, c] of offs) {
            const nx = x + dx, ny = y + dy;
            if (nx < 0 || ny < 0 || nx >= W || ny >= H) continue;
            const t = d[ny * W + nx] + c;
            if (t < v) v = t;
          }
          d[i] = v;
        }
      }
    };
    const range = (n) => Array.from({ length: n }, (_, i) => i);
    pass(range(H), range(W), fwd);
    pass(range(H).reverse(), range(W).reverse(), fwd.map(([dx, dy, c]) => [-dx, -dy, c]));
    let best = 0;
    for (let i = 0; i < d.length; i++) if (d[i] > best) best = d[i];
    return best;
  }

  // Area and elongation of one pod (the gate's shape numbers): {area, length, maxWidth, elongation}.
  function podShape(labels, width, id, bbox) {
    const [x0, y0, x1, y1] = bbox;
    const w = x1 - x0, h = y1 - y0;
    const m = new Uint8Array(w * h);
    let area = 0;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) if (labels[(y + y0) * width + x + x0] === id) { m[y * w + x] = 1; area++; }
    }
    const length = geodesicLength(m, w, h);
    const maxWidth = Math.max(2 * maxDistance(m, w, h), 1);
    return { area, length, maxWidth, elongation: length / maxWidth };
  }

  // The gate's area and elongation tests; `gate` holds GateConfig's thresholds. -> 'ok' or the reason.
  function gateReason(shape, frameArea, gate) {
    const frac = shape.area / frameArea;
    if (frac < gate.min_area_fraction) return 'too small';
    if (frac > gate.max_area_fraction) return 'too large';
    if (shape.elongation < gate.min_elongation) return 'not elongated';
    if (shape.elongation > gate.max_elongation) return 'too thin';
    return 'ok';
  }

  // Label the 8-connected region of nonzero `mask` (width*height) that holds pixel `start` with `id`
  // in `labels`, using `stack` (Int32Array of width*height) as work space; visit(j) once per pixel.
  function fillRegion(mask, labels, stack, width, height, start, id, visit) {
    let top = 0;
    stack[top++] = start; labels[start] = id;
    while (top) {
      const j = stack[--top];
      visit(j);
      const jx = j % width, jy = (j - jx) / width;
      for (let dy = -1; dy <= 1; dy++) {
        const ny = jy + dy;
        if (ny < 0 || ny >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const nx = jx + dx;
          if (nx < 0 || nx >= width) continue;
          const k = ny * width + nx;
          if (mask[k] && !labels[k]) { labels[k] = id; stack[top++] = k; }
        }
      }
    }
  }

  // Hysteresis, as okrainsight.hysteresis.okra_mask: keep the 8-connected regions of `mask` (H*W, nonzero
  // = okra at the card's threshold) holding a pixel with probability >= seed. -> new H*W Uint8Array 0/255.
  function keepSeeded(mask, prob, width, height, seed) {
    const n = width * height;
    const lab = new Int32Array(n), stack = new Int32Array(n), out = new Uint8Array(n);
    const seeded = [false];
    for (let i = 0; i < n; i++) {
      if (!mask[i] || lab[i]) continue;
      let hit = false;
      fillRegion(mask, lab, stack, width, height, i, seeded.length, (j) => { if (prob[j] >= seed) hit = true; });
      seeded.push(hit);
    }
    for (let i = 0; i < n; i++) if (lab[i] && seeded[lab[i]]) out[i] = 255;
    return out;
  }

  // The cleanup of okrainsight.runtime.find_pods before it labels pods: a morphological opening then
  // closing with OpenCV's 3x3 elliptical kernel (a cross; find_pods' kernel for frames under 875 px on
  // the shorter side, as every model input is), which drops specks and one-pixel spurs and fills pin
  // holes. Beyond the frame counts as foreground when eroding and background when dilating (OpenCV's
  // default borders). `mask` is H*W, nonzero = okra -> new H*W Uint8Array of 0/1.
  function openClose(mask, width, height) {
    const n = width * height;
    const morph = (src, erode) => {
      const out = new Uint8Array(n), edge = erode ? 1 : 0;
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const i = y * width + x;
          const c = src[i] ? 1 : 0;
          const l = x > 0 ? (src[i - 1] ? 1 : 0) : edge;
          const r = x < width - 1 ? (src[i + 1] ? 1 : 0) : edge;
          const u = y > 0 ? (src[i - width] ? 1 : 0) : edge;
          const d = y < height - 1 ? (src[i + width] ? 1 : 0) : edge;
          out[i] = erode ? c & l & r & u & d : c | l | r | u | d;
        }
      }
      return out;
    };
    return morph(morph(morph(morph(mask, true), false), false), true);
  }

  const api = { CNN_W, CNN_H, cnnInput, podShape, gateReason, principalAngle, fillRegion, keepSeeded, openClose };
  if (typeof module === 'object' && module.exports) module.exports = api;
  else root.OkraGrade = api;
})(typeof self !== 'undefined' ? self : this);
