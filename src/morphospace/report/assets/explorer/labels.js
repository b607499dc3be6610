  /* morphospace explorer, part 5 of 7 (assets/explorer/labels.js): the user's labels.
   *
   * Cluster names (the legend's pencil), and tags: keys 1-9 give the galaxy under the pointer (else the
   * selection, else the clicked galaxy) the label of that number, 0 takes a tag away. The tags are a
   * colouring ("tags") and outlines on every map, and download as the CSV that
   * `morphospace classify RUN --labels FILE.csv --column NAME` reads (id,<column>). Both live in the
   * browser's local storage under the report's E.storageKey (one per run: every file:// page shares one
   * storage), as {v: 1, labels: [name], tags: [[id, label]], clusters: [[clustering, [[category, name]]]],
   * column}; an entry that cannot be read is set aside (key + ':damaged') with a note, never a crash.
   * A clustering's names are kept under its name and stamp (a hash of its labels, "name@stamp"): made
   * again, its cluster 0 holds other galaxies, and the names given to the earlier one are not shown.
   * Names the user types are only ever shown with textContent. */
  var TAG_RGB = [[255, 107, 107], [255, 217, 61], [107, 203, 119], [77, 150, 255], [199, 125, 255],
                 [255, 159, 28], [46, 196, 182], [241, 91, 181], [0, 187, 249], [155, 93, 229]];
  var MAX_NAME = 120, MAX_LABELS = 500, MAX_OUTLINED = 5000;
  var STORE_KEY = String(E.storageKey || 'morphospace:unkeyed');
  var lab = { labels: [], tags: new Map(), clusters: new Map(), column: 'label' };
  var store = null, armed = null, pointerInside = false;
  var tagPoints = [];            // per label: the map's points with that tag (for the outlines)
  var labList = document.getElementById('ex-label-list'), labNote = document.getElementById('ex-label-note'),
      labNew = document.getElementById('ex-label-new'), labAdd = document.getElementById('ex-label-add'),
      labColumn = document.getElementById('ex-label-column'), labDownload = document.getElementById('ex-label-download'),
      labCount = document.getElementById('ex-label-count');

  function note(msg, bad) {
    labNote.textContent = msg;
    labNote.hidden = !msg;
    labNote.classList.toggle('bad', !!bad);
  }
  /* a name as kept: control characters as spaces, trimmed, at most MAX_NAME characters */
  function cleanName(s) {
    return Array.from(String(s === null || s === undefined ? '' : s).replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').trim())
      .slice(0, MAX_NAME).join('');
  }
  function labelRGB(k) { return TAG_RGB[k % TAG_RGB.length]; }
  function tagOf(i) {
    var name = lab.tags.get(ids[i]);
    if (name === undefined) return null;
    return { name: name, rgb: labelRGB(lab.labels.indexOf(name)) };
  }

  /* ---------- local storage ---------- */
  function pairs(v, what) {
    if (!Array.isArray(v)) throw new Error(what + ' is not a list');
    v.forEach(function (p) {
      if (!Array.isArray(p) || p.length !== 2 || typeof p[0] !== 'string') throw new Error('a malformed entry in ' + what);
    });
    return v;
  }
  function parseStored(raw) {
    var o = JSON.parse(raw);
    if (!o || typeof o !== 'object' || o.v !== 1) throw new Error('not a version-1 entry');
    if (!Array.isArray(o.labels) || o.labels.some(function (x) { return typeof x !== 'string'; })) throw new Error('labels is not a list of names');
    var out = { labels: [], tags: new Map(), clusters: new Map(), column: typeof o.column === 'string' && o.column ? o.column : 'label' };
    o.labels.forEach(function (x) { x = cleanName(x); if (x && out.labels.indexOf(x) < 0) out.labels.push(x); });
    pairs(o.tags, 'tags').forEach(function (p) {
      var name = cleanName(p[1]);
      if (!name) return;
      if (out.labels.indexOf(name) < 0) out.labels.push(name);   // a tag keeps its label
      out.tags.set(p[0], name);
    });
    pairs(o.clusters || [], 'clusters').forEach(function (p) {
      var m = new Map();
      pairs(p[1], 'cluster names').forEach(function (q) { var nm = cleanName(q[1]); if (nm) m.set(q[0], nm); });
      out.clusters.set(p[0], m);
    });
    return out;
  }
  function load() {
    try { store = window.localStorage; store.getItem(STORE_KEY); } catch (e) { store = null; }
    if (!store) { note('Local storage is unavailable here: tags and names last until the page is closed.', true); }
    var raw = store ? store.getItem(STORE_KEY) : null;
    if (raw === null) { lab.labels = ['interesting']; return; }
    try {
      lab = parseStored(raw);
    } catch (e) {
      lab = { labels: ['interesting'], tags: new Map(), clusters: new Map(), column: 'label' };
      var kept = STORE_KEY + ':damaged';
      try { store.setItem(kept, raw); } catch (e2) { kept = null; }
      note('The tags saved for this report could not be read (' + (e && e.message ? e.message : 'unknown error') +
           '): starting afresh.' + (kept ? ' The damaged entry is kept under "' + kept + '".' : ''), true);
    }
  }
  function save() {
    if (!store) return;
    var clusters = [];
    lab.clusters.forEach(function (m, name) { if (m.size) clusters.push([name, Array.from(m.entries())]); });
    try {
      store.setItem(STORE_KEY, JSON.stringify({ v: 1, labels: lab.labels, tags: Array.from(lab.tags.entries()),
                                                clusters: clusters, column: lab.column }));
    } catch (e) {
      note('Could not save the tags (' + (e && e.name) + '): they last until the page is closed.', true);
    }
  }

  /* ---------- cluster names ---------- */
  function nameable(c, k) { return c.kind === 'clustering' && c.categories[k] !== '(not clustered)'; }
  /* where a clustering's names are kept; an entry by name alone (written before stamps) is not shown on a
   * stamped clustering: which clusters it named cannot be told */
  function namesKey(c) { return c.stamp ? c.name + '@' + c.stamp : c.name; }
  function applyClusterNames() {
    colourings.forEach(function (c) {
      if (c.kind !== 'clustering') return;
      var m = lab.clusters.get(namesKey(c));
      c.names = {};
      if (m) c.categories.forEach(function (cat, k) { if (m.has(cat)) c.names[k] = m.get(cat); });
    });
  }
  function setClusterName(c, k, name) {
    name = cleanName(name);
    var key = namesKey(c);
    if (key !== c.name) lab.clusters.delete(c.name);  // an entry by name alone: of an earlier clustering
    if (!lab.clusters.has(key)) lab.clusters.set(key, new Map());
    var m = lab.clusters.get(key);
    if (name) m.set(c.categories[k], name); else m.delete(c.categories[k]);
    save();
    applyClusterNames();
    buildLegend(); updateSelectionPanel();
    if (state.focus >= 0) focus(state.focus);
  }
  /* an input in place of a row's content: Enter or leaving it keeps the text, Escape keeps the old one */
  function editInline(row, value, done) {
    var input = el('input', 'ex-inline');
    input.type = 'text'; input.value = value; input.maxLength = MAX_NAME; input.dir = 'auto';
    input.setAttribute('aria-label', 'name');
    var kids = Array.prototype.slice.call(row.children), finished = false;
    kids.forEach(function (k) { k.hidden = true; });
    row.appendChild(input);
    function finish(keep) {
      if (finished) return;
      finished = true;
      input.remove();
      kids.forEach(function (k) { k.hidden = false; });
      if (keep) done(input.value);
    }
    input.addEventListener('keydown', function (ev) {
      ev.stopPropagation();
      if (ev.key === 'Enter') finish(true);
      else if (ev.key === 'Escape') finish(false);
    });
    input.addEventListener('blur', function () { finish(true); });
    input.focus();
    input.select();
  }

  /* ---------- tags ---------- */
  var tagColouring = { name: 'tags', kind: 'tags', type: 'categorical', codes: new Int16Array(N), categories: [],
                       rgb: [], counts: [], names: {} };
  colourings.push(tagColouring);
  function refreshTags() {
    var L = lab.labels, index = new Map();
    L.forEach(function (n, k) { index.set(n, k); });
    tagColouring.categories = L.concat(['(untagged)']);
    tagColouring.rgb = L.map(function (n, k) { return labelRGB(k); }).concat([MISSING_RGB]);
    var counts = new Array(L.length + 1).fill(0);
    tagPoints = L.map(function () { return []; });
    // tags are kept by id: beside the page every id is loaded first (untagged until then)
    var byId = lab.tags.size > 0 && idsComplete();
    if (lab.tags.size > 0 && !byId) needAllIds(refreshTags);
    for (var i = 0; i < N; i++) {
      var t = byId ? lab.tags.get(ids[i]) : undefined, k = t === undefined ? L.length : index.get(t);
      tagColouring.codes[i] = k;
      counts[k]++;
      if (k < L.length) tagPoints[k].push(i);
    }
    tagColouring.counts = counts;
    renderLabels();
    if (!tooltip.hidden && state.hover >= 0) fillRows(ttRows, state.hover, 12);   // the open tooltip shows the tag
    if (colourings[state.colour] === tagColouring) { fillColours(); buildLegend(); updateSelectionPanel(); }
    requestDraw(colourings[state.colour] !== tagColouring);
  }
  function tagIndices(list, name, done) {
    needIds(list, function () {
      list.forEach(function (i) { if (name === null) lab.tags.delete(ids[i]); else lab.tags.set(ids[i], name); });
      save();
      refreshTags();
      if (done) done();
    });
  }
  /* what a key acts on: the hovered galaxy, else the selection, else the clicked galaxy */
  function tagTarget() {
    if (state.hover >= 0) return { list: [state.hover], what: ids[state.hover] };
    if (state.selection) { var s = selectedIndices(); return { list: s, what: s.length.toLocaleString('en') + ' selected galaxies' }; }
    if (state.focus >= 0) return { list: [state.focus], what: ids[state.focus] };
    return null;
  }
  function tagCurrent(name) {
    var t = tagTarget();
    if (!t) { note('Hover a galaxy, click one or select some, then press the label\u2019s key.'); return; }
    tagIndices(t.list, name, function () {
      var what = t.what === undefined ? ids[t.list[0]] : t.what;   // (an id beside the page known only now)
      note(name === null ? 'Tag removed from ' + what + '.' : 'Tagged ' + what + ' \u201c' + name + '\u201d.');
    });
  }
  /* a name `morphospace classify` reads as no label ("none", "NA"...): the file downloaded was refused */
  function noLabel(name) {
    if ((E.noLabelNames || []).indexOf(name.toLowerCase()) < 0) return false;
    note('\u201c' + name + '\u201d reads as no label in morphospace classify: choose another name.', true);
    return true;
  }
  function addLabel(name) {
    name = cleanName(name);
    if (!name) { note('A label needs a name.', true); return false; }
    if (noLabel(name)) return false;
    if (lab.labels.indexOf(name) >= 0) { note('There is already a label \u201c' + name + '\u201d.', true); return false; }
    if (lab.labels.length >= MAX_LABELS) { note('At most ' + MAX_LABELS + ' labels.', true); return false; }
    lab.labels.push(name);
    save(); refreshTags();
    var k = lab.labels.length;
    note('Label \u201c' + name + '\u201d added' + (k <= 9 ? ': key ' + k + '.' : ' (no key: click it to tag).'));
    return true;
  }
  function renameLabel(old, name) {
    name = cleanName(name);
    if (!name || name === old || noLabel(name)) return;
    if (lab.labels.indexOf(name) >= 0) { note('There is already a label \u201c' + name + '\u201d.', true); return; }
    lab.labels[lab.labels.indexOf(old)] = name;
    lab.tags.forEach(function (v, id) { if (v === old) lab.tags.set(id, name); });
    save(); refreshTags();
  }
  function removeLabel(name) {
    lab.labels.splice(lab.labels.indexOf(name), 1);
    lab.tags.forEach(function (v, id) { if (v === name) lab.tags.delete(id); });
    armed = null;
    save(); refreshTags();
  }
  function renderLabels() {
    labList.textContent = '';
    var counts = new Map();
    lab.tags.forEach(function (v) { counts.set(v, (counts.get(v) || 0) + 1); });
    lab.labels.forEach(function (name, k) {
      var li = el('li', 'ex-leg'), use = el('button', 'ex-leg-sel'), sw = el('i'), n = counts.get(name) || 0;
      use.type = 'button';
      use.title = 'tag the selection (else the clicked galaxy) with this label' + (k < 9 ? ' (key ' + (k + 1) + ' over a galaxy)' : '');
      use.appendChild(el('kbd', '', k < 9 ? String(k + 1) : '\u00b7'));
      sw.style.background = rgbCss(labelRGB(k));
      use.appendChild(sw);
      var nm = el('span', 'name', name);
      nm.dir = 'auto';
      use.appendChild(nm);
      use.appendChild(el('span', 'count', n.toLocaleString('en')));
      use.addEventListener('click', function () {
        var t = state.selection ? selectedIndices() : state.focus >= 0 ? [state.focus] : [];
        if (!t.length) { note('Select galaxies or click one first.'); return; }
        tagIndices(t, name, function () { note('Tagged ' + t.length.toLocaleString('en') + ' \u201c' + name + '\u201d.'); });
      });
      var ren = el('button', 'ex-edit', '\u270e');
      ren.type = 'button'; ren.title = 'rename'; ren.setAttribute('aria-label', 'rename label');
      ren.addEventListener('click', function () { editInline(li, name, function (v) { renameLabel(name, v); }); });
      var del = el('button', 'ex-edit', armed === name ? 'remove ' + n + '?' : '\u00d7');
      del.type = 'button'; del.title = 'remove this label' + (n ? ' and its ' + n + ' tags' : '');
      del.setAttribute('aria-label', 'remove label');
      del.addEventListener('click', function () {
        if (n && armed !== name) { armed = name; renderLabels(); note('Click again to remove \u201c' + name + '\u201d and its ' + n + ' tags.'); return; }
        removeLabel(name);
        note('Label \u201c' + name + '\u201d removed.');
      });
      li.appendChild(use); li.appendChild(ren); li.appendChild(del);
      labList.appendChild(li);
    });
    labCount.textContent = lab.tags.size ? lab.tags.size.toLocaleString('en') + ' tagged' : 'no tags yet';
    labDownload.disabled = !lab.tags.size;
  }

  /* the CSV of `morphospace classify --labels`: id,<column>; ids exactly as in the catalogue */
  function labelsCSV() {
    var lines = ['id,' + csvField(lab.column, true)];
    lab.tags.forEach(function (name, id) { lines.push(csvField(id) + ',' + csvField(name, true)); });
    return lines.join('\r\n') + '\r\n';
  }

  labAdd.addEventListener('click', function () { if (addLabel(labNew.value)) labNew.value = ''; });
  labNew.maxLength = MAX_NAME;
  labNew.addEventListener('keydown', function (ev) {
    if (ev.key === 'Enter') { if (addLabel(labNew.value)) { labNew.value = ''; labNew.blur(); } }   // keys tag again
    else if (ev.key === 'Escape') labNew.blur();
  });
  labColumn.addEventListener('change', function () {
    lab.column = cleanName(labColumn.value) || 'label';
    labColumn.value = lab.column;
    save();
  });
  labDownload.addEventListener('click', function () { downloadText(labelsCSV(), 'morphospace-labels.csv'); });
  overlay.addEventListener('pointerenter', function () { pointerInside = true; });
  overlay.addEventListener('pointerleave', function () { pointerInside = false; });
  document.addEventListener('keydown', function (ev) {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var t = ev.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    if (!pointerInside && !root.contains(document.activeElement)) return;
    if (/^[1-9]$/.test(ev.key)) {
      var k = +ev.key - 1;
      if (k < lab.labels.length) tagCurrent(lab.labels[k]);
      else note('No label ' + ev.key + ' yet: add one below.');
      ev.preventDefault();
    } else if (ev.key === '0' || ev.key === 'Delete' || ev.key === 'Backspace') {
      tagCurrent(null);
      ev.preventDefault();
    } else if (ev.key === 'n' || ev.key === 'N') {
      labNew.focus();
      ev.preventDefault();
    }
  });

  load();
  labColumn.value = lab.column;
  applyClusterNames();
  refreshTags();
