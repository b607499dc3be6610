  /* morphospace explorer, part 2 of 7 (assets/explorer/loader.js): data beside the page, loaded as needed.
   *
   * Above report.inline_points the explorer's arrays are not in the page but in report_files/ (E.lazy,
   * morphospace/report/beside.py): chunk m<k> holds map k's coordinates, c<k> colouring k, i<s> the ids of
   * shard s (E.lazy.shard galaxies) and r<s> its tooltip columns, neighbours and sky positions. A chunk is a
   * small HTML document loaded in a hidden sandboxed iframe (fetch and XHR of file:// are refused, and a
   * <script src> cannot be allowed by hash on file://); its one script posts its bytes here. A message is
   * accepted only from the frame made for that chunk, and only when its SHA-256 is the one E.lazy lists.
   * need(names, cb) calls cb once every chunk named is in (at once when they already are). The map's
   * thumbnails are sprite sheets beside the page, each loaded when one of its galaxies is first shown. */
  // a frame whose document has loaded has posted its bytes, or never will (a missing file loads an error
  // page): a few seconds' grace for its message, not the minute a slow disk may take to load it
  var LOAD_MAX = 4, LOAD_TIMEOUT_MS = 60000, LOADED_GRACE_MS = 3000;
  var loadHave = {}, loadWait = {}, loadQueue = [], loadActive = 0, loadFrames = {}, idShardsIn = 0;

  function needRes(names, cb) {
    var missing = names.filter(function (n) { return n && !loadHave[n]; });
    if (!LAZY || !missing.length) { cb(); return; }
    var left = missing.length;
    missing.forEach(function (n) {
      if (!loadWait[n]) { loadWait[n] = []; loadQueue.push(n); }
      loadWait[n].push(function () { if (--left === 0) cb(); });
    });
    pumpLoads();
  }
  function pumpLoads() {
    while (loadActive < LOAD_MAX && loadQueue.length) openChunk(loadQueue.shift());
  }
  function openChunk(name) {
    var f = LAZY.files[name];
    if (!f) { loadFailed(name, 'not listed'); return; }
    var fr = document.createElement('iframe');
    fr.setAttribute('sandbox', 'allow-scripts');   // its own opaque origin: it can post to us, nothing more
    fr.setAttribute('aria-hidden', 'true');
    fr.tabIndex = -1;
    fr.style.display = 'none';
    fr.src = f.url;
    loadActive++;
    loadFrames[name] = { frame: fr, timer: setTimeout(function () { loadFailed(name, 'no answer'); }, LOAD_TIMEOUT_MS) };
    fr.addEventListener('load', function () {
      var f = loadFrames[name];
      if (!f || f.frame !== fr) return;
      clearTimeout(f.timer);
      f.timer = setTimeout(function () { loadFailed(name, 'missing, or not a file this page made'); }, LOADED_GRACE_MS);
    });
    document.body.appendChild(fr);
  }
  function closeFrame(name) {
    var f = loadFrames[name];
    if (!f) return false;
    clearTimeout(f.timer); f.frame.remove(); delete loadFrames[name];
    loadActive--;
    return true;
  }
  function loadFailed(name, why) {
    closeFrame(name);
    noticeEl.textContent = 'Could not load the explorer\u2019s data file ' + (LAZY.files[name] ? LAZY.files[name].url : name) +
      ' (' + why + '): is the report_files folder beside the page?';
    noticeEl.hidden = false;
    delete loadWait[name];
    pumpLoads();
  }
  function b64digest(buf) {
    return crypto.subtle.digest('SHA-256', buf).then(function (d) {
      var u = new Uint8Array(d), s = '';
      for (var i = 0; i < u.length; i++) s += String.fromCharCode(u[i]);
      return btoa(s);
    });
  }
  function verified(name, buf, text) {
    if (!(window.crypto && crypto.subtle)) return Promise.resolve(true);   // (no Web Crypto outside secure contexts)
    var want = LAZY.files[name].sha;
    return Promise.all([b64digest(buf), b64digest(new TextEncoder().encode(text))]).then(function (got) {
      return got[0] === want[0] && got[1] === want[1];
    });
  }
  window.addEventListener('message', function (ev) {
    var d = ev.data;
    if (!LAZY || !d || typeof d.morphospaceChunk !== 'string') return;
    var name = d.morphospaceChunk, f = loadFrames[name];
    if (!f || ev.source !== f.frame.contentWindow || !(d.buf instanceof ArrayBuffer) || typeof d.text !== 'string') return;
    closeFrame(name);
    verified(name, d.buf, d.text).then(function (ok) {
      if (!ok) { loadFailed(name, 'its contents are not those this page was made with'); return; }
      applyChunk(name, d.buf, JSON.parse(d.text));
      loadHave[name] = true;
      var cbs = loadWait[name] || [];
      delete loadWait[name];
      cbs.forEach(function (cb) { cb(); });
      pumpLoads();
    });
  });
  function chunkPart(buf, meta, key) {
    var p = meta.parts[key];
    if (!p) return null;
    var T = { float32: Float32Array, float64: Float64Array, int16: Int16Array, int32: Int32Array }[p[0]];
    return new T(buf, p[1], p[2]);
  }
  function applyChunk(name, buf, meta) {
    var kind = name.charAt(0), k = +name.slice(1), lo = k * (LAZY ? LAZY.shard : 0);
    if (kind === 'm') setMapXY(maps[k], chunkPart(buf, meta, 'xy'));
    else if (kind === 'c') {
      var c = colourings[k];
      if (c.type === 'categorical') c.codes = chunkPart(buf, meta, 'codes'); else c.values = chunkPart(buf, meta, 'values');
    } else if (kind === 'i') {
      for (var j = 0; j < meta.ids.length; j++) ids[lo + j] = meta.ids[j];
      if (++idShardsIn === LAZY.shards) fillIndex();
    } else if (kind === 'r') {
      NN.set(chunkPart(buf, meta, 'nn'), lo * K);
      columns.forEach(function (c, j) {
        if (c.type === 'str') { var a = meta['s' + j]; for (var q = 0; q < a.length; q++) c.values[lo + q] = a[q]; }
        else (c.type === 'num' ? c.values : c.codes).set(chunkPart(buf, meta, 'c' + j), lo);
      });
      if (SKY) { SKY.ra.set(chunkPart(buf, meta, 'ra'), lo); SKY.dec.set(chunkPart(buf, meta, 'dec'), lo); }
    }
  }

  /* ---------- what a galaxy needs ---------- */
  function shardsOf(list, prefix) {
    var seen = {}, out = [];
    for (var j = 0; j < list.length; j++) {
      var s = prefix + Math.floor(list[j] / LAZY.shard);
      if (!seen[s]) { seen[s] = 1; out.push(s); }
    }
    return out;
  }
  function idsReady(list) { return !LAZY || shardsOf(list, 'i').every(function (n) { return loadHave[n]; }); }
  function rowsReady(list) { return idsReady(list) && (!LAZY || shardsOf(list, 'r').every(function (n) { return loadHave[n]; })); }
  function idsComplete() { return !LAZY || idShardsIn === LAZY.shards; }
  function needIds(list, cb) { if (!LAZY) cb(); else needRes(shardsOf(list, 'i'), cb); }
  function needRows(list, cb) { if (!LAZY) cb(); else needRes(shardsOf(list, 'i').concat(shardsOf(list, 'r')), cb); }
  function needAllIds(cb) {
    if (!LAZY) { cb(); return; }
    var all = [];
    for (var s = 0; s < LAZY.shards; s++) all.push('i' + s);
    needRes(all, cb);
  }
  function colReady(c) { return c.type === 'categorical' ? !!c.codes : !!c.values; }

  /* ---------- the map's thumbnails, sheet by sheet ---------- */
  function lazySprites(T) {
    var sheets = {};
    function sheet(k, cb) {
      var s = sheets[k];
      if (!s) {
        s = sheets[k] = { ok: false, cbs: [], img: new Image() };
        s.img.onload = function () { s.ok = true; s.cbs.forEach(function (f) { f(); }); s.cbs = []; };
        s.img.onerror = function () { noticeEl.textContent = 'Could not load ' + T.sheets[k].url + '.'; noticeEl.hidden = false; };
        s.img.src = T.sheets[k].url;
      }
      if (s.ok) cb(); else s.cbs.push(cb);
    }
    function apply(el, i) {
      var k = Math.floor(i / T.perSheet), t = i % T.perSheet, info = T.sheets[k];
      if (!info) return;
      el.morphospaceWant = i;
      el.setAttribute('data-thumb', '');
      el.style.backgroundImage = 'none';
      sheet(k, function () {
        if (el.morphospaceWant !== i) return;   // the element shows another galaxy by now
        var col = t % info.cols, row = Math.floor(t / info.cols);
        el.style.backgroundImage = 'url("' + String(info.url).replace(/["\\\n]/g, '') + '")';
        el.style.backgroundSize = (info.cols * 100) + '% ' + (info.rows * 100) + '%';
        el.style.backgroundPosition = (info.cols > 1 ? col / (info.cols - 1) * 100 : 0) + '% ' +
                                      (info.rows > 1 ? row / (info.rows - 1) * 100 : 0) + '%';
        el.setAttribute('data-thumb', String(i));
      });
    }
    function thumb(i, id, opts) { return window.morphospaceSprites.element(apply, i, id, opts); }
    return { apply: apply, thumb: thumb, info: T };
  }
