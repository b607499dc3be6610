"""The report in a real browser: headless Chromium drives the page as a person would.

Needs Debian's ``chromium`` at /usr/bin/chromium (``.ci/install-browser.sh``) and
the Python ``playwright`` package; skipped, saying which is missing, otherwise.
Screenshots are kept in ``tests/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from morphospace.config import Config, apply_overrides
from morphospace.report import build_report

from report_fakerun import HOSTILE_ID, HOSTILE_LABEL, add_many_comparisons, make_fake_run

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("headless browser tests need Debian's chromium at /usr/bin/chromium "
                "(run .ci/install-browser.sh)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need the playwright package")

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        # WebGL on the CPU (SwiftShader), so the WebGL path is what gets tested
        "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
N = 300


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The report of a fake run of N galaxies."""
    run = make_fake_run(tmp_path_factory.mktemp("browser") / "run", n=N, size=32)
    return build_report(run, Config())


@pytest.fixture(scope="module")
def playwright():
    """Playwright, for the module."""
    with sync_api.sync_playwright() as p:
        yield p


class Page:
    """One page in a fresh browser context, with everything it logged and requested recorded."""

    def __init__(self, browser, viewport=(1400, 900)):
        self.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                           accept_downloads=True)
        self.page = self.context.new_page()
        self.errors, self.requests, self.failed, self.dialogs = [], [], [], []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.context.on("request", lambda r: self.requests.append(r.url))
        self.page.on("requestfailed", lambda r: self.failed.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def open(self, path: Path):
        """Open a report, wait until the explorer is ready and bring the map into view."""
        self.page.goto(path.resolve().as_uri())
        wait_js(self.page, "window.morphospaceReady === true")
        # the whole map in view, without the page's smooth scrolling
        self.page.evaluate("document.getElementById('ex-stage').scrollIntoView({block: 'center', behavior: 'instant'})")
        box = self.page.locator("#ex-stage").bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= self.page.viewport_size["height"], box
        return self.page

    def shot(self, tmp_path: Path, name: str, full_page: bool = False) -> Path:
        """A screenshot, also kept in tests/artifacts/."""
        out = tmp_path / f"{name}.png"
        self.page.screenshot(path=str(out), full_page=full_page)
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(out, ARTIFACTS / out.name)
        return out

    def close(self):
        """Close the page's browser context."""
        self.context.close()


@pytest.fixture(scope="module")
def chromium(playwright):
    """One Chromium for the module (WebGL through SwiftShader); each test gets its own context."""
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
    yield b
    b.close()


@pytest.fixture
def browser(playwright, chromium):
    """A maker of pages (extra flags start another Chromium); everything is closed after the test."""
    pages, own = [], []

    def make(extra_args=(), **kw):
        b = chromium
        if extra_args:  # other flags need another browser process
            b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS + list(extra_args))
            own.append(b)
        pages.append(Page(b, **kw))
        return pages[-1]

    yield make
    for p in pages:
        p.close()
    for b in own:
        b.close()


def wait_js(page, expression: str, timeout_s: float = 60.0):
    """Wait until a JavaScript expression is truthy, polling from Python.

    (``page.wait_for_function`` polls by evaluating a string inside the page, which the report's
    Content-Security-Policy forbids: any check that is not true at once would fail with an EvalError.)
    """
    end = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"still false after {timeout_s:g} s: {expression}")
        time.sleep(0.05)


def visible_point(page, candidates):
    """A point whose screen position picks itself (not hidden under another point)."""
    for i in candidates:
        pos = page.evaluate(f"morphospaceExplorer.screenPosition({i})")
        if page.evaluate(f"morphospaceExplorer.pick({pos['x']}, {pos['y']})") == i:
            return i, pos
    raise AssertionError("no candidate point is visible on its own")


def hover(page, i):
    """Move the mouse onto point ``i`` and wait for the tooltip."""
    pos = page.evaluate(f"morphospaceExplorer.screenPosition({i})")
    page.mouse.move(pos["x"] + 25, pos["y"] + 25)
    page.mouse.move(pos["x"], pos["y"], steps=3)
    page.wait_for_selector("#ex-tooltip:not([hidden])")
    return pos


def only_local(requests, run_dir: Path) -> list[str]:
    """Requests that are neither data: URIs nor files of the run directory."""
    base = run_dir.resolve().as_uri() + "/"
    return [u for u in requests if not (u.startswith("data:") or u.startswith("blob:") or u.startswith(base))]


def test_page_loads_offline_with_every_point(report, browser, tmp_path):
    b = browser()
    page = b.open(report)
    assert page.evaluate("morphospaceExplorer.renderer()") == "webgl", "WebGL should work with SwiftShader"
    assert page.evaluate("morphospaceExplorer.pointCount()") == N
    # the canvases draw at their own size, which the pointer is read against: sized from the stage
    # around them, whose border they sit inside, the map was drawn up to 2 px off where hover picked
    sizes = page.evaluate("[...document.querySelectorAll('.ex-stage canvas')].map(c => [c.width, c.height,"
                          " Math.round(c.getBoundingClientRect().width * Math.min(devicePixelRatio || 1, 2)),"
                          " Math.round(c.getBoundingClientRect().height * Math.min(devicePixelRatio || 1, 2))])")
    assert len(sizes) == 2 and all(w == cw and h == ch for w, h, cw, ch in sizes), sizes
    assert page.get_attribute("#explorer-root", "data-points") == str(N)
    b.shot(tmp_path, "report_explorer")
    b.shot(tmp_path, "report_full_page", full_page=True)
    assert b.errors == []
    assert only_local(b.requests, report.parent) == []
    assert b.failed == []
    # the map really drew points: coloured pixels where the points are
    from PIL import Image
    img = Image.open(tmp_path / "report_explorer.png").convert("RGB")
    i, pos = visible_point(page, range(0, N, 7))
    r, g, bl = img.getpixel((round(pos["x"]), round(pos["y"])))
    assert max(r, g, bl) > 90, (r, g, bl)  # the background is near-black (11, 14, 22)
    # every section's thumbnails got their sprite
    unsprited = page.evaluate("[...document.querySelectorAll('.thumb[data-s] .img')]"
                              ".filter(e => ![...e.classList].some(c => c.startsWith('sp-'))).length")
    assert unsprited == 0


def _contrast(a, b) -> float:
    """WCAG contrast ratio of two sRGB colours (0-255)."""
    def lum(rgb):
        c = [v / 255 for v in rgb]
        c = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]
    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_the_numbers_of_coloured_tables_are_readable(report, browser):
    """White ink on the paler half of the heat-coloured cells (agreement, linear probe) read at about 2:1."""
    import re

    page = browser().open(report)
    cells = page.evaluate(r"""[...document.querySelectorAll('td.heat')].map(td => {
        let e = td.parentElement, under = 'rgb(255, 255, 255)';
        for (; e; e = e.parentElement) {
          const c = getComputedStyle(e).backgroundColor;
          if (c && c !== 'transparent' && !/, 0\)$/.test(c) && !/ \/ 0\)$/.test(c)) { under = c; break; }
        }
        const s = getComputedStyle(td);
        return [s.color, s.backgroundColor, under]; })""")
    assert len(cells) > 10

    def rgba(text):  # "rgb(31, 36, 48)", "rgba(.., a)" or "color(srgb 0.36 0.42 1 / 0.62)"
        v = [float(x) for x in re.findall(r"[\d.]+", text)]
        scale = 255.0 if text.startswith("color(") else 1.0
        return [c * scale for c in v[:3]], (v[3] if len(v) > 3 else 1.0)

    def over(top, under):
        (rgb, a), (base, _) = rgba(top), rgba(under)
        return [a * x + (1 - a) * y for x, y in zip(rgb, base)]

    worst = min(_contrast(rgba(ink)[0], over(bg, under)) for ink, bg, under in cells)
    assert worst >= 4.5, (worst, cells[:3])


def test_a_picker_shows_the_table_chosen(browser, tmp_path):
    """Many clusterings: choosing one in the list shows its table, and only its."""
    run = make_fake_run(tmp_path / "run", n=40, size=32)
    names = add_many_comparisons(run, extra=12)
    page = browser().open(build_report(run, Config()))
    groups = page.locator(".pickgroup")
    assert groups.count() == 2

    def visible(g):
        return page.evaluate(f"""[...document.querySelectorAll('.pickgroup')[{g}].querySelectorAll('.picked')]
                                 .map(d => d.offsetParent !== null)""")

    assert visible(0) == [True] + [False] * (len(names) - 1)
    groups.nth(0).locator("select").select_option(label="study_3")
    shown = visible(0)
    assert sum(shown) == 1 and shown[names.index("study_3")]  # vade, morphology, kmeans4_vade, study_0 ... in order
    heads = page.evaluate("""[...document.querySelectorAll('.pickgroup')[0].querySelectorAll('.picked')]
                             .filter(d => d.offsetParent !== null)[0].querySelectorAll('tbody th').length""")
    assert heads == len(names) - 1  # every other clustering and label
    groups.nth(1).locator("select").select_option(index=5)
    assert visible(1) == [k == 5 for k in range(13)]


def test_hover_shows_the_galaxy(report, browser, tmp_path):
    b = browser()
    page = b.open(report)
    ids = page.evaluate("morphospaceExplorer.ids()")
    i, pos = visible_point(page, range(5, N, 11))
    hover(page, i)
    assert page.text_content("#ex-tooltip .tt-id") == ids[i]
    assert page.evaluate("morphospaceExplorer.hovered()") == i
    # the thumbnail is the galaxy's tile of the sprite sheet
    bg = page.evaluate("(() => { const e = document.querySelector('#ex-tooltip .img'); const s = getComputedStyle(e);"
                       " return [s.backgroundImage.slice(0, 25), s.backgroundPosition, e.offsetWidth]; })()")
    assert bg[0].startswith('url("data:image/webp') and bg[2] > 40
    sheet = page.evaluate("morphospaceSprites.info.sheets[0]")
    col, row = i % sheet["cols"], i // sheet["cols"]
    want_x = 100 * col / (sheet["cols"] - 1)
    assert float(bg[1].split("%")[0]) == pytest.approx(want_x, abs=1e-3)
    assert page.text_content("#ex-tooltip .tt-rows").count("morphology") == 1
    b.shot(tmp_path, "report_hover")
    assert b.errors == []


def test_click_shows_eight_neighbours(report, browser, tmp_path):
    b = browser()
    page = b.open(report)
    ids = page.evaluate("morphospaceExplorer.ids()")
    i, pos = visible_point(page, range(3, N, 13))
    page.mouse.click(pos["x"], pos["y"])
    wait_js(page, f"morphospaceExplorer.focused() === {i}", 10)
    thumbs = page.locator("#ex-nn .thumb")
    assert thumbs.count() == 8
    want = page.evaluate(f"morphospaceExplorer.neighbours({i})")
    assert [thumbs.nth(k).get_attribute("title") for k in range(8)] == [ids[j] for j in want]
    assert page.text_content("#ex-focus .tt-id") == ids[i]
    assert page.text_content("#ex-nn-text").startswith("8 nearest neighbours in ")  # exact: no recall said
    assert "approximate" not in page.text_content("#ex-nn-text")
    b.shot(tmp_path, "report_neighbours")
    # clicking a neighbour walks to it
    thumbs.nth(0).click()
    wait_js(page, f"morphospaceExplorer.focused() === {want[0]}", 10)
    assert b.errors == []


def test_an_approximate_search_says_its_recall_beside_the_neighbours(browser, tmp_path, monkeypatch):
    """Where the explorer's neighbours come from the inverted file (here from 0 points up), the
    panel says so, with the share of the true nearest its index measured it finds."""
    from morphospace.report import explorer, neighbours

    monkeypatch.setattr(explorer, "neighbour_search",
                        lambda X, k, random_state: neighbours.neighbour_search(X, k, random_state, exact_below=0))
    page = (b := browser()).open(build_report(make_fake_run(tmp_path / "run", n=60, size=16), Config()))
    i, pos = visible_point(page, range(60))
    page.mouse.click(pos["x"], pos["y"])
    wait_js(page, f"morphospaceExplorer.focused() === {i}", 10)
    text = page.text_content("#ex-nn-text")
    assert text.startswith("8 nearest neighbours in ") and "(approximate search: about " in text, text
    assert 95 <= int(text.split("about ")[1].split("%")[0]) <= 100
    assert b.errors == []


def test_hostile_id_renders_as_text(report, browser, tmp_path):
    b = browser()
    page = b.open(report)
    assert page.evaluate("morphospaceExplorer.indexOf(%r)" % HOSTILE_ID) == 0
    page.evaluate("morphospaceExplorer.focus(0, {centre: true})")
    page.wait_for_timeout(100)
    assert page.text_content("#ex-focus .tt-id") == HOSTILE_ID
    pos = page.evaluate("morphospaceExplorer.screenPosition(0)")
    if page.evaluate(f"morphospaceExplorer.pick({pos['x']}, {pos['y']})") == 0:  # not under another point
        hover(page, 0)
        assert page.text_content("#ex-tooltip .tt-id") == HOSTILE_ID
    # the hostile label value is text in the legend of the label colouring
    page.select_option("#ex-colour", label="morphology (label)")
    assert HOSTILE_LABEL in page.inner_text("#ex-legend")
    # nowhere in the page did the hostile strings become elements
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"], [onerror], [onmouseover]').length") == 0
    assert 'odd<b onmouseover=alert(3)>"name".png' in page.inner_text("#other-figures")  # a file name, as text
    assert page.evaluate("[...document.scripts].filter(s => s.textContent.includes('alert(')).length") == 1  # the JSON
    assert HOSTILE_ID in page.inner_text("body")
    b.shot(tmp_path, "report_hostile")
    page.wait_for_timeout(200)
    assert b.dialogs == [], "a script from the data ran"
    assert b.errors == []


def test_box_selection_downloads_ids(report, browser, tmp_path):
    b = browser()
    page = b.open(report)
    ids = page.evaluate("morphospaceExplorer.ids()")
    page.click(".ex-modes button[data-mode=box]")
    box = page.locator("#ex-overlay").bounding_box()
    # (12 px in: the stage has rounded corners, outside which a press misses the map)
    page.mouse.move(box["x"] + 12, box["y"] + 12)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 12, box["y"] + box["height"] - 12, steps=8)
    page.mouse.up()
    assert page.evaluate("morphospaceExplorer.selection().length") == N
    assert "300 galaxies selected" in page.text_content("#ex-sel-text")
    with page.expect_download() as info:
        page.click("#ex-download")
    path = tmp_path / "selection.csv"
    info.value.save_as(path)
    lines = path.read_text().splitlines()
    assert lines[0] == "id,vade"
    assert sorted(line.rsplit(",", 1)[0] for line in lines[1:]) == sorted(ids)
    # a box over the left half selects exactly the points drawn there
    page.click("#ex-clear")
    page.mouse.move(box["x"] + 12, box["y"] + 12)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] - 12, steps=5)
    page.mouse.up()
    want = page.evaluate(f"[...Array({N}).keys()].filter(i => morphospaceExplorer.screenPosition(i).x < {box['x'] + box['width'] / 2})")
    assert sorted(page.evaluate("morphospaceExplorer.selection()")) == sorted(want)
    b.shot(tmp_path, "report_box_selection")
    assert only_local(b.requests, report.parent) == []
    assert b.errors == []


def test_lasso_selection(report, browser):
    b = browser()
    page = b.open(report)
    box = page.locator("#ex-overlay").bounding_box()
    # the mode keys work with the pointer over the map, nothing clicked (they waited for a click)
    page.keyboard.press("b")  # the pointer elsewhere: a key is the page's, not the explorer's
    assert not page.evaluate("document.querySelector('.ex-modes button[data-mode=box]').classList.contains('on')")
    legend = page.locator("#ex-legend").bounding_box()  # over the legend beside the map: the keys still work
    page.mouse.move(legend["x"] + legend["width"] / 2, legend["y"] + 10)
    page.keyboard.press("b")
    assert page.evaluate("document.querySelector('.ex-modes button[data-mode=box]').classList.contains('on')")
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.keyboard.press("l")
    assert page.evaluate("document.querySelector('.ex-modes button[data-mode=lasso]').classList.contains('on')")
    # a triangle: top-left corner, top-right corner, bottom-left corner
    x0, y0, x1, y1 = box["x"] + 12, box["y"] + 12, box["x"] + box["width"] - 12, box["y"] + box["height"] - 12
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y0, steps=6)
    page.mouse.move(x0, y1, steps=6)
    page.mouse.move(x0, y0 + 5, steps=6)
    page.mouse.up()
    got = sorted(page.evaluate("morphospaceExplorer.selection()"))
    pos = page.evaluate(f"[...Array({N}).keys()].map(i => morphospaceExplorer.screenPosition(i))")
    # inside the triangle: below the top edge and left of the diagonal from (x1, y0) to (x0, y1)
    want = [i for i, p in enumerate(pos)
            if (p["x"] - x0) / (x1 - x0) + (p["y"] - y0) / (y1 - y0) < 1]
    near = [i for i, p in enumerate(pos) if abs((p["x"] - x0) / (x1 - x0) + (p["y"] - y0) / (y1 - y0) - 1) < 0.02]
    assert 0 < len(got) < N
    assert set(got) ^ set(want) <= set(near)  # only points on the drawn edge may differ
    assert b.errors == []


def test_canvas2d_fallback_without_webgl(report, browser, tmp_path):
    b = browser(["--disable-3d-apis", "--disable-webgl"])
    page = b.open(report)
    assert page.evaluate("morphospaceExplorer.renderer()") == "canvas2d"
    assert "WebGL is unavailable" in page.text_content("#ex-notice")
    assert page.is_visible("#ex-notice")
    assert page.evaluate("morphospaceExplorer.pointCount()") == N
    ids = page.evaluate("morphospaceExplorer.ids()")
    i, pos = visible_point(page, range(1, N, 17))
    hover(page, i)
    assert page.text_content("#ex-tooltip .tt-id") == ids[i]
    out = b.shot(tmp_path, "report_canvas2d")
    from PIL import Image
    r, g, bl = Image.open(out).convert("RGB").getpixel((round(pos["x"]), round(pos["y"])))
    assert max(r, g, bl) > 90
    assert b.errors == []


def test_sprites_beside_the_page(tmp_path, browser):
    run = make_fake_run(tmp_path / "run", n=80, size=32)
    report = build_report(run, apply_overrides(Config(), ["report.inline_limit_mb=0"]))
    b = browser()
    page = b.open(report)
    i, _ = visible_point(page, range(0, 80, 3))
    hover(page, i)
    page.wait_for_timeout(200)
    sheet = (run.path / "report_files" / "thumbs_0.webp").resolve().as_uri()
    assert sheet in b.requests
    assert b.failed == [] and b.errors == []
    assert only_local(b.requests, run.path) == []
    assert not page.is_visible(".hero .notice")
    # the page moved without its folder: blank thumbnails, and now a line saying why
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(report, alone / "report.html")
    page = browser().open(alone / "report.html")
    wait_js(page, "document.querySelector('.hero .notice') !== null")
    assert "report_files/thumbs_0.webp" in page.text_content(".hero .notice")


def test_time_to_interactive_is_short(report, browser):
    b = browser()
    t = time.perf_counter()
    page = b.open(report)
    wall = time.perf_counter() - t
    ready_ms = page.evaluate("window.morphospaceReadyMs")
    assert ready_ms < 3000 and wall < 15, (ready_ms, wall)


# --- the explorer's data beside the page (above report.inline_points) ------------------------------------

NB = 300  # galaxies of the "beside" report: report.inline_points lowered to 100, shards of 64


@pytest.fixture(scope="module")
def beside_report(tmp_path_factory):
    """A report whose explorer data and map thumbnails are files beside the page."""
    run = make_fake_run(tmp_path_factory.mktemp("beside") / "run", n=NB, size=16)
    return build_report(run, apply_overrides(Config(), ["report.inline_points=100", "report.shard_points=64"]))


def test_beside_the_page_opens_from_disk_and_loads_only_what_it_needs(beside_report, browser, tmp_path):
    b = browser()
    page = b.open(beside_report)
    run_dir = beside_report.parent
    assert page.evaluate("morphospaceExplorer.lazy()") and page.evaluate("morphospaceExplorer.renderer()") == "webgl"
    assert page.evaluate("morphospaceExplorer.pointCount()") == NB
    # at open: the first map and colouring, no shard, no map thumbnail sheet
    opened = set(page.evaluate("morphospaceExplorer.loadedChunks()"))
    assert {"m0", "c0"} <= opened and not any(c[0] in "ir" for c in opened), opened
    assert not any("map_" in u for u in b.requests)
    out = b.shot(tmp_path, "report_beside")
    from PIL import Image
    img = Image.open(out).convert("RGB")
    i, pos = visible_point(page, range(7, NB, 11))
    assert max(img.getpixel((round(pos["x"]), round(pos["y"])))) > 90  # the map drew its points
    # hover: the tooltip gets the galaxy's row from its shard and its thumbnail from the sheet beside the page
    hover(page, i)
    wait_js(page, f"document.getElementById('ex-tooltip').getAttribute('data-ready') === '{i}'"
                  f" && document.querySelector('#ex-tooltip .img').getAttribute('data-thumb') === '{i}'", 20)
    page.evaluate("morphospaceExplorer.ensure()")
    ids = wait_js(page, f"morphospaceExplorer.ids().filter(x => x !== undefined).length === {NB} && morphospaceExplorer.ids()")
    assert page.text_content("#ex-tooltip .tt-id") == ids[i]
    assert "morphology" in page.text_content("#ex-tooltip .tt-rows")
    bg = page.evaluate("getComputedStyle(document.querySelector('#ex-tooltip .img')).backgroundImage")
    assert bg == 'url("' + (run_dir / "report_files" / "map_0.webp").resolve().as_uri() + '")'
    b.shot(tmp_path, "report_beside_hover")
    assert b.errors == [] and b.failed == []
    assert only_local(b.requests, run_dir) == []
    assert all(u.startswith(run_dir.resolve().as_uri()) for u in b.requests)  # only the page and its folder


def test_beside_the_page_neighbours_selection_and_search(beside_report, browser, tmp_path):
    b = browser()
    page = b.open(beside_report)
    i, pos = visible_point(page, range(150, NB, 13))  # a galaxy of a later shard
    page.mouse.click(pos["x"], pos["y"])
    wait_js(page, f"morphospaceExplorer.focused() === {i}", 20)
    thumbs = page.locator("#ex-nn .thumb")
    assert thumbs.count() == 8
    want = page.evaluate(f"morphospaceExplorer.neighbours({i})")
    assert len(want) == 8 and all(0 <= j < NB for j in want)
    page.evaluate("morphospaceExplorer.ensure()")
    ids = wait_js(page, f"morphospaceExplorer.ids().filter(x => x !== undefined).length === {NB} && morphospaceExplorer.ids()")
    assert [thumbs.nth(k).get_attribute("title") for k in range(8)] == [ids[j] for j in want]
    wait_js(page, "[...document.querySelectorAll('#ex-nn .img')].every(e => e.getAttribute('data-thumb') !== '')", 20)
    # box over the whole map: every galaxy, downloaded with every id
    page.click(".ex-modes button[data-mode=box]")
    box = page.locator("#ex-overlay").bounding_box()
    page.mouse.move(box["x"] + 12, box["y"] + 12)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 12, box["y"] + box["height"] - 12, steps=8)
    page.mouse.up()
    assert page.evaluate("morphospaceExplorer.selection().length") == NB
    with page.expect_download() as info:
        page.click("#ex-download")
    path = tmp_path / "selection.csv"
    info.value.save_as(path)
    assert sorted(line.rsplit(",", 1)[0] for line in path.read_text().splitlines()[1:]) == sorted(ids)
    # lasso: a triangle selects what is drawn inside it
    page.click("#ex-clear")
    page.click(".ex-modes button[data-mode=lasso]")
    x0, y0, x1, y1 = box["x"] + 12, box["y"] + 12, box["x"] + box["width"] - 12, box["y"] + box["height"] - 12
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y0, steps=6)
    page.mouse.move(x0, y1, steps=6)
    page.mouse.move(x0, y0 + 5, steps=6)
    page.mouse.up()
    got = set(page.evaluate("morphospaceExplorer.selection()"))
    pos = page.evaluate(f"[...Array({NB}).keys()].map(i => morphospaceExplorer.screenPosition(i))")
    side = [(p["x"] - x0) / (x1 - x0) + (p["y"] - y0) / (y1 - y0) for p in pos]
    assert 0 < len(got) < NB
    assert got ^ {k for k, v in enumerate(side) if v < 1} <= {k for k, v in enumerate(side) if abs(v - 1) < 0.02}
    # search by id: the matches come once every id is in
    target = ids[NB - 3]
    page.fill("#ex-search", target)
    wait_js(page, "document.querySelectorAll('#ex-search-hits .ex-hit').length > 0", 20)
    assert page.get_attribute("#ex-search-hits .ex-hit", "data-index") == str(NB - 3)
    page.press("#ex-search", "Enter")
    wait_js(page, f"morphospaceExplorer.focused() === {NB - 3}", 20)
    # a tag by key lands on the galaxy's id
    page.evaluate("morphospaceExplorer.tag([5], 'interesting')")
    wait_js(page, "morphospaceExplorer.tags().length === 1")
    assert page.evaluate("morphospaceExplorer.tags()") == [[ids[5], "interesting"]]
    assert b.errors == [] and b.failed == []
    assert only_local(b.requests, beside_report.parent) == []


def test_beside_the_page_refuses_a_chunk_that_was_changed(beside_report, browser, tmp_path):
    # a copy of the report whose first map file holds other (valid) data: the page must not draw it
    copy = tmp_path / "copy"
    shutil.copytree(beside_report.parent / "report_files", copy / "report_files")
    shutil.copy(beside_report, copy / "report.html")
    chunk = copy / "report_files" / "ex_m0.html"
    text = chunk.read_text()
    at = text.index('<pre id="b">') + len('<pre id="b">') + 8
    chunk.write_text(text[:at] + ("B" if text[at] != "B" else "C") + text[at + 1:])
    b = browser()
    page = b.page
    page.goto((copy / "report.html").resolve().as_uri())
    wait_js(page, "!document.getElementById('ex-notice').hidden", 20)
    assert "ex_m0.html" in page.text_content("#ex-notice") and "not those this page was made with" in page.text_content("#ex-notice")
    assert not page.evaluate("window.morphospaceReady === true")
    assert b.errors == [] and only_local(b.requests, copy) == []


def test_beside_the_page_without_its_folder_says_so_at_once(beside_report, browser, tmp_path):
    """report.html copied alone (the common mistake) showed an empty map and no word for 60 s."""
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(beside_report, alone / "report.html")
    b = browser()
    page = b.page
    t0 = time.monotonic()
    page.goto((alone / "report.html").resolve().as_uri())
    wait_js(page, "!document.getElementById('ex-notice').hidden", 20)
    assert time.monotonic() - t0 < 20
    notice = page.text_content("#ex-notice")
    assert "report_files/ex_" in notice and "is the report_files folder beside the page?" in notice
    assert not page.evaluate("window.morphospaceReady === true")


def test_a_long_class_name_wraps_in_its_card_and_the_page_keeps_its_width(browser, tmp_path):
    """A class name of 500 letters without a space ran out of the Clusters card and made the whole
    page 5,145 px wide in a 1,400 px window (it scrolled sideways)."""
    import pandas as pd

    from morphospace.run import write_table

    run = make_fake_run(tmp_path / "run", n=60, size=32)
    cat = pd.read_parquet(run.catalogue)
    cat.loc[cat["morphology"] == "spiral", "morphology"] = "C" * 500
    write_table(run.catalogue, cat)
    b = browser()
    page = b.open(build_report(run, Config()))
    assert "C" * 500 in page.inner_text("body")  # shown whole, wrapped
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    b.shot(tmp_path, "report_long_class", full_page=True)
    assert b.errors == []
