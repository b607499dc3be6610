"""The explorer's search box, labels and sky positions: the payload in Python, the page in headless Chromium.

The browser tests reuse the machinery of ``test_report_browser`` (Debian's chromium, playwright; skipped
without them). One fake run has RA/Dec and awkward ids (a comma, quotes and a line break; a formula; unicode),
the other has no sky positions.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from morphospace.config import Config
from morphospace.report import build_report
from morphospace.report import neighbours as neighbours_mod
from morphospace.report.collect import RunContents
from morphospace.report.explorer import explorer_payload, storage_key
from morphospace.report.neighbours import nearest_neighbours
from morphospace.report.sky import project, sky_map
from morphospace.run import write_table

from report_fakerun import HOSTILE_ID, make_fake_run

ODD_IDS = {5: 'a,"b"\nc', 6: "=1+2", 7: "\u03a9 \u00f1 \u661f\u7cfb \U0001f680", 8: " padded "}
HOSTILE_NAMES = ["<img src=x onerror=alert(5)>", 'a,b "c"', "=cmd|' /C calc'!A0", "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
                 "\U0001f680 rocket", "<script>alert(6)</script>" + "x" * 300]


def with_sky(run, ra, dec, ids=None):
    """Give a fake run's catalogue ``ra``/``dec`` columns (cube rows first), and optionally other ids."""
    cat = run.read_catalogue()
    n = int((cat["cube_index"] >= 0).sum())
    cat["ra"] = np.r_[ra, np.full(len(cat) - n, np.nan)]
    cat["dec"] = np.r_[dec, np.full(len(cat) - n, np.nan)]
    for row, new in (ids or {}).items():
        cat.loc[cat["cube_index"] == row, "id"] = new
    write_table(run.catalogue, cat)
    return run


def decode(s: str, dtype: str) -> np.ndarray:
    import base64

    return np.frombuffer(base64.b64decode(s), dtype=np.dtype(dtype).newbyteorder("<"))


# ---------------------------------------------------------------- the payload, in Python

@pytest.mark.parametrize("exact_below", [neighbours_mod.EXACT_BELOW, 0], ids=["exact", "approximate"])
def test_neighbours_come_from_the_similarity_index(monkeypatch, exact_below):
    fitted = []

    class Spy(neighbours_mod.SimilarityIndex):
        def fit(self, X, y=None):
            super().fit(X, y)
            fitted.append((len(X), type(self.index_).__name__))
            return self

    monkeypatch.setattr(neighbours_mod, "SimilarityIndex", Spy)
    X = np.random.default_rng(0).normal(size=(400, 12)).astype(np.float32)
    nn = nearest_neighbours(X, k=8, exact_below=exact_below)
    # a small map is searched exactly; faiss's inverted file from EXACT_BELOW up
    assert fitted == [(400, "NearestNeighbors" if exact_below else "IndexIVFFlat")]
    assert nn.shape == (400, 8) and (nn != np.arange(400)[:, None]).all() and (nn >= 0).all()
    # nearly the exact neighbours, nearest first
    d = ((X[:, None] - X[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    exact = np.argsort(d, axis=1)[:, :8]
    recall = np.mean([len(set(a) & set(b)) / 8 for a, b in zip(nn, exact)])
    assert recall > 0.95
    assert np.all(np.diff(np.take_along_axis(d, nn.astype(int), axis=1), axis=1) >= -1e-4)


def test_payload_without_ra_dec_has_no_sky(tmp_path):
    run = make_fake_run(tmp_path / "run", n=40, size=16)
    c = RunContents(run)
    p = explorer_payload(c, np.arange(c.n))
    assert p["sky"] is None
    assert all(m.get("kind") != "sky" and not m["name"].startswith("sky") for m in p["maps"])
    assert p["neighbours"]["index"] == "exact"  # 40 points: below EXACT_BELOW
    assert p["storageKey"].startswith("morphospace:")


def test_an_approximate_search_is_said_with_its_measured_recall(tmp_path, monkeypatch):
    """Above EXACT_BELOW points the explorer's neighbours come from the inverted file, and its data
    carry the recall the index measured (the panel says it); here the line is moved below 60 points."""
    from morphospace.report import explorer

    monkeypatch.setattr(explorer, "neighbour_search",
                        lambda X, k, random_state: neighbours_mod.neighbour_search(X, k, random_state, exact_below=0))
    run = make_fake_run(tmp_path / "run", n=60, size=16)
    c = RunContents(run)
    nb = explorer_payload(c, np.arange(c.n))["neighbours"]
    assert nb["index"] == "approximate" and 0.95 <= nb["recall"] <= 1.0
    monkeypatch.undo()  # 60 points: exact, recall 1
    assert explorer_payload(c, np.arange(c.n))["neighbours"] | {"idx": None} == nb | {"index": "exact", "recall": 1.0, "idx": None}


def test_payload_with_ra_dec(tmp_path):
    rng = np.random.default_rng(1)
    ra, dec = rng.uniform(150, 151, 40), rng.uniform(1.5, 2.5, 40)
    ra[3] = np.nan  # a galaxy without a position
    run = with_sky(make_fake_run(tmp_path / "run", n=40, size=16), ra, dec)
    c = RunContents(run)
    p = explorer_payload(c, np.arange(c.n))
    sky = p["maps"][-1]
    assert sky["kind"] == "sky" and "RA increases to the left" in sky["name"] and "1 without a position" in sky["name"]
    assert [m["name"] for m in p["maps"][:-1]] == [m for m, _ in c.maps]  # the latent maps first, as before
    got_ra, got_dec = decode(p["sky"]["ra"], "float64"), decode(p["sky"]["dec"], "float64")
    ok = np.isfinite(ra)
    assert np.array_equal(got_ra[ok], ra[ok]) and np.array_equal(got_dec[ok], dec[ok]) and np.isnan(got_ra[3])
    xy = decode(sky["xy"], "float32").reshape(-1, 2)
    assert np.abs(xy).max() <= 1.0001
    # RA grows to the left, Dec upwards; the galaxy without a position lies below all the others
    a, b = np.argmin(np.where(ok, ra, np.inf)), np.argmax(np.where(ok, ra, -np.inf))
    assert xy[a, 0] > xy[b, 0]
    assert np.corrcoef(xy[ok, 1], dec[ok])[0, 1] > 0.999
    assert xy[3, 1] < xy[ok, 1].min()
    assert sky["grid"] and all("label" in g and len(decode(g["xy"], "float32")) % 2 == 0 for g in sky["grid"])
    # ra and dec are not repeated as float32 tooltip columns
    assert not {"ra", "dec"} & {col["name"] for col in p["columns"]}


def test_sky_map_of_the_whole_sky_wraps_at_0h():
    rng = np.random.default_rng(2)
    ra, dec = rng.uniform(0, 360, 500), np.degrees(np.arcsin(rng.uniform(-1, 1, 500)))
    m = sky_map(ra, dec)
    assert "Hammer-Aitoff" in m["name"]
    assert np.abs(m["xy"]).max() <= 1.0001
    # a field across 0h is one field, not two halves of the map
    m = sky_map(np.r_[359.0, 359.5, 0.5, 1.0], np.r_[0.0, 0.5, -0.5, 0.0])
    assert "Hammer" not in m["name"]
    x = m["xy"][:, 0]
    assert x[0] > x[1] > x[2] > x[3]
    assert project(np.r_[10.0], np.r_[0.0], 10.0, 0.0, True).tolist() == [[0.0, 0.0]]


def test_storage_key_tells_runs_apart(tmp_path):
    a = make_fake_run(tmp_path / "a", n=20, size=16, everything=False)
    b = make_fake_run(tmp_path / "b", n=20, size=16, everything=False)
    ka, kb = storage_key(RunContents(a)), storage_key(RunContents(b))
    assert ka != kb and ka == storage_key(RunContents(a))


# ---------------------------------------------------------------- the page, in Chromium

try:
    from test_report_browser import browser, chromium, hover, playwright, visible_point, wait_js  # noqa: F401
except pytest.skip.Exception:  # no chromium or no playwright: the Python tests above still run
    browser = None

def browser_test(f):
    """A test in headless Chromium (marked ``browser``, like test_report_browser's)."""
    return pytest.mark.browser(pytest.mark.skipif(browser is None, reason="needs headless Chromium and playwright")(f))
N = 80


@pytest.fixture(scope="module")
def sky_report(tmp_path_factory):
    """A report whose catalogue has RA/Dec and awkward ids."""
    rng = np.random.default_rng(3)
    run = make_fake_run(tmp_path_factory.mktemp("sky") / "run", n=N, size=24)
    with_sky(run, rng.uniform(150, 150.5, N), rng.uniform(2, 2.4, N), ODD_IDS)
    return build_report(run, Config())


@pytest.fixture(scope="module")
def plain_report(tmp_path_factory):
    """A report without sky positions."""
    return build_report(make_fake_run(tmp_path_factory.mktemp("plain") / "run", n=40, size=24), Config())


def ready(page):
    wait_js(page, "window.morphospaceReady === true")
    page.evaluate("document.getElementById('ex-stage').scrollIntoView({block: 'center', behavior: 'instant'})")


@browser_test
def test_search_finds_a_galaxy_and_its_neighbours(sky_report, browser, tmp_path):
    b = browser()
    page = b.open(sky_report)
    ids = page.evaluate("morphospaceExplorer.ids()")
    page.fill("#ex-search", "g00002")  # case-insensitive, as one types
    page.wait_for_selector("#ex-search-hits:not([hidden])")
    shown = page.locator("#ex-search-hits .ex-hit .gid").all_inner_texts()
    assert shown and all(s.startswith("G00002") for s in shown) and len(shown) <= 8
    page.fill("#ex-search", "G000042")
    wait_js(page, "document.querySelectorAll('#ex-search-hits .ex-hit').length >= 1", 10)
    assert page.locator("#ex-search-hits .ex-hit .gid").first.inner_text() == "G000042"  # exact first
    page.keyboard.press("Enter")
    i = ids.index("G000042")
    wait_js(page, f"morphospaceExplorer.focused() === {i}", 10)
    assert page.is_hidden("#ex-search-hits")
    want = page.evaluate(f"morphospaceExplorer.neighbours({i})")
    thumbs = page.locator("#ex-nn .thumb")
    assert len(want) == 8 and [thumbs.nth(k).get_attribute("title") for k in range(8)] == [ids[j] for j in want]
    # the map is centred on it
    pos, box = page.evaluate(f"morphospaceExplorer.screenPosition({i})"), page.locator("#ex-stage").bounding_box()
    assert abs(pos["x"] - (box["x"] + box["width"] / 2)) < 3 and abs(pos["y"] - (box["y"] + box["height"] / 2)) < 3
    # a substring, an id with a line break, and no match at all
    assert page.evaluate("morphospaceExplorer.search('\u661f\u7cfb')") == [ids.index(ODD_IDS[7])]
    assert page.evaluate("morphospaceExplorer.search('a,\"b\"\\nc')") == [ids.index(ODD_IDS[5])]
    page.fill("#ex-search", "no such galaxy")
    page.wait_for_selector("#ex-search-hits .ex-hits-none")
    assert "no such galaxy" in page.inner_text("#ex-search-hits")
    b.shot(tmp_path, "explorer_search")
    assert b.errors == []


@browser_test
def test_tags_keys_reload_and_csv(sky_report, browser, tmp_path):
    b = browser()
    page = b.open(sky_report)
    ids = page.evaluate("morphospaceExplorer.ids()")
    assert page.evaluate("morphospaceExplorer.labels()") == ["interesting"]
    # a new label from the panel, then hostile ones through the interface
    page.fill("#ex-label-new", "spiral")
    page.press("#ex-label-new", "Enter")
    for name in HOSTILE_NAMES:
        page.evaluate("n => morphospaceExplorer.addLabel(n)", name)
    labels = page.evaluate("morphospaceExplorer.labels()")
    assert labels[:2] == ["interesting", "spiral"] and len(labels) == 2 + len(HOSTILE_NAMES)
    assert labels[-1] == HOSTILE_NAMES[-1][:120]  # long names are cut, not refused
    # key 2 over a galaxy tags it "spiral"
    i, _ = visible_point(page, range(10, N, 3))
    hover(page, i)
    page.keyboard.press("2")
    wait_js(page, "morphospaceExplorer.tags().length === 1", 10)
    assert page.evaluate("morphospaceExplorer.tags()") == [[ids[i], "spiral"]]
    assert "spiral" in page.inner_text("#ex-tooltip")  # the open tooltip shows the new tag
    # key 1 with the pointer off the map tags the selection
    page.evaluate("morphospaceExplorer.select([0, 5, 6])")
    page.mouse.move(5, 5)
    page.focus("#ex-label-add")
    page.keyboard.press("1")
    # the awkward ids and hostile labels through the interface
    for k in range(len(HOSTILE_NAMES)):
        page.evaluate("([l, n]) => morphospaceExplorer.tag(l, n)", [[20 + k], labels[2 + k]])
    page.evaluate("morphospaceExplorer.tag([7], 'spiral')")
    page.evaluate("n => morphospaceExplorer.tag([8], n)", labels[2])
    want = dict(page.evaluate("morphospaceExplorer.tags()"))
    assert want[ids[0]] == want[ODD_IDS[5]] == want[ODD_IDS[6]] == "interesting"
    assert len(want) == 1 + 3 + len(HOSTILE_NAMES) + 2
    # survives a reload
    page.reload()
    ready(page)
    assert dict(page.evaluate("morphospaceExplorer.tags()")) == want
    assert page.evaluate("morphospaceExplorer.labels()") == labels
    page.select_option("#ex-colour", label="tags (yours)")
    assert "spiral" in page.inner_text("#ex-legend")
    # the CSV of classify --labels, parsed back
    page.fill("#ex-label-column", "my class")
    page.press("#ex-label-column", "Tab")
    with page.expect_download() as info:
        page.click("#ex-label-download")
    path = tmp_path / "labels.csv"
    info.value.save_as(path)
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(table.columns) == ["id", "my class"]
    got = dict(zip(table["id"], table["my class"]))
    guarded = {k: ("'" + v if v[0] in "=+-@" else v) for k, v in want.items()}
    assert got == guarded
    assert got[ODD_IDS[6]] == "interesting" and ODD_IDS[5] in got and ODD_IDS[8] in got  # ids exactly
    assert "'=cmd|' /C calc'!A0" in got.values()  # a formula is defused
    # and `morphospace classify --labels FILE --column "my class"` reads it (its reader strips edge spaces),
    # each class as typed: the formula's guard taken off again
    from morphospace.analysis.classes import read_labels

    pairs, notes = read_labels(path, "my class")
    assert notes == [] and dict(zip(pairs["id"], pairs["label"])) == {k.strip(): v for k, v in want.items()}
    b.shot(tmp_path, "explorer_tags")
    page.wait_for_timeout(100)
    assert b.dialogs == [] and b.errors == []


@browser_test
def test_an_ra_just_below_360_degrees_wraps_to_0_as_its_hours_do(browser, tmp_path):
    """RA 359.9999999 read "360.00000°" beside "00:00:00.00" in the tooltip."""
    rng = np.random.default_rng(4)
    run = with_sky(make_fake_run(tmp_path / "run", n=30, size=16), np.full(30, 359.9999999), rng.uniform(2, 2.4, 30))
    b = browser()
    page = b.open(build_report(run, Config()))
    i, _ = visible_point(page, range(30))
    hover(page, i)
    text = page.inner_text("#ex-tooltip")
    assert "0.00000\u00b0" in text and "360.00000" not in text and "00:00:00.00" in text
    assert b.errors == []


@browser_test
def test_a_label_classify_would_read_as_no_label_is_refused(sky_report, browser):
    """A label named "none" (or "NA", "N/A", "NaN") was taken, and its downloaded CSV then refused by
    `classify` ("none") or its galaxies read as unlabelled (the others)."""
    b = browser()
    page = b.open(sky_report)
    before = page.evaluate("morphospaceExplorer.labels()")
    for name in ("none", "NA", " n/a ", "NaN", "Null"):
        assert page.evaluate("n => morphospaceExplorer.addLabel(n)", name) is False, name
        assert "reads as no label in morphospace classify" in page.inner_text("#ex-label-note")
    assert page.evaluate("morphospaceExplorer.labels()") == before
    assert page.evaluate("n => morphospaceExplorer.addLabel(n)", "nonesuch") is True  # a name that only begins so
    assert b.errors == []


@browser_test
def test_cluster_names_persist_and_hostile_names_are_text(sky_report, browser, tmp_path):
    b = browser()
    page = b.open(sky_report)
    hostile = '<img src=x onerror=alert(7)> "\u05e9\u05dc\u05d5\u05dd" \U0001f30c'
    page.locator("#ex-legend .ex-edit").first.click()
    page.fill("#ex-legend input.ex-inline", hostile)
    page.press("#ex-legend input.ex-inline", "Enter")
    assert hostile in page.inner_text("#ex-legend")
    page.evaluate("morphospaceExplorer.addLabel('<b onmouseover=alert(8)>bold</b>')")
    assert "<b onmouseover=alert(8)>bold</b>" in page.inner_text("#ex-label-list")
    page.reload()
    ready(page)
    assert page.evaluate("morphospaceExplorer.clusterNames(0)")["0"] == hostile
    assert hostile in page.inner_text("#ex-legend")
    # the name is in the tooltip of a galaxy of that cluster
    codes = page.evaluate("morphospaceData.explorer.colourings[0].codes")
    first = [i for i, c in enumerate(decode(codes, "int16")) if c == 0]
    i, _ = visible_point(page, first)
    hover(page, i)
    assert hostile in page.inner_text("#ex-tooltip")
    # nowhere did a name become elements
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"], [onerror], [onmouseover]').length") == 0
    b.shot(tmp_path, "explorer_cluster_names")
    page.wait_for_timeout(100)
    assert b.dialogs == [] and b.errors == []


@browser_test
def test_cluster_names_stay_with_the_clustering_they_were_given_to(browser, tmp_path):
    """A clustering made again (another seed): its cluster 0 holds other galaxies, and the name given
    to the earlier cluster 0 was shown on it (names were kept by clustering name and number only)."""
    run = make_fake_run(tmp_path / "run", n=40, size=24)
    report = build_report(run, Config())
    b = browser()
    page = b.open(report)
    name = page.evaluate("morphospaceData.explorer.colourings[0].name")
    page.locator("#ex-legend .ex-edit").first.click()
    page.fill("#ex-legend input.ex-inline", "ellipticals")
    page.press("#ex-legend input.ex-inline", "Enter")
    build_report(run, Config())  # the same clustering: its names stay
    page.reload()
    ready(page)
    assert page.evaluate("morphospaceExplorer.clusterNames(0)")["0"] == "ellipticals"
    table = pd.read_parquet(run.clustering_path(name))
    labels = table["label"].to_numpy()
    run.write_clustering(name, table["id"].to_numpy(), np.where(labels >= 0, (labels + 1) % (labels.max() + 1), labels))
    build_report(run, Config())
    page.reload()
    ready(page)
    assert page.evaluate("morphospaceData.explorer.colourings[0].name") == name
    assert "ellipticals" not in page.evaluate("morphospaceExplorer.clusterNames(0)").values()
    assert "ellipticals" not in page.inner_text("#ex-legend")
    # names kept by clustering name alone (before stamps): which clusters they named cannot be told
    page.evaluate("""name => localStorage.setItem(morphospaceData.explorer.storageKey, JSON.stringify(
        {v: 1, labels: [], tags: [], clusters: [[name, [['0', 'legacy']]]], column: 'label'}))""", name)
    page.reload()
    ready(page)
    assert "legacy" not in page.evaluate("morphospaceExplorer.clusterNames(0)").values()
    assert b.errors == []


@browser_test
def test_a_damaged_entry_is_set_aside_with_a_note(sky_report, browser):
    b = browser()
    page = b.open(sky_report)
    key = page.evaluate("morphospaceExplorer.storageKey()")
    page.evaluate("k => localStorage.setItem(k, '{not json')", key)
    page.reload()
    ready(page)
    assert page.is_visible("#ex-label-note")
    assert "could not be read" in page.inner_text("#ex-label-note")
    assert page.evaluate("morphospaceExplorer.labels()") == ["interesting"]
    assert page.evaluate("k => localStorage.getItem(k + ':damaged')", key) == "{not json"
    page.evaluate("morphospaceExplorer.tag([1], 'interesting')")  # and the page works on
    assert page.evaluate("morphospaceExplorer.tags().length") == 1
    assert b.errors == []


@browser_test
def test_sky_map_only_with_ra_dec(sky_report, plain_report, browser, tmp_path):
    b = browser()
    page = b.open(plain_report)
    assert not any(m.startswith("sky") for m in page.evaluate("morphospaceExplorer.maps()"))
    assert page.evaluate("morphospaceExplorer.selectionCSV()").startswith("id,vade\r\n")
    # two reports keep their tags apart (every file:// page shares one local storage)
    plain_key = page.evaluate("morphospaceExplorer.storageKey()")
    page.evaluate("morphospaceExplorer.tag([2], 'interesting')")
    page = b.open(sky_report)
    assert page.evaluate("morphospaceExplorer.storageKey()") != plain_key
    assert page.evaluate("morphospaceExplorer.tags()") == []
    maps = page.evaluate("morphospaceExplorer.maps()")
    assert maps[-1].startswith("sky: RA/Dec") and not any(m.startswith("sky") for m in maps[:-1])
    page.evaluate(f"morphospaceExplorer.setMap({len(maps) - 1})")
    ids = page.evaluate("morphospaceExplorer.ids()")
    i, _ = visible_point(page, range(9, N, 5))
    hover(page, i)
    text = page.inner_text("#ex-tooltip")
    ra, dec = page.evaluate(f"morphospaceExplorer.sky({i})")
    assert "RA, Dec (deg)" in text and f"{ra:.5f}\u00b0" in text and "10:0" in text  # 150 deg = 10 h
    page.evaluate("morphospaceExplorer.select([0, 5, 9])")
    table = pd.read_csv(__import__("io").StringIO(page.evaluate("morphospaceExplorer.selectionCSV()")),
                        dtype={"id": str}, keep_default_na=False)
    assert list(table.columns) == ["id", "vade", "ra", "dec"]
    assert list(table["id"]) == [HOSTILE_ID, ODD_IDS[5], ids[9]]
    assert table["ra"].iloc[2] == page.evaluate("morphospaceExplorer.sky(9)")[0]
    b.shot(tmp_path, "explorer_sky")
    assert b.errors == []
