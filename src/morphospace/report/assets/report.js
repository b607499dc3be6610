/* morphospace report: embedded data, sprite-sheet thumbnails, navigation, figure lightbox.
 * Strings from the data only ever reach the page through textContent. */
(function () {
  'use strict';
  var dataEl = document.getElementById('morphospace-data');
  var DATA = JSON.parse(dataEl.textContent);
  window.morphospaceData = DATA;

  /* --- sprite sheets: one CSS class per sheet, each thumbnail a window into it --- */
  var SP = DATA.sprites;
  var style = document.createElement('style');
  var rules = [];
  for (var k = 0; k < SP.sheets.length; k++) {
    // URLs are data: URIs or file names the report itself chose; quotes are escaped regardless
    var url = String(SP.sheets[k].url).replace(/["\\\n]/g, function (c) { return '\\' + c.charCodeAt(0).toString(16) + ' '; });
    rules.push('.sp-' + k + '{background-image:url("' + url + '")}');
  }
  style.textContent = rules.join('\n');
  document.head.appendChild(style);
  // sheets beside the page (report.inline_limit_mb): a CSS background that fails says nothing, so the
  // first is fetched here too (the galleries show it at once), and if it is missing that is said at the
  // top of the page: a page moved without its report_files folder
  var first = SP.sheets.length ? String(SP.sheets[0].url) : '';
  if (first && !/^data:/.test(first)) {
    var probe = new Image();
    probe.onerror = function () {
      var p = document.createElement('p');
      p.className = 'notice';
      p.setAttribute('role', 'alert');
      p.textContent = 'Could not load the thumbnails\u2019 sprite sheet ' + first +
        ': is the report_files folder beside the page?';
      (document.querySelector('.hero') || document.body).appendChild(p);
    };
    probe.src = first;
  }

  function applySprite(el, s) {
    s = s | 0;
    var sheet = Math.floor(s / SP.perSheet), t = s % SP.perSheet, info = SP.sheets[sheet];
    if (!info) return;
    var col = t % info.cols, row = Math.floor(t / info.cols);
    for (var j = el.classList.length - 1; j >= 0; j--) {
      if (el.classList[j].indexOf('sp-') === 0) el.classList.remove(el.classList[j]);
    }
    el.classList.add('sp-' + sheet);
    // percentages keep the window right whatever size CSS gives the thumbnail
    el.style.backgroundSize = (info.cols * 100) + '% ' + (info.rows * 100) + '%';
    el.style.backgroundPosition = (info.cols > 1 ? col / (info.cols - 1) * 100 : 0) + '% ' +
                                  (info.rows > 1 ? row / (info.rows - 1) * 100 : 0) + '%';
  }

  /* A thumbnail element: .thumb > .img (+ .gid caption), all text via textContent; `apply` puts
   * the sprite on the .img (the explorer's lazy sheets pass their own). */
  function thumbElement(apply, sprite, id, opts) {
    opts = opts || {};
    var b = document.createElement(opts.tag || 'button');
    if (b.tagName === 'BUTTON') b.type = 'button';
    b.className = 'thumb' + (opts.cls ? ' ' + opts.cls : '');
    var img = document.createElement('span');
    img.className = 'img';
    apply(img, sprite);
    b.appendChild(img);
    if (id !== null && id !== undefined) {
      b.title = String(id);
      var g = document.createElement('span');
      g.className = 'gid';
      g.textContent = String(id);
      b.appendChild(g);
    }
    return b;
  }
  function makeThumb(sprite, id, opts) { return thumbElement(applySprite, sprite, id, opts); }
  window.morphospaceSprites = { apply: applySprite, thumb: makeThumb, info: SP, element: thumbElement };

  var thumbs = document.querySelectorAll('.thumb[data-s]');
  for (var i = 0; i < thumbs.length; i++) {
    var el = thumbs[i];
    applySprite(el.querySelector('.img'), +el.getAttribute('data-s'));
    el.addEventListener('click', function () {
      var p = +this.getAttribute('data-p');
      if (p >= 0 && window.morphospaceExplorer) window.morphospaceExplorer.focus(p, { scroll: true, centre: true });
    });
  }

  /* --- navigation: highlight the section in view --- */
  var links = document.querySelectorAll('.nav a');
  var byId = {};
  for (i = 0; i < links.length; i++) byId[links[i].getAttribute('href').slice(1)] = links[i];
  if ('IntersectionObserver' in window) {
    var visible = {};
    var io = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) { visible[e.target.id] = e.isIntersecting ? e.intersectionRatio : 0; });
      var best = null, bestR = 0;
      Object.keys(visible).forEach(function (id) { if (visible[id] > bestR) { bestR = visible[id]; best = id; } });
      for (var j = 0; j < links.length; j++) links[j].classList.toggle('active', links[j] === byId[best]);
    }, { rootMargin: '-60px 0px -45% 0px', threshold: [0, 0.1, 0.3, 0.6] });
    document.querySelectorAll('main > section[id]').forEach(function (s) { io.observe(s); });
  }

  /* --- pickers: one of many tables shown, the one chosen --- */
  document.querySelectorAll('.pickgroup select.pick').forEach(function (sel) {
    var shown = sel.closest('.pickgroup').querySelectorAll(':scope > .picked');
    sel.addEventListener('change', function () {
      for (var j = 0; j < shown.length; j++) shown[j].hidden = j !== +sel.value;
    });
  });

  /* --- figures open full size --- */
  document.addEventListener('click', function (ev) {
    var img = ev.target.closest && ev.target.closest('.fig img');
    if (!img) return;
    var box = document.createElement('div');
    box.className = 'lightbox';
    var big = document.createElement('img');
    big.src = img.src;
    big.alt = img.alt;
    box.appendChild(big);
    function close() { box.remove(); document.removeEventListener('keydown', onKey); }
    function onKey(e) { if (e.key === 'Escape') close(); }
    box.addEventListener('click', close);
    document.addEventListener('keydown', onKey);
    document.body.appendChild(box);
  });
})();
