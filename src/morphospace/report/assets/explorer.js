/* morphospace explorer: every galaxy on a 2-D map (WebGL points, Canvas 2D fallback).
 *
 * Hover: thumbnail + catalogue row (nearest point through a spatial grid).
 * Click: "more like this", the precomputed nearest neighbours in the latent space.
 * Box / lasso: a selection that downloads as a CSV of ids (Blob, no network).
 * Strings from the data are only ever written with textContent.
 * window.morphospaceExplorer is the scripting (and testing) interface. */
(function () {
  'use strict';
  var DATA = window.morphospaceData, E = DATA.explorer, SPR = window.morphospaceSprites;
  var root = document.getElementById('explorer-root');
  if (!E || !root) return;
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
  function hexRGB(h) { var v = parseInt(String(h).slice(1), 16); return [(v >> 16) & 255, (v >> 8) & 255, v & 255]; }
  function rgbCss(c) { return 'rgb(' + c[0] + ',' + c[1] + ',' + c[2] + ')'; }

  var N = E.n, ids = E.ids, K = E.neighbours.k, NN = i32(E.neighbours.idx);
  var indexOfId = new Map();
  for (var i = 0; i < N; i++) if (!indexOfId.has(ids[i])) indexOfId.set(ids[i], i);
  var MISSING_RGB = [139, 147, 161];

  var maps = E.maps.map(function (m) {
    var xy = f32(m.xy), x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (var i = 0; i < xy.length; i += 2) {
      if (xy[i] < x0) x0 = xy[i]; if (xy[i] > x1) x1 = xy[i];
      if (xy[i + 1] < y0) y0 = xy[i + 1]; if (xy[i + 1] > y1) y1 = xy[i + 1];
    }
    if (!(x1 >= x0)) { x0 = y0 = -1; x1 = y1 = 1; }
    return { name: m.name, xy: xy, grid: null,
             box: { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, w: Math.max(x1 - x0, 1e-3), h: Math.max(y1 - y0, 1e-3) } };
  });
  var colourings = E.colourings.map(function (c) {
    var o = { name: c.name, kind: c.kind, type: c.type };
    if (c.type === 'categorical') {
      o.codes = i16(c.codes);
      o.categories = c.categories;
      o.rgb = c.colours.map(hexRGB);
      o.counts = c.counts;
    } else {
      o.values = f32(c.values);
      o.lo = c.lo; o.hi = c.hi;
      o.lut = c.lut;
    }
    return o;
  });
  var columns = E.columns.map(function (c) {
    var o = { name: c.name, type: c.type };
    if (c.type === 'num') o.values = f32(c.values);
    else if (c.type === 'cat') { o.codes = i32(c.codes); o.categories = c.categories; }
    else { o.values = c.values; o.prefix = c.prefix || ''; }
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
  function lutIndex(c, v) {
    var t = (v - c.lo) / (c.hi - c.lo);
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return Math.round(t * (c.lut.length - 1));
  }
  function valueOf(c, i) {
    if (c.type === 'categorical') { var k = c.codes[i]; return { text: c.categories[k], rgb: c.rgb[k] }; }
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
    drawn: 0
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

  /* ---------- colours ---------- */
  function fillColours() {
    var c = colourings[state.colour];
    for (var i = 0; i < N; i++) {
      var rgb = valueOf(c, i).rgb;
      colourBuf[4 * i] = rgb[0]; colourBuf[4 * i + 1] = rgb[1]; colourBuf[4 * i + 2] = rgb[2];
      colourBuf[4 * i + 3] = 225;
    }
    renderer.setColours(colourBuf);
  }

  /* ---------- renderers ---------- */
  function makeWebGL(cv) {
    var gl = null;
    try {
      gl = cv.getContext('webgl', { antialias: true, alpha: false, premultipliedAlpha: false, depth: false }) ||
           cv.getContext('experimental-webgl');
    } catch (e) { gl = null; }
    if (!gl) return null;
    var vs = 'attribute vec2 a_pos; attribute vec4 a_col; attribute float a_sel;' +
      'uniform vec2 u_scale; uniform vec2 u_offset; uniform float u_size; uniform float u_dim;' +
      'varying vec4 v_col;' +
      'void main() { gl_Position = vec4((a_pos + u_offset) * u_scale, 0.0, 1.0);' +
      '  gl_PointSize = u_size * mix(1.0, 0.8, (1.0 - a_sel) * step(u_dim, 0.99));' +
      '  v_col = vec4(a_col.rgb, a_col.a * mix(u_dim, 1.0, a_sel)); }';
    var fs = 'precision mediump float; varying vec4 v_col;' +
      'void main() { vec2 c = gl_PointCoord * 2.0 - 1.0; float r2 = dot(c, c); if (r2 > 1.0) discard;' +
      '  float edge = 1.0 - smoothstep(0.55, 1.0, r2); gl_FragColor = vec4(v_col.rgb, v_col.a * edge); }';
    function shader(type, src) {
      var sh = gl.createShader(type);
      gl.shaderSource(sh, src); gl.compileShader(sh);
      if (!gl.getShaderParameter(sh, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(sh));
      return sh;
    }
    var prog;
    try {
      prog = gl.createProgram();
      gl.attachShader(prog, shader(gl.VERTEX_SHADER, vs));
      gl.attachShader(prog, shader(gl.FRAGMENT_SHADER, fs));
      gl.linkProgram(prog);
      if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog));
    } catch (e) { return null; }
    gl.useProgram(prog);
    var loc = {
      pos: gl.getAttribLocation(prog, 'a_pos'), col: gl.getAttribLocation(prog, 'a_col'),
      sel: gl.getAttribLocation(prog, 'a_sel'), scale: gl.getUniformLocation(prog, 'u_scale'),
      offset: gl.getUniformLocation(prog, 'u_offset'), size: gl.getUniformLocation(prog, 'u_size'),
      dim: gl.getUniformLocation(prog, 'u_dim')
    };
    var bPos = gl.createBuffer(), bCol = gl.createBuffer(), bSel = gl.createBuffer();
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA);
    gl.disable(gl.DEPTH_TEST);
    var sizeRange = gl.getParameter(gl.ALIASED_POINT_SIZE_RANGE);
    return {
      kind: 'webgl',
      setPositions: function (xy) { gl.bindBuffer(gl.ARRAY_BUFFER, bPos); gl.bufferData(gl.ARRAY_BUFFER, xy, gl.STATIC_DRAW); },
      setColours: function (rgba) { gl.bindBuffer(gl.ARRAY_BUFFER, bCol); gl.bufferData(gl.ARRAY_BUFFER, rgba, gl.DYNAMIC_DRAW); },
      setSelection: function (mask) { gl.bindBuffer(gl.ARRAY_BUFFER, bSel); gl.bufferData(gl.ARRAY_BUFFER, mask, gl.DYNAMIC_DRAW); },
      draw: function () {
        gl.viewport(0, 0, cv.width, cv.height);
        gl.clearColor(0.043, 0.055, 0.086, 1);
        gl.clear(gl.COLOR_BUFFER_BIT);
        var s = scale();
        gl.uniform2f(loc.scale, 2 * s / state.W, 2 * s / state.H);
        gl.uniform2f(loc.offset, -state.view.cx, -state.view.cy);
        gl.uniform1f(loc.size, Math.min(sizeRange[1], pointSize() * state.dpr));
        gl.uniform1f(loc.dim, state.selection ? 0.13 : 1.0);
        gl.bindBuffer(gl.ARRAY_BUFFER, bPos);
        gl.enableVertexAttribArray(loc.pos); gl.vertexAttribPointer(loc.pos, 2, gl.FLOAT, false, 0, 0);
        gl.bindBuffer(gl.ARRAY_BUFFER, bCol);
        gl.enableVertexAttribArray(loc.col); gl.vertexAttribPointer(loc.col, 4, gl.UNSIGNED_BYTE, true, 0, 0);
        gl.bindBuffer(gl.ARRAY_BUFFER, bSel);
        gl.enableVertexAttribArray(loc.sel); gl.vertexAttribPointer(loc.sel, 1, gl.UNSIGNED_BYTE, true, 0, 0);
        gl.drawArrays(gl.POINTS, 0, N);
        return N;
      }
    };
  }

  function makeCanvas2D(cv) {
    var ctx = cv.getContext('2d');
    var xy = null, rgba = null, mask = null, groups = null;
    function regroup() {
      // one path per colour: a few fill() calls instead of N
      groups = new Map();
      for (var i = 0; i < N; i++) {
        var key = (rgba[4 * i] << 16) | (rgba[4 * i + 1] << 8) | rgba[4 * i + 2];
        var g = groups.get(key);
        if (!g) { g = []; groups.set(key, g); }
        g.push(i);
      }
    }
    return {
      kind: 'canvas2d',
      setPositions: function (a) { xy = a; },
      setColours: function (a) { rgba = a; regroup(); },
      setSelection: function (m) { mask = m; },
      draw: function () {
        var dpr = state.dpr, W = state.W, H = state.H;
        ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
        ctx.fillStyle = '#0b0e16';
        ctx.fillRect(0, 0, W, H);
        var s = scale(), cx = state.view.cx, cy = state.view.cy, r = pointSize() / 2, drawn = 0;
        var passes = state.selection ? [0, 1] : [-1];
        passes.forEach(function (pass) {
          ctx.globalAlpha = pass === 0 ? 0.13 : 0.88;
          groups.forEach(function (list, key) {
            ctx.fillStyle = 'rgb(' + ((key >> 16) & 255) + ',' + ((key >> 8) & 255) + ',' + (key & 255) + ')';
            ctx.beginPath();
            for (var j = 0; j < list.length; j++) {
              var i = list[j];
              if (pass >= 0 && mask[i] !== (pass ? 255 : 0)) continue;
              var x = W / 2 + (xy[2 * i] - cx) * s, y = H / 2 - (xy[2 * i + 1] - cy) * s;
              if (x < -r || y < -r || x > W + r || y > H + r) { drawn++; continue; }
              ctx.moveTo(x + r, y);
              ctx.arc(x, y, r, 0, 6.2832);
              drawn++;
            }
            ctx.fill();
          });
        });
        ctx.globalAlpha = 1;
        return drawn;
      }
    };
  }

  var forced2d = /(?:^|[#&?])renderer=canvas/.test(location.hash + '&' + location.search);
  var renderer = forced2d ? null : makeWebGL(canvas);
  if (!renderer) {
    var fresh = document.createElement('canvas');   // a canvas that tried WebGL cannot be given a 2D context
    fresh.id = 'ex-gl';
    canvas.replaceWith(fresh);
    canvas = fresh;
    renderer = makeCanvas2D(canvas);
    noticeEl.textContent = forced2d ? 'Canvas 2D renderer (requested).'
      : 'WebGL is unavailable in this browser: using the slower Canvas 2D renderer.';
    noticeEl.hidden = false;
  }

  /* ---------- drawing ---------- */
  // Hover rings, neighbour lines and the selection outline live on a 2D overlay, so moving the
  // mouse redraws only that; the points are redrawn when the view, colours or selection change.
  var pending = false, pointsDirty = true;
  function requestDraw(overlayOnly) {
    if (!overlayOnly) pointsDirty = true;
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () {
      pending = false;
      if (pointsDirty) { pointsDirty = false; state.drawn = renderer.draw(); }
      drawOverlay();
    });
  }
  function drawNow() {
    pointsDirty = false;
    state.drawn = renderer.draw();
    drawOverlay();
  }
  function ring(i, radius, colour, width) {
    var xy = maps[state.map].xy, p = toScreen(xy[2 * i], xy[2 * i + 1]);
    octx.beginPath();
    octx.arc(p[0], p[1], radius, 0, 6.2832);
    octx.strokeStyle = colour; octx.lineWidth = width;
    octx.stroke();
    return p;
  }
  function drawOverlay() {
    var dpr = state.dpr;
    octx.setTransform(dpr, 0, 0, dpr, 0, 0);
    octx.clearRect(0, 0, state.W, state.H);
    var r = pointSize() / 2, xy = maps[state.map].xy;
    if (state.focus >= 0) {
      var f = state.focus, pf = toScreen(xy[2 * f], xy[2 * f + 1]);
      octx.globalAlpha = 0.55;
      for (var k = 0; k < K; k++) {
        var j = NN[f * K + k];
        if (j < 0) continue;
        var pj = toScreen(xy[2 * j], xy[2 * j + 1]);
        octx.beginPath(); octx.moveTo(pf[0], pf[1]); octx.lineTo(pj[0], pj[1]);
        octx.strokeStyle = '#9fb0ff'; octx.lineWidth = 1; octx.stroke();
      }
      octx.globalAlpha = 1;
      for (k = 0; k < K; k++) if (NN[f * K + k] >= 0) ring(NN[f * K + k], r + 3, '#9fb0ff', 1.5);
      ring(f, r + 6, '#ffffff', 2.5);
    }
    if (state.hover >= 0) ring(state.hover, r + 4, '#ffd27a', 2);
    var d = state.drag;
    if (d && d.kind === 'box') {
      octx.fillStyle = 'rgba(91,108,255,0.14)'; octx.strokeStyle = '#8f9bff'; octx.lineWidth = 1.5;
      octx.setLineDash([5, 4]);
      octx.fillRect(Math.min(d.x0, d.x1), Math.min(d.y0, d.y1), Math.abs(d.x1 - d.x0), Math.abs(d.y1 - d.y0));
      octx.strokeRect(Math.min(d.x0, d.x1), Math.min(d.y0, d.y1), Math.abs(d.x1 - d.x0), Math.abs(d.y1 - d.y0));
      octx.setLineDash([]);
    } else if (d && d.kind === 'lasso' && d.path.length > 1) {
      octx.beginPath(); octx.moveTo(d.path[0][0], d.path[0][1]);
      for (var q = 1; q < d.path.length; q++) octx.lineTo(d.path[q][0], d.path[q][1]);
      octx.closePath();
      octx.fillStyle = 'rgba(91,108,255,0.14)'; octx.fill();
      octx.strokeStyle = '#8f9bff'; octx.lineWidth = 1.5; octx.setLineDash([5, 4]); octx.stroke(); octx.setLineDash([]);
    }
  }
  function resize() {
    var rect = stage.getBoundingClientRect();
    state.W = Math.max(1, rect.width); state.H = Math.max(1, rect.height);
    state.dpr = Math.min(window.devicePixelRatio || 1, 2);
    [canvas, overlay].forEach(function (c) {
      c.width = Math.round(state.W * state.dpr); c.height = Math.round(state.H * state.dpr);
    });
    drawNow();
  }

  /* ---------- thumbnails, tooltip, neighbours ---------- */
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function rowsOf(i, limit) {
    var out = [], cur = colourings[state.colour], seen = {};
    function add(name, text, rgb) {
      if (seen[name] || text === null || text === undefined) return;
      seen[name] = 1; out.push([name, text, rgb]);
    }
    var v = valueOf(cur, i);
    add(cur.name, v.text, v.rgb);
    colourings.forEach(function (c) {
      if (c !== cur && (c.name === E.primary || c.kind === 'score')) { var w = valueOf(c, i); add(c.name, w.text, w.rgb); }
    });
    columns.forEach(function (c) { add(c.name, columnText(c, i), null); });
    return out.slice(0, limit || 40);
  }
  function fillRows(dl, i, limit) {
    dl.textContent = '';
    rowsOf(i, limit).forEach(function (r) {
      dl.appendChild(el('dt', '', r[0]));
      var dd = el('dd');
      if (r[2]) { var sw = el('i'); sw.style.background = rgbCss(r[2]); dd.appendChild(sw); }
      dd.appendChild(document.createTextNode(String(r[1])));
      dl.appendChild(dd);
    });
  }
  var ttImg = tooltip.querySelector('.img'), ttId = tooltip.querySelector('.tt-id'), ttRows = tooltip.querySelector('.tt-rows');
  function showTooltip(i, px, py) {
    if (i < 0) { tooltip.hidden = true; return; }
    SPR.apply(ttImg, i);
    ttId.textContent = ids[i];
    fillRows(ttRows, i, 12);
    tooltip.hidden = false;
    var w = tooltip.offsetWidth, h = tooltip.offsetHeight;
    var x = px + 18, y = py + 18;
    if (x + w > state.W - 8) x = px - w - 18;
    if (y + h > state.H - 8) y = Math.max(8, state.H - h - 8);
    tooltip.style.left = Math.max(8, x) + 'px'; tooltip.style.top = y + 'px';
    tooltip.setAttribute('data-index', String(i));
  }
  var nnText = document.getElementById('ex-nn-text'), nnBox = document.getElementById('ex-nn'),
      focusBox = document.getElementById('ex-focus');
  function focus(i, opts) {
    opts = opts || {};
    state.focus = i;
    nnBox.textContent = ''; focusBox.textContent = '';
    if (i < 0 || i >= N) {
      state.focus = -1;
      nnText.textContent = 'Click a galaxy on the map.';
      requestDraw(true);
      return;
    }
    var big = SPR.thumb(i, ids[i], { tag: 'div' });
    focusBox.appendChild(big);
    var meta = el('div', 'meta');
    meta.appendChild(el('div', 'tt-id', ids[i]));
    var dl = el('dl', 'tt-rows');
    fillRows(dl, i, 3);
    meta.appendChild(dl);
    focusBox.appendChild(meta);
    var count = 0;
    for (var k = 0; k < K; k++) {
      var j = NN[i * K + k];
      if (j < 0) continue;
      var t = SPR.thumb(j, ids[j]);
      t.setAttribute('data-index', String(j));
      t.addEventListener('click', function () { focus(+this.getAttribute('data-index'), { centre: true }); });
      nnBox.appendChild(t);
      count++;
    }
    nnText.textContent = count + ' nearest neighbours in ' + E.neighbours.space + ':';
    var moved = false;
    if (opts.centre) {
      var xy = maps[state.map].xy, p = toScreen(xy[2 * i], xy[2 * i + 1]);
      if (p[0] < 40 || p[1] < 40 || p[0] > state.W - 40 || p[1] > state.H - 40 || opts.scroll) {
        state.view.cx = xy[2 * i]; state.view.cy = xy[2 * i + 1];
        state.view.zoom = Math.max(state.view.zoom, 2.5);
        moved = true;
      }
    }
    if (opts.scroll) root.scrollIntoView({ behavior: 'smooth', block: 'start' });
    requestDraw(!moved);
  }

  /* ---------- selection ---------- */
  var selText = document.getElementById('ex-sel-text'), btnDownload = document.getElementById('ex-download'),
      btnClear = document.getElementById('ex-clear'), selPanel = document.getElementById('ex-selection');
  function setSelection(list, add) {
    var mask = (add && state.selection) ? state.selection : new Uint8Array(N);
    for (var j = 0; j < list.length; j++) mask[list[j]] = 255;
    var count = 0;
    for (var i = 0; i < N; i++) if (mask[i]) count++;
    state.selection = count ? mask : null;
    state.selCount = count;
    renderer.setSelection(state.selection || selBuf);
    updateSelectionPanel();
    requestDraw();
  }
  function selectedIndices() {
    var out = [];
    if (!state.selection) return out;
    for (var i = 0; i < N; i++) if (state.selection[i]) out.push(i);
    return out;
  }
  function updateSelectionPanel() {
    var old = selPanel.querySelector('.ex-sel-bars');
    if (old) old.remove();
    btnDownload.disabled = btnClear.disabled = !state.selection;
    if (!state.selection) { selText.textContent = 'Nothing selected. Use Box or Lasso, or click a legend entry.'; return; }
    selText.textContent = state.selCount.toLocaleString('en') + ' galaxies selected.';
    var c = colourings[state.colour];
    if (c.type !== 'categorical') return;
    var counts = new Array(c.categories.length).fill(0), sel = state.selection;
    for (var i = 0; i < N; i++) if (sel[i]) counts[c.codes[i]]++;
    var order = counts.map(function (v, k) { return k; }).filter(function (k) { return counts[k] > 0; })
      .sort(function (a, b) { return counts[b] - counts[a]; }).slice(0, 6);
    var bars = el('div', 'ex-sel-bars');
    order.forEach(function (k) {
      var row = el('div'), sw = el('i');
      sw.style.background = rgbCss(c.rgb[k]);
      row.appendChild(sw);
      row.appendChild(el('span', '', c.categories[k]));
      row.appendChild(el('b', '', Math.round(100 * counts[k] / state.selCount) + '%'));
      bars.appendChild(row);
    });
    selText.after(bars);
  }
  function csvField(s) {
    s = String(s === null || s === undefined ? '' : s);
    return /[",\r\n]|^\s|\s$/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function selectionCSV() {
    var c = colourings[state.colour], lines = ['id,' + csvField(c.name)];
    selectedIndices().forEach(function (i) { lines.push(csvField(ids[i]) + ',' + csvField(valueOf(c, i).text)); });
    return lines.join('\r\n') + '\r\n';
  }
  btnDownload.addEventListener('click', function () {
    var blob = new Blob([selectionCSV()], { type: 'text/csv;charset=utf-8' });
    var url = URL.createObjectURL(blob), a = document.createElement('a');
    a.href = url; a.download = 'morphospace-selection.csv';
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 2000);
  });
  btnClear.addEventListener('click', function () { setSelection([], false); });
  function insidePolygon(x, y, poly) {
    var inside = false;
    for (var a = 0, b = poly.length - 1; a < poly.length; b = a++) {
      var xa = poly[a][0], ya = poly[a][1], xb = poly[b][0], yb = poly[b][1];
      if (((ya > y) !== (yb > y)) && (x < (xb - xa) * (y - ya) / (yb - ya) + xa)) inside = !inside;
    }
    return inside;
  }
  function finishSelection(d, add) {
    var xy = maps[state.map].xy, out = [];
    if (d.kind === 'box') {
      var a = toData(Math.min(d.x0, d.x1), Math.max(d.y0, d.y1)), b = toData(Math.max(d.x0, d.x1), Math.min(d.y0, d.y1));
      for (var i = 0; i < N; i++) {
        var x = xy[2 * i], y = xy[2 * i + 1];
        if (x >= a[0] && x <= b[0] && y >= a[1] && y <= b[1]) out.push(i);
      }
    } else {
      var poly = d.path.map(function (p) { return toData(p[0], p[1]); });
      var minx = Infinity, miny = Infinity, maxx = -Infinity, maxy = -Infinity;
      poly.forEach(function (p) { minx = Math.min(minx, p[0]); maxx = Math.max(maxx, p[0]); miny = Math.min(miny, p[1]); maxy = Math.max(maxy, p[1]); });
      for (i = 0; i < N; i++) {
        var px = xy[2 * i], py = xy[2 * i + 1];
        if (px >= minx && px <= maxx && py >= miny && py <= maxy && insidePolygon(px, py, poly)) out.push(i);
      }
    }
    setSelection(out, add);
  }

  /* ---------- legend ---------- */
  var legend = document.getElementById('ex-legend'), legendTitle = document.getElementById('ex-legend-title');
  function buildLegend() {
    var c = colourings[state.colour];
    legend.textContent = '';
    legendTitle.textContent = c.name;
    if (c.type === 'categorical') {
      c.categories.forEach(function (name, k) {
        var b = el('button'), sw = el('i');
        b.type = 'button';
        b.title = 'select these galaxies (shift: add to the selection)';
        sw.style.background = rgbCss(c.rgb[k]);
        b.appendChild(sw);
        b.appendChild(el('span', 'name', name));
        b.appendChild(el('span', 'count', (c.counts[k] || 0).toLocaleString('en')));
        b.addEventListener('click', function (ev) {
          var list = [];
          for (var i = 0; i < N; i++) if (c.codes[i] === k) list.push(i);
          setSelection(list, ev.shiftKey);
        });
        legend.appendChild(b);
      });
    } else {
      var ramp = el('div', 'ex-ramp'), stops = [];
      for (var s = 0; s <= 10; s++) stops.push(rgbCss(c.lut[Math.round(s / 10 * (c.lut.length - 1))]) + ' ' + (s * 10) + '%');
      ramp.style.background = 'linear-gradient(90deg,' + stops.join(',') + ')';
      legend.appendChild(ramp);
      var labels = el('div', 'ex-ramp-labels');
      labels.appendChild(el('span', '', '\u2264 ' + fmtNum(c.lo)));
      labels.appendChild(el('span', '', '\u2265 ' + fmtNum(c.hi)));
      legend.appendChild(labels);
      var top = el('button', '', 'select the 1% strangest');
      top.type = 'button';
      top.style.marginTop = '8px';
      top.addEventListener('click', function () {
        var order = [];
        for (var i = 0; i < N; i++) if (isFinite(c.values[i])) order.push(i);
        order.sort(function (a, b) { return c.values[b] - c.values[a]; });
        setSelection(order.slice(0, Math.max(1, Math.round(order.length / 100))), false);
      });
      legend.appendChild(top);
    }
  }

  /* ---------- controls ---------- */
  maps.forEach(function (m, k) { var o = el('option', '', m.name); o.value = String(k); selMap.appendChild(o); });
  colourings.forEach(function (c, k) {
    var o = el('option', '', c.name + (c.kind === 'clustering' ? '' : c.kind === 'label' ? ' (label)' : c.kind === 'score' ? ' (score)' : ''));
    o.value = String(k); selColour.appendChild(o);
  });
  function setMap(k) {
    state.map = k; selMap.value = String(k);
    renderer.setPositions(maps[k].xy);
    state.view = homeView();
    state.hover = -1; tooltip.hidden = true;
    requestDraw();
  }
  function setColour(k) {
    state.colour = k; selColour.value = String(k);
    fillColours(); buildLegend(); updateSelectionPanel();
    if (state.focus >= 0) focus(state.focus);
    requestDraw();
  }
  selMap.addEventListener('change', function () { setMap(+selMap.value); });
  selColour.addEventListener('change', function () { setColour(+selColour.value); });
  var modeButtons = root.querySelectorAll('.ex-modes button');
  function setMode(m) {
    state.mode = m;
    for (var j = 0; j < modeButtons.length; j++) modeButtons[j].classList.toggle('on', modeButtons[j].getAttribute('data-mode') === m);
    stage.classList.toggle('pan', m === 'pan');
  }
  for (var mb = 0; mb < modeButtons.length; mb++) {
    modeButtons[mb].addEventListener('click', function () { setMode(this.getAttribute('data-mode')); });
  }
  var search = document.createElement('input');
  search.type = 'search'; search.id = 'ex-search'; search.placeholder = 'find a galaxy id';
  search.setAttribute('aria-label', 'find a galaxy by id');
  root.querySelector('.ex-modes').after(search);
  search.addEventListener('keydown', function (ev) {
    if (ev.key !== 'Enter') return;
    var q = search.value.trim();
    if (!q) return;
    var i = indexOfId.has(q) ? indexOfId.get(q) : ids.findIndex(function (s) { return s.indexOf(q) === 0; });
    search.style.borderColor = i >= 0 ? '' : '#d3343a';
    if (i >= 0) focus(i, { centre: true });
  });

  /* ---------- pointer ---------- */
  function local(ev) { var r = overlay.getBoundingClientRect(); return [ev.clientX - r.left, ev.clientY - r.top]; }
  overlay.addEventListener('pointerdown', function (ev) {
    if (ev.button !== 0) return;
    var p = local(ev);
    overlay.setPointerCapture(ev.pointerId);
    var kind = ev.shiftKey && state.mode === 'pan' ? 'box' : state.mode;
    state.drag = { kind: kind, x0: p[0], y0: p[1], x1: p[0], y1: p[1], moved: 0, path: [p], cx: state.view.cx,
                   cy: state.view.cy, add: ev.ctrlKey || ev.metaKey || (ev.shiftKey && state.mode !== 'pan') };
    if (kind === 'pan') stage.classList.add('dragging');
    tooltip.hidden = true;
  });
  overlay.addEventListener('pointermove', function (ev) {
    var p = local(ev), d = state.drag;
    if (d) {
      d.moved = Math.max(d.moved, Math.abs(p[0] - d.x0) + Math.abs(p[1] - d.y0));
      d.x1 = p[0]; d.y1 = p[1];
      if (d.kind === 'pan') {
        var s = scale();
        state.view.cx = d.cx - (p[0] - d.x0) / s; state.view.cy = d.cy + (p[1] - d.y0) / s;
      } else if (d.kind === 'lasso') {
        var last = d.path[d.path.length - 1];
        if (Math.abs(last[0] - p[0]) + Math.abs(last[1] - p[1]) > 3) d.path.push(p);
      }
      requestDraw(d.kind !== 'pan');
      return;
    }
    var i = pick(p[0], p[1]);
    if (i !== state.hover) { state.hover = i; requestDraw(true); }
    showTooltip(i, p[0], p[1]);
  });
  function endDrag(ev) {
    var d = state.drag;
    if (!d) return;
    state.drag = null;
    stage.classList.remove('dragging');
    var p = local(ev);
    if (d.moved < 4) {
      focus(pick(p[0], p[1]));
    } else if (d.kind === 'box' || (d.kind === 'lasso' && d.path.length > 2)) {
      finishSelection(d, d.add);
    }
    requestDraw(true);
  }
  overlay.addEventListener('pointerup', endDrag);
  overlay.addEventListener('pointercancel', function () { state.drag = null; stage.classList.remove('dragging'); requestDraw(true); });
  overlay.addEventListener('pointerleave', function () {
    if (!state.drag) { state.hover = -1; tooltip.hidden = true; requestDraw(true); }
  });
  overlay.addEventListener('wheel', function (ev) {
    ev.preventDefault();
    var p = local(ev), before = toData(p[0], p[1]);
    var z = state.view.zoom * Math.exp(-ev.deltaY * (ev.deltaMode === 1 ? 0.05 : 0.0015));
    state.view.zoom = Math.min(400, Math.max(0.3, z));
    var after = toData(p[0], p[1]);
    state.view.cx += before[0] - after[0]; state.view.cy += before[1] - after[1];
    tooltip.hidden = true;
    requestDraw();
  }, { passive: false });
  overlay.addEventListener('dblclick', function () { state.view = homeView(); requestDraw(); });
  root.addEventListener('keydown', function (ev) {
    if (ev.target === search) return;
    if (ev.key === 'Escape') { setSelection([], false); focus(-1); }
    else if (ev.key === 'p' || ev.key === 'P') setMode('pan');
    else if (ev.key === 'b' || ev.key === 'B') setMode('box');
    else if (ev.key === 'l' || ev.key === 'L') setMode('lasso');
  });
  root.tabIndex = -1;

  /* ---------- start ---------- */
  renderer.setSelection(selBuf);
  setMode('pan');
  setMap(0);
  setColour(0);
  resize();
  if ('ResizeObserver' in window) new ResizeObserver(function () { resize(); }).observe(stage);
  else window.addEventListener('resize', resize);
  statusEl.textContent = N.toLocaleString('en') + ' galaxies \u00b7 ' + (renderer.kind === 'webgl' ? 'WebGL' : 'Canvas 2D') +
    (E.nTotal > N ? ' \u00b7 a random ' + N.toLocaleString('en') + ' of ' + E.nTotal.toLocaleString('en') : '');

  window.morphospaceExplorer = {
    pointCount: function () { return state.drawn; },
    total: function () { return N; },
    renderer: function () { return renderer.kind; },
    ids: function () { return ids.slice(); },
    indexOf: function (id) { return indexOfId.has(id) ? indexOfId.get(id) : -1; },
    /* viewport (client) coordinates of point i on the current map */
    screenPosition: function (i) {
      var xy = maps[state.map].xy, p = toScreen(xy[2 * i], xy[2 * i + 1]), r = overlay.getBoundingClientRect();
      return { x: r.left + p[0], y: r.top + p[1] };
    },
    pick: function (clientX, clientY) { var r = overlay.getBoundingClientRect(); return pick(clientX - r.left, clientY - r.top); },
    neighbours: function (i) { return Array.prototype.slice.call(NN, i * K, i * K + K).filter(function (j) { return j >= 0; }); },
    focus: focus,
    focused: function () { return state.focus; },
    hovered: function () { return state.hover; },
    setMap: function (k) { setMap(typeof k === 'number' ? k : maps.findIndex(function (m) { return m.name === k; })); },
    setColouring: function (k) { setColour(typeof k === 'number' ? k : colourings.findIndex(function (c) { return c.name === k; })); },
    maps: function () { return maps.map(function (m) { return m.name; }); },
    colourings: function () { return colourings.map(function (c) { return c.name; }); },
    select: function (list, add) { setSelection(list, !!add); },
    selection: selectedIndices,
    selectionCSV: selectionCSV,
    setMode: setMode,
    view: function () { return { cx: state.view.cx, cy: state.view.cy, zoom: state.view.zoom }; },
    setView: function (v) { state.view = { cx: +v.cx, cy: +v.cy, zoom: +v.zoom }; drawNow(); },
    redraw: drawNow
  };
  requestAnimationFrame(function () {
    drawNow();
    window.morphospaceReadyMs = performance.now() - t0;   // since this script started
    window.morphospaceReadyAt = performance.now();        // since navigation started
    window.morphospaceReady = true;
    root.setAttribute('data-ready', 'true');
    root.setAttribute('data-points', String(state.drawn));
    document.dispatchEvent(new CustomEvent('morphospace-ready'));
  });
})();
