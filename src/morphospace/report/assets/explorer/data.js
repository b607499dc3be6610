  /* morphospace explorer, part 1 of 7 (assets/explorer/data.js): the data, the state, the geometry.
   *
   * The explorer shows every galaxy on a 2-D map (WebGL points, Canvas 2D fallback).
   * Hover: thumbnail + catalogue row (nearest point through a spatial grid).
   * Click or search an id: "more like this", the precomputed nearest neighbours in the latent space.
   * Box / lasso: a selection that downloads as a CSV of ids (Blob, no network).
   * Labels: cluster names and the user's tags, kept in local storage, downloaded as a CSV.
   * Strings from the data or the user are only ever written with textContent.
   * window.morphospaceExplorer is the scripting (and testing) interface.
   *
   * The parts (data.js, loader.js, render.js, panels.js, labels.js, search.js, interaction.js) are inlined in that order into one
   * strict-mode closure by morphospace/report/html.py (explorer_script): they share its variables and
   * functions. This part decodes the embedded data (base64 typed arrays), holds the page's elements and
   * the state, converts between map and screen coordinates and picks the point under the pointer. */
  var DATA = window.morphospaceData, E = DATA.explorer;
  var root = document.getElementById('explorer-root');
  if (!E || !root) return;
  var LAZY = E.lazy || null;   // the arrays are beside the page (loader.js), else inside it
  var SPR = LAZY ? lazySprites(E.thumbs) : window.morphospaceSprites;
  var t0 = performance.now();

  /* ---------- decoding ---------- */
  function bytes(s) {
    var bin = atob(s), n = bin.length, u = new Uint8Array(n);
    for (var i = 0; i < n; i++) u[i] = bin.charCodeAt(i);
    return u.buffer;
  }
  function f32(s) { return new Float32Array(bytes(s)); }
  function i16(s) { return new Int16Array(bytes(s)); }
  function i32(s) { return new Int32Array(bytes(s)); }
  function f64(s) { return new Float64Array(bytes(s)); }
  function hexRGB(h) { var v = parseInt(String(h).slice(1), 16); return [(v >> 16) & 255, (v >> 8) & 255, v & 255]; }
  function rgbCss(c) { return 'rgb(' + c[0] + ',' + c[1] + ',' + c[2] + ')'; }

  // beside the page, per-galaxy arrays start empty and fill shard by shard (loader.js: applyChunk)
  var N = E.n, K = E.neighbours.k;
  var ids = LAZY ? new Array(N) : E.ids, NN = LAZY ? new Int32Array(N * K).fill(-1) : i32(E.neighbours.idx);
  var indexOfId = new Map();   // filled once every id is known
  function fillIndex() { for (var i = 0; i < N; i++) if (!indexOfId.has(ids[i])) indexOfId.set(ids[i], i); }
  if (!LAZY) fillIndex();
  var MISSING_RGB = [139, 147, 161];

  function setMapXY(o, xy) {
    var x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (var i = 0; i < xy.length; i += 2) {
      if (xy[i] < x0) x0 = xy[i]; if (xy[i] > x1) x1 = xy[i];
      if (xy[i + 1] < y0) y0 = xy[i + 1]; if (xy[i + 1] > y1) y1 = xy[i + 1];
    }
    if (!(x1 >= x0)) { x0 = y0 = -1; x1 = y1 = 1; }
    o.xy = xy;
    o.box = { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, w: Math.max(x1 - x0, 1e-3), h: Math.max(y1 - y0, 1e-3) };
  }
  var maps = E.maps.map(function (m) {
    var o = { name: m.name, xy: null, box: null, grid: null, kind: m.kind || 'latent', res: m.res,
              lines: (m.grid || []).map(function (g) { return { label: g.label, xy: f32(g.xy), at: g.at }; }) };
    if (!LAZY) setMapXY(o, f32(m.xy));
    return o;
  });
  var colourings = E.colourings.map(function (c) {
    var o = { name: c.name, kind: c.kind, type: c.type, res: c.res, stamp: c.stamp };
    if (c.type === 'categorical') {
      o.codes = LAZY ? null : i16(c.codes);
      o.categories = c.categories;
      o.rgb = c.colours.map(hexRGB);
      o.counts = c.counts;
      o.names = {};              // the user's names of categories (cluster names), by index
    } else {
      o.values = LAZY ? null : f32(c.values);
      o.lo = c.lo; o.hi = c.hi;
      o.lut = c.lut;
    }
    return o;
  });
  var columns = E.columns.map(function (c) {
    var o = { name: c.name, type: c.type };
    if (c.type === 'num') o.values = LAZY ? new Float32Array(N).fill(NaN) : f32(c.values);
    else if (c.type === 'cat') { o.codes = LAZY ? new Int32Array(N).fill(-1) : i32(c.codes); o.categories = c.categories; }
    else { o.values = LAZY ? new Array(N).fill(null) : c.values; o.prefix = c.prefix || ''; }
    return o;
  });
  function columnText(c, i) {
    if (c.type === 'num') { var v = c.values[i]; return isFinite(v) ? fmtNum(v) : null; }
    if (c.type === 'cat') { var k = c.codes[i]; return k >= 0 ? c.categories[k] : null; }
    var s = c.values[i];
    if (s === null || s === undefined) return null;
    return c.prefix ? '\u2026/' + s : s;   // the folder every row shares is left out
  }
  function fmtNum(v) {
    if (!isFinite(v)) return '\u2013';
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3);
    return String(+v.toPrecision(4));
  }
  /* a category as shown: with the user's name for it, when it has one ("3 \u00b7 barred spirals") */
  function catText(c, k) {
    var nm = c.names && c.names[k];
    return nm ? c.categories[k] + ' \u00b7 ' + nm : c.categories[k];
  }
  /* ---------- sky positions (degrees, float64; NaN where unknown) ---------- */
  var SKY = !E.sky ? null : LAZY ? { ra: new Float64Array(N).fill(NaN), dec: new Float64Array(N).fill(NaN) }
    : { ra: f64(E.sky.ra), dec: f64(E.sky.dec) };
  function sexagesimal(v, div, places, signed) {
    var neg = v < 0, a = Math.abs(v) / div, d = Math.floor(a), mf = (a - d) * 60, m = Math.floor(mf);
    var sec = (mf - m) * 60, p = Math.pow(10, places);
    sec = Math.round(sec * p) / p;
    if (sec >= 60) { sec -= 60; m += 1; }
    if (m >= 60) { m -= 60; d += 1; }
    function two(x) { return (x < 10 ? '0' : '') + x; }
    var s = sec.toFixed(places);
    return (signed ? (neg ? '-' : '+') : '') + two(d) + ':' + two(m) + ':' + (sec < 10 ? '0' : '') + s;
  }
  /* [RA, Dec] of galaxy i as text: [degrees, sexagesimal (h:m:s, d:m:s)], or null */
  function skyText(i) {
    if (!SKY || !isFinite(SKY.ra[i]) || !isFinite(SKY.dec[i])) return null;
    var ra = SKY.ra[i], dec = SKY.dec[i];
    var raH = sexagesimal(ra, 15, 2, false);
    if (raH.indexOf('24:') === 0) raH = '00' + raH.slice(2);
    var raD = ra.toFixed(5);
    if (raD === '360.00000') raD = '0.00000';   // 359.999999 rounds up: the circle wraps, as the hours do
    return [raD + '\u00b0, ' + (dec < 0 ? '' : '+') + dec.toFixed(5) + '\u00b0',
            raH + ', ' + sexagesimal(dec, 1, 1, true)];
  }
  function lutIndex(c, v) {
    var t = (v - c.lo) / (c.hi - c.lo);
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return Math.round(t * (c.lut.length - 1));
  }
  function valueOf(c, i) {
    if (c.type === 'categorical') { var k = c.codes[i]; return { text: catText(c, k), rgb: c.rgb[k] }; }
    var v = c.values[i];
    return isFinite(v) ? { text: fmtNum(v), rgb: c.lut[lutIndex(c, v)] } : { text: 'no score', rgb: MISSING_RGB };
  }

  /* ---------- elements and state ---------- */
  var stage = document.getElementById('ex-stage');
  var canvas = document.getElementById('ex-gl');
  var overlay = document.getElementById('ex-overlay');
  var octx = overlay.getContext('2d');
  var tooltip = document.getElementById('ex-tooltip');
  var selMap = document.getElementById('ex-map'), selColour = document.getElementById('ex-colour');
  var statusEl = document.getElementById('ex-status'), noticeEl = document.getElementById('ex-notice');

  var state = {
    map: 0, colour: 0, mode: 'pan',
    view: { cx: 0, cy: 0, zoom: 1 },
    hover: -1, focus: -1,
    selection: null,           // Uint8Array mask or null
    selCount: 0,
    drag: null,
    W: 1, H: 1, dpr: 1,
    drawn: 0,
    started: false,            // true once the first map and colouring are in and drawn
    moving: false              // the view is moving (render.js: markMoving)
  };
  var colourBuf = new Uint8Array(N * 4);
  var selBuf = new Uint8Array(N);

  /* ---------- geometry ---------- */
  // zoom 1 fits the map's bounding box to the stage, whatever their aspects
  function scale() { var b = maps[state.map].box; return state.view.zoom * 0.92 * Math.min(state.W / b.w, state.H / b.h); }
  function homeView() { var b = maps[state.map].box; return { cx: b.cx, cy: b.cy, zoom: 1 }; }
  function toScreen(x, y) {
    var s = scale();
    return [state.W / 2 + (x - state.view.cx) * s, state.H / 2 - (y - state.view.cy) * s];
  }
  function toData(px, py) {
    var s = scale();
    return [state.view.cx + (px - state.W / 2) / s, state.view.cy - (py - state.H / 2) / s];
  }
  function pointSize() {
    var base = Math.max(2.6, Math.min(9, 40 / Math.pow(Math.max(N, 1), 0.25)));
    return base * Math.min(3, Math.sqrt(state.view.zoom));
  }

  /* ---------- spatial grid for picking ---------- */
  function buildGrid(m) {
    var xy = m.xy, G = Math.max(1, Math.floor(Math.sqrt(N / 3))), cw = 2.0 / G;
    var cell = new Int32Array(N), counts = new Int32Array(G * G + 1);
    for (var i = 0; i < N; i++) {
      var gx = Math.min(G - 1, Math.max(0, Math.floor((xy[2 * i] + 1) / cw)));
      var gy = Math.min(G - 1, Math.max(0, Math.floor((xy[2 * i + 1] + 1) / cw)));
      cell[i] = gy * G + gx;
      counts[cell[i] + 1]++;
    }
    for (var c = 0; c < G * G; c++) counts[c + 1] += counts[c];
    var fill = counts.slice(0, G * G), order = new Int32Array(N);
    for (i = 0; i < N; i++) order[fill[cell[i]]++] = i;
    m.grid = { G: G, cw: cw, start: counts, order: order };
  }
  function pick(px, py) {
    if (!state.started) return -1;
    var m = maps[state.map];
    if (!m.grid) buildGrid(m);
    var g = m.grid, d = toData(px, py), s = scale();
    var r = (pointSize() / 2 + 4) / s, best = -1, bestD = r * r, xy = m.xy;
    var x0 = Math.max(0, Math.floor((d[0] - r + 1) / g.cw)), x1 = Math.min(g.G - 1, Math.floor((d[0] + r + 1) / g.cw));
    var y0 = Math.max(0, Math.floor((d[1] - r + 1) / g.cw)), y1 = Math.min(g.G - 1, Math.floor((d[1] + r + 1) / g.cw));
    for (var gy = y0; gy <= y1; gy++) {
      for (var gx = x0; gx <= x1; gx++) {
        var c = gy * g.G + gx;
        for (var k = g.start[c]; k < g.start[c + 1]; k++) {
          var i = g.order[k], dx = xy[2 * i] - d[0], dy = xy[2 * i + 1] - d[1], dd = dx * dx + dy * dy;
          if (dd < bestD) { bestD = dd; best = i; }
        }
      }
    }
    return best;
  }

