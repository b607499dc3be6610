  /* morphospace explorer, part 7 of 7 (assets/explorer/interaction.js): controls, pointer and start.
   *
   * The map / colouring menus and drag modes; pan, zoom, hover, click, box and lasso with the pointer;
   * keyboard shortcuts (P, B, L, Escape; the label keys are in labels.js); then the first draw and
   * window.morphospaceExplorer, the scripting (and testing) interface. */
  /* ---------- controls ---------- */
  maps.forEach(function (m, k) { var o = el('option', '', m.name); o.value = String(k); selMap.appendChild(o); });
  colourings.forEach(function (c, k) {
    var o = el('option', '', c.name + (c.kind === 'clustering' ? '' : c.kind === 'label' ? ' (label)' : c.kind === 'score' ? ' (score)' :
                                        c.kind === 'tags' ? ' (yours)' : ''));
    o.value = String(k); selColour.appendChild(o);
  });
  var wantMap = -1, wantColour = -1;   // beside the page: the map / colouring last asked for, while it loads
  function setMap(k) {
    selMap.value = String(k);
    if (!maps[k].xy) { wantMap = k; needRes([maps[k].res], function () { if (wantMap === k) setMap(k); }); return; }
    wantMap = -1;
    state.map = k;
    renderer.setPositions(maps[k].xy);
    state.view = homeView();
    state.hover = -1; tooltip.hidden = true;
    requestDraw();
  }
  function setColour(k) {
    selColour.value = String(k);
    var c = colourings[k];
    if (!colReady(c)) { wantColour = k; needRes([c.res], function () { if (wantColour === k) setColour(k); }); return; }
    wantColour = -1;
    state.colour = k;
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
        markMoving();
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
    markMoving();
    var p = local(ev), before = toData(p[0], p[1]);
    var z = state.view.zoom * Math.exp(-ev.deltaY * (ev.deltaMode === 1 ? 0.05 : 0.0015));
    state.view.zoom = Math.min(400, Math.max(0.3, z));
    var after = toData(p[0], p[1]);
    state.view.cx += before[0] - after[0]; state.view.cy += before[1] - after[1];
    tooltip.hidden = true;
    requestDraw();
  }, { passive: false });
  overlay.addEventListener('dblclick', function () { state.view = homeView(); requestDraw(); });
  // the mode keys, like the tag keys, work with the pointer over the map: nothing has the focus at
  // first, and the Box button's "(B)" did nothing until the explorer had been clicked
  // anywhere over the explorer: over the map only, they stopped while the pointer crossed the tooltip or legend
  var overMap = false;
  root.addEventListener('pointerenter', function () { overMap = true; });
  root.addEventListener('pointerleave', function () { overMap = false; });
  document.addEventListener('keydown', function (ev) {
    if (!(overMap || root.contains(ev.target)) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.target && (ev.target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(ev.target.tagName))) return;
    if (ev.key === 'Escape') { setSelection([], false); focus(-1); }
    else if (ev.key === 'p' || ev.key === 'P') setMode('pan');
    else if (ev.key === 'b' || ev.key === 'B') setMode('box');
    else if (ev.key === 'l' || ev.key === 'L') setMode('lasso');
  });
  root.tabIndex = -1;

  /* ---------- start (beside the page: once the first map and colouring are in) ---------- */
  if (LAZY) needRes([maps[0].res, colourings[0].res], start); else start();
  function start() {
    state.started = true;
    renderer.setSelection(selBuf);
    setMode('pan');
    setMap(0);
    setColour(0);
    resize();
    if ('ResizeObserver' in window) new ResizeObserver(function () { resize(); }).observe(stage);
    else window.addEventListener('resize', resize);
    statusEl.textContent = N.toLocaleString('en') + ' galaxies \u00b7 ' + (renderer.kind === 'webgl' ? 'WebGL' : 'Canvas 2D') +
      (E.nTotal > N ? ' \u00b7 a random ' + N.toLocaleString('en') + ' of ' + E.nTotal.toLocaleString('en') : '') +
      (LAZY ? ' \u00b7 data loaded as needed from report_files/' : '');

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
      search: function (q, limit) { return searchMatches(q, limit).list; },
      labels: function () { return lab.labels.slice(); },
      addLabel: addLabel,
      tags: function () { var o = []; lab.tags.forEach(function (v, id) { o.push([id, v]); }); return o; },
      tag: function (list, name) { tagIndices(list, name === undefined ? null : name); },
      labelsCSV: labelsCSV,
      clusterNames: function (k) { var c = colourings[k === undefined ? state.colour : k]; return Object.assign({}, c.names); },
      setClusterName: function (k, cat, name) { setClusterName(colourings[k], cat, name); },
      storageKey: function () { return STORE_KEY; },
      sky: function (i) { return SKY && isFinite(SKY.ra[i]) ? [SKY.ra[i], SKY.dec[i]] : null; },
      redraw: drawNow,
      /* beside the page: whether the data are, and a promise of the rows of galaxies (all ids with no list) */
      lazy: function () { return !!LAZY; },
      ensure: function (list) {
        return new Promise(function (ok) { if (list) needRows(list, ok); else needAllIds(ok); });
      },
      loadedChunks: function () { return Object.keys(loadHave).filter(function (n) { return loadHave[n]; }); }
    };
    requestAnimationFrame(function () {
      drawNow();
      window.morphospaceReadyMs = performance.now() - t0;   // since this script started
      window.morphospaceReadyAt = performance.now();        // since navigation started
      window.morphospaceReady = true;
      root.setAttribute('data-ready', 'true');
      root.setAttribute('data-points', String(state.drawn));
      document.dispatchEvent(new CustomEvent('morphospace-ready'));
      if (LAZY) setTimeout(function () {   // after the first frame: what a first hover needs
        if (!maps[state.map].grid) buildGrid(maps[state.map]);
        needRes(TIP_RES, function () {});
      }, 50);
    });
  }
