  /* morphospace explorer, part 3 of 7 (assets/explorer/render.js): drawing the points.
   *
   * Point colours from the current colouring, the WebGL renderer (one draw call for every point) and its
   * Canvas 2D fallback (one path per colour), and the 2D overlay (the sky map's RA/Dec graticule, outlines
   * of tagged galaxies, hover ring, neighbour lines, the box or lasso being drawn) that is redrawn alone
   * when only the pointer moves. */
  /* ---------- colours ---------- */
  function fillColours() {
    var c = colourings[state.colour], cat = c.type === 'categorical', rgb;
    for (var i = 0; i < N; i++) {   // (valueOf's colour, without making its text a million times)
      if (cat) rgb = c.rgb[c.codes[i]];
      else { var v = c.values[i]; rgb = isFinite(v) ? c.lut[lutIndex(c, v)] : MISSING_RGB; }
      colourBuf[4 * i] = rgb[0]; colourBuf[4 * i + 1] = rgb[1]; colourBuf[4 * i + 2] = rgb[2];
      colourBuf[4 * i + 3] = 225;
    }
    renderer.setColours(colourBuf);
  }

  /* ---------- renderers ---------- */
  function makeWebGL(cv) {
    var gl = null;
    try {
      gl = cv.getContext('webgl', { antialias: N <= 50000, alpha: false, premultipliedAlpha: false, depth: false }) ||
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
    var uintIdx = gl.getExtension('OES_element_index_uint'), bOrder = null;
    /* the points in a fixed random order, made once: its first m are a fair sample of the map, drawn while it moves */
    function sampleOrder() {
      if (bOrder || !uintIdx) return bOrder;
      var order = new Uint32Array(N), seed = 12345;
      for (var i = 0; i < N; i++) order[i] = i;
      for (i = N - 1; i > 0; i--) {
        seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
        var j = seed % (i + 1), t = order[i]; order[i] = order[j]; order[j] = t;
      }
      bOrder = gl.createBuffer();
      gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, bOrder);
      gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, order, gl.STATIC_DRAW);
      return bOrder;
    }
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA);
    gl.disable(gl.DEPTH_TEST);
    var sizeRange = gl.getParameter(gl.ALIASED_POINT_SIZE_RANGE);
    return {
      kind: 'webgl',
      setPositions: function (xy) { gl.bindBuffer(gl.ARRAY_BUFFER, bPos); gl.bufferData(gl.ARRAY_BUFFER, xy, gl.STATIC_DRAW); },
      setColours: function (rgba) { gl.bindBuffer(gl.ARRAY_BUFFER, bCol); gl.bufferData(gl.ARRAY_BUFFER, rgba, gl.DYNAMIC_DRAW); },
      setSelection: function (mask) { gl.bindBuffer(gl.ARRAY_BUFFER, bSel); gl.bufferData(gl.ARRAY_BUFFER, mask, gl.DYNAMIC_DRAW); },
      draw: function (budget) {
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
        if (budget && budget < N && sampleOrder()) {
          gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, bOrder);
          gl.drawElements(gl.POINTS, budget, gl.UNSIGNED_INT, 0);
          return budget;
        }
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
  // While the view moves (wheel, pan) a map of more than MOVE_BUDGET points draws a random MOVE_BUDGET of them
  // (WebGL), then every point once no wheel or drag has come for STILL_MS.
  var pending = false, pointsDirty = true, MOVE_BUDGET = 60000, STILL_MS = 250, stillTimer = 0;
  function markMoving() {
    if (N <= MOVE_BUDGET) return;
    state.moving = true;
    clearTimeout(stillTimer);
    stillTimer = setTimeout(function () { state.moving = false; requestDraw(); }, STILL_MS);
  }
  function requestDraw(overlayOnly) {
    if (!overlayOnly) pointsDirty = true;
    if (pending || !state.started) return;   // (before the first map is in, start() draws)
    pending = true;
    requestAnimationFrame(function () {
      pending = false;
      if (pointsDirty) {
        pointsDirty = false;
        state.drawn = renderer.draw(state.moving ? MOVE_BUDGET : 0);
      }
      drawOverlay();
    });
  }
  function drawNow() {
    if (!state.started) return;
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
    drawGraticule(maps[state.map]);
    drawOutlines(r);
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
  /* the sky map's RA/Dec lines, labelled where they enter the view */
  function drawGraticule(m) {
    if (!m.lines.length) return;
    octx.save();
    octx.lineWidth = 1; octx.strokeStyle = 'rgba(159,176,255,0.22)';
    octx.fillStyle = 'rgba(200,210,240,0.75)'; octx.font = '11px sans-serif';
    m.lines.forEach(function (g) {
      var a = g.xy, first = null;
      octx.beginPath();
      for (var j = 0; j < a.length; j += 2) {
        var p = toScreen(a[j], a[j + 1]);
        if (j === 0) octx.moveTo(p[0], p[1]); else octx.lineTo(p[0], p[1]);
        var inView = p[0] >= 4 && p[1] >= 4 && p[0] <= state.W - 30 && p[1] <= state.H - 4;
        if (inView && (!first || 2 * g.at === j)) first = p;   // the line's own label point when in view
      }
      octx.stroke();
      if (first && g.label) octx.fillText(g.label, first[0] + 3, first[1] - 3);
    });
    octx.restore();
  }
  /* a ring in its label's colour around each tagged galaxy (up to MAX_OUTLINED: beyond, the "tags" colouring) */
  function drawOutlines(r) {
    var xy = maps[state.map].xy, total = 0;
    tagPoints.forEach(function (list) { total += list.length; });
    if (!total || total > MAX_OUTLINED) return;
    octx.lineWidth = 1.6;
    tagPoints.forEach(function (list, k) {
      if (!list.length) return;
      octx.beginPath();
      list.forEach(function (i) {
        var p = toScreen(xy[2 * i], xy[2 * i + 1]);
        if (p[0] < -9 || p[1] < -9 || p[0] > state.W + 9 || p[1] > state.H + 9) return;
        octx.moveTo(p[0] + r + 2.5, p[1]);
        octx.arc(p[0], p[1], r + 2.5, 0, 6.2832);
      });
      octx.strokeStyle = rgbCss(labelRGB(k));
      octx.stroke();
    });
  }
  function resize() {
    // the canvases' own box, inside the stage's border: the pointer is read against it too
    var rect = overlay.getBoundingClientRect();
    state.W = Math.max(1, rect.width); state.H = Math.max(1, rect.height);
    state.dpr = Math.min(window.devicePixelRatio || 1, 2);
    [canvas, overlay].forEach(function (c) {
      c.width = Math.round(state.W * state.dpr); c.height = Math.round(state.H * state.dpr);
    });
    drawNow();
  }

