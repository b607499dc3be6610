  /* morphospace explorer, part 6 of 7 (assets/explorer/search.js): finding a galaxy by id.
   *
   * As one types, a short list of the ids that match: the exact id first, then ids that start with the
   * text, then ids that contain it (case-insensitive; shorter ids first), each with its thumbnail. Enter,
   * a click or the arrow keys pick one: the map centres on it, rings it and its nearest neighbours, and
   * "more like this" shows them. Ids only ever reach the page through textContent. */
  var search = document.getElementById('ex-search'), hitsBox = document.getElementById('ex-search-hits');
  var SHOWN = 8, lowerIds = null, hits = [], active = -1;

  /* the ids matching q: {list: up to limit indices, best first; total: how many match} */
  function searchMatches(q, limit) {
    q = String(q).trim();
    limit = limit || SHOWN;
    if (!q || !idsComplete()) return { list: [], total: 0 };
    if (!lowerIds) lowerIds = ids.map(function (s) { return String(s).toLowerCase(); });
    var ql = q.toLowerCase(), exact = indexOfId.has(q) ? indexOfId.get(q) : -1, starts = [], within = [], total = 0;
    for (var i = 0; i < N; i++) {
      var at = lowerIds[i].indexOf(ql);
      if (at < 0) continue;
      total++;
      if (i === exact) continue;
      var into = at === 0 ? starts : within;
      if (into.length < 50 * limit) into.push(i);
    }
    function shorter(a, b) { return ids[a].length - ids[b].length || a - b; }
    starts.sort(shorter); within.sort(shorter);
    return { list: (exact >= 0 ? [exact] : []).concat(starts, within).slice(0, limit), total: total };
  }
  function closeHits() { hitsBox.hidden = true; hitsBox.textContent = ''; hits = []; active = -1; search.setAttribute('aria-expanded', 'false'); }
  function markActive(k) {
    active = k;
    var items = hitsBox.querySelectorAll('.ex-hit');
    for (var j = 0; j < items.length; j++) items[j].classList.toggle('on', j === k);
  }
  function showHits() {
    var q = search.value.trim();
    hitsBox.textContent = '';
    search.classList.remove('nomatch');
    if (!q) { closeHits(); return; }
    if (!idsComplete()) {   // beside the page: every id first (a few MB per million galaxies), then the matches
      hitsBox.appendChild(el('li', 'ex-hits-none', 'Loading the ' + N.toLocaleString('en') + ' ids\u2026'));
      hitsBox.hidden = false;
      needAllIds(function () { if (search.value.trim() && document.activeElement === search) showHits(); });
      return;
    }
    var m = searchMatches(q, SHOWN);
    hits = m.list; active = hits.length ? 0 : -1;
    if (!hits.length) {
      search.classList.add('nomatch');
      hitsBox.appendChild(el('li', 'ex-hits-none', 'No galaxy id contains \u201c' + q + '\u201d' +
                             (E.nTotal > N ? ' among the ' + N.toLocaleString('en') + ' on the map.' : '.')));
    }
    hits.forEach(function (i, k) {
      var li = el('li', 'ex-hit'), img = el('span', 'img'), name = el('span', 'gid', ids[i]);
      li.setAttribute('role', 'option');
      li.setAttribute('data-index', String(i));
      SPR.apply(img, i);
      name.dir = 'auto';
      li.appendChild(img); li.appendChild(name);
      li.addEventListener('mousedown', function (ev) { ev.preventDefault(); });   // keep the box's focus
      li.addEventListener('click', function () { pickHit(k); });
      li.addEventListener('mouseenter', function () { markActive(k); });
      hitsBox.appendChild(li);
    });
    if (m.total > hits.length) hitsBox.appendChild(el('li', 'ex-hits-more', (m.total - hits.length).toLocaleString('en') + ' more match'));
    markActive(active);
    hitsBox.hidden = false;
    search.setAttribute('aria-expanded', 'true');
  }
  function pickHit(k) {
    var i = hits[k];
    if (i === undefined) return;
    search.value = ids[i];
    closeHits();
    focus(i, { centre: true, always: true });
  }
  search.setAttribute('aria-expanded', 'false');
  search.addEventListener('input', showHits);
  search.addEventListener('focus', function () { if (search.value.trim()) showHits(); });
  search.addEventListener('blur', function () { setTimeout(closeHits, 150); });
  search.addEventListener('keydown', function (ev) {
    if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      if (hitsBox.hidden) showHits();
      if (hits.length) markActive((active + (ev.key === 'ArrowDown' ? 1 : hits.length - 1)) % hits.length);
      ev.preventDefault();
    } else if (ev.key === 'Enter') {
      if (hitsBox.hidden) showHits();
      if (hits.length) pickHit(active >= 0 ? active : 0);
      ev.preventDefault();
    } else if (ev.key === 'Escape') {
      closeHits();
    }
  });
