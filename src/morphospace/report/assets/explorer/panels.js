  /* morphospace explorer, part 4 of 7 (assets/explorer/panels.js): the panels beside the map.
   *
   * The tooltip (thumbnail, sky position, tag and catalogue row of the galaxy under the pointer), "more
   * like this" (the focused galaxy and its nearest neighbours), the selection (its label mix and the CSV
   * download, with RA/Dec when known) and the legend of the current colouring (clusters can be named
   * there). Text from the data or the user only ever goes through textContent. */
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
      if (c !== cur && tipColouring(c) && colReady(c)) { var w = valueOf(c, i); add(c.name, w.text, w.rgb); }
    });
    var t = cur.kind === 'tags' ? null : tagOf(i);   // (the "tags" colouring shows it already)
    if (t) add('tag', t.name, t.rgb);
    var sky = skyText(i);
    if (sky) { add('RA, Dec (deg)', sky[0], null); add('RA, Dec (hms, dms)', sky[1], null); }
    columns.forEach(function (c) { add(c.name, columnText(c, i), null); });
    return out.slice(0, limit || 40);
  }
  function fillRows(dl, i, limit) {
    dl.textContent = '';
    rowsOf(i, limit).forEach(function (r) {
      dl.appendChild(el('dt', '', r[0]));
      var dd = el('dd');
      if (r[2]) { var sw = el('i'); sw.style.background = rgbCss(r[2]); dd.appendChild(sw); }
      var v = el('span', '', r[1]);
      v.dir = 'auto';   // a right-to-left name stays in its place
      dd.appendChild(v);
      dl.appendChild(dd);
    });
  }
  /* colourings a tooltip shows besides the current one: the primary clustering and the scores */
  function tipColouring(c) { return c.name === E.primary || c.kind === 'score'; }
  var TIP_RES = colourings.filter(tipColouring).map(function (c) { return c.res; });
  var ttImg = tooltip.querySelector('.img'), ttId = tooltip.querySelector('.tt-id'), ttRows = tooltip.querySelector('.tt-rows');
  function showTooltip(i, px, py) {
    if (i < 0) { tooltip.hidden = true; return; }
    if (+tooltip.getAttribute('data-index') !== i || tooltip.hidden) SPR.apply(ttImg, i);
    if (rowsReady([i])) {
      ttId.textContent = ids[i];
      fillRows(ttRows, i, 12);
      tooltip.setAttribute('data-ready', String(i));
    } else {   // its shard beside the page is on its way: the thumbnail now, the rest when it is in
      ttId.textContent = '\u2026'; ttRows.textContent = '';
      tooltip.setAttribute('data-ready', '');
      needRes(TIP_RES, function () {});
      needRows([i], function () { if (state.hover === i && !tooltip.hidden) showTooltip(i, px, py); });
    }
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
    if (i >= 0 && i < N && !rowsReady([i])) { needRows([i], function () { focus(i, opts); }); return; }
    if (i >= 0 && i < N) {   // the neighbours' ids (their shards beside the page) before showing them
      var nb = Array.prototype.slice.call(NN, i * K, i * K + K).filter(function (j) { return j >= 0; });
      if (!idsReady(nb)) { needIds(nb, function () { focus(i, opts); }); return; }
    }
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
    // an approximate search says how many of the true nearest it finds (measured as its index was built)
    var how = E.neighbours.index === 'approximate' && typeof E.neighbours.recall === 'number'
      ? ' (approximate search: about ' + Math.round(100 * E.neighbours.recall) + '% of the true nearest found)' : '';
    nnText.textContent = count + ' nearest neighbours in ' + E.neighbours.space + how + ':';
    var moved = false;
    if (opts.centre) {
      var xy = maps[state.map].xy, p = toScreen(xy[2 * i], xy[2 * i + 1]);
      if (p[0] < 40 || p[1] < 40 || p[0] > state.W - 40 || p[1] > state.H - 40 || opts.scroll || opts.always) {
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
      row.appendChild(el('span', '', catText(c, k)));
      row.appendChild(el('b', '', Math.round(100 * counts[k] / state.selCount) + '%'));
      bars.appendChild(row);
    });
    selText.after(bars);
  }
  /* One CSV field (RFC 4180): quoted when it holds a comma, quote, line break or edge space. guard: text
   * a spreadsheet would run as a formula (=, +, -, @, tab or CR first, not a plain number) gets a leading
   * apostrophe; ids are written exactly as they are, so they still match the catalogue. */
  function csvField(s, guard) {
    s = String(s === null || s === undefined ? '' : s);
    if (guard && /^[=+\-@\t\r]/.test(s) && !/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) s = "'" + s;
    return /[",\r\n]|^\s|\s$/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function selectionCSV() {
    var c = colourings[state.colour], lines = ['id,' + csvField(c.name, true) + (SKY ? ',ra,dec' : '')];
    selectedIndices().forEach(function (i) {
      var line = csvField(ids[i]) + ',' + csvField(valueOf(c, i).text, true);
      // degrees, every digit of the catalogue's float64
      if (SKY) line += ',' + (isFinite(SKY.ra[i]) ? String(SKY.ra[i]) : '') + ',' + (isFinite(SKY.dec[i]) ? String(SKY.dec[i]) : '');
      lines.push(line);
    });
    return lines.join('\r\n') + '\r\n';
  }
  function downloadText(text, name) {
    var blob = new Blob([text], { type: 'text/csv;charset=utf-8' });
    var url = URL.createObjectURL(blob), a = document.createElement('a');
    a.href = url; a.download = name;
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 2000);
  }
  btnDownload.addEventListener('click', function () {
    var list = selectedIndices();   // ids (and sky positions) of the selection beside the page first
    (SKY ? needRows : needIds)(list, function () { downloadText(selectionCSV(), 'morphospace-selection.csv'); });
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
        var row = el('div', 'ex-leg'), b = el('button'), sw = el('i');
        b.type = 'button';
        b.className = 'ex-leg-sel';
        b.title = 'select these galaxies (shift: add to the selection)';
        sw.style.background = rgbCss(c.rgb[k]);
        b.appendChild(sw);
        var nm = el('span', 'name', name);
        if (c.names[k]) {
          var cn = el('span', 'cname', c.names[k]);
          cn.dir = 'auto';
          nm.appendChild(cn);
        }
        b.appendChild(nm);
        b.appendChild(el('span', 'count', (c.counts[k] || 0).toLocaleString('en')));
        b.addEventListener('click', function (ev) {
          var list = [];
          for (var i = 0; i < N; i++) if (c.codes[i] === k) list.push(i);
          setSelection(list, ev.shiftKey);
        });
        row.appendChild(b);
        if (nameable(c, k)) {
          var ed = el('button', 'ex-edit', '\u270e');
          ed.type = 'button';
          ed.title = 'name this cluster (also: double-click the entry)';
          ed.setAttribute('aria-label', 'name cluster ' + name);
          var edit = function () { editInline(row, c.names[k] || '', function (v) { setClusterName(c, k, v); }); };
          ed.addEventListener('click', edit);
          b.addEventListener('dblclick', edit);
          row.appendChild(ed);
        }
        legend.appendChild(row);
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

