"""The report: sections from whatever a run holds, figures, sprites, neighbours, escaping."""

from __future__ import annotations

import base64
import hashlib
import html as html_lib
import io
import json
import shutil
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape
from PIL import Image

from morphospace.config import Config, apply_overrides
from morphospace.errors import UserError
from morphospace.report import build_report
from morphospace.report.explorer import normalise_xy
from morphospace.report.neighbours import nearest_neighbours
from morphospace.report.html import EXPLORER_PARTS, asset, explorer_script, json_for_script, render_string
from morphospace.report.sprites import SpriteSheets, to_uint8
from morphospace.report.style import GREY, LABEL_PALETTE, PALETTE
from morphospace.run import RunDir, write_json, write_npy, write_table

from report_fakerun import HOSTILE_FIGURE, HOSTILE_ID, HOSTILE_LABEL, add_many_comparisons, make_fake_run


def payload(html: str) -> dict:
    """The page's embedded JSON data."""
    m = re.search(r'<script type="application/json" id="morphospace-data">(.*?)</script>', html, re.S)
    assert m, "the embedded data block is missing"
    return json.loads(m.group(1))


def section_ids(html: str) -> list[str]:
    """The ids of the page's sections, in order."""
    return re.findall(r'<section id="([^"]+)"', html)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """A fake run with everything, and its report's HTML."""
    run = make_fake_run(tmp_path_factory.mktemp("full") / "run", n=60, size=32)
    path = build_report(run, Config())
    return run, path.read_text(encoding="utf-8")


def test_every_section_of_a_full_run(full_run):
    run, html = full_run
    assert section_ids(html) == ["explorer", "data", "model", "clusters", "comparisons", "strangest", "other-figures"]
    figs = {p.name for p in (run.path / "figures").glob("*.png")}
    for name in ("flags", "labels", "mosaic", "training_vade", "cluster_sizes", "cluster_label_mix",
                 "cluster_anomaly", "cluster_gallery", "ari", "ami", "nuisance_audit", "anomaly_histogram",
                 "strangest"):
        assert f"report_{name}.png" in figs, name
    # every embedded figure is a PNG with something drawn on it, and the saved file is what the page shows
    uris = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="[^"]*"><figcaption>.*?figures/([^<]+)</span>', html)
    assert len(uris) >= 10
    for u, name in uris:
        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(u))).convert("RGB"), dtype=float) / 255
        assert img.std() > 0.05, name  # not a blank page
        saved = np.asarray(Image.open(run.path / "figures" / html_lib.unescape(name)).convert("RGB"), dtype=float) / 255
        np.testing.assert_array_equal(img, saved)
    # the clusters' figures show the clusters' colours (the explorer's palette)
    sizes = np.asarray(Image.open(run.figure_path("report_cluster_sizes")).convert("RGB"), dtype=float) / 255
    for k in range(3):
        want = np.array([int(PALETTE[k][i:i + 2], 16) for i in (1, 3, 5)]) / 255
        assert (np.abs(sizes - want).max(-1) < 0.02).sum() > 100, k
    # ... and the label mix in the classes' own deep tones: no class shares a colour with a cluster
    mix = np.asarray(Image.open(run.figure_path("report_cluster_label_mix")).convert("RGB"), dtype=float) / 255
    rgb = lambda h: np.array([int(h[i:i + 2], 16) for i in (1, 3, 5)]) / 255  # noqa: E731
    assert (np.abs(mix - rgb(LABEL_PALETTE[0])).max(-1) < 0.02).sum() > 100
    assert (np.abs(mix - rgb(PALETTE[1])).max(-1) < 0.02).sum() == 0  # cluster 1's orange
    dots = set(re.findall(r'<span class="dot" style="background:(#[0-9a-f]{6})"', html))
    segs = set(re.findall(r'<span class="seg" style="width:[0-9.]+%;background:(#[0-9a-f]{6})"', html))
    assert dots and segs and not dots & segs and segs <= set(LABEL_PALETTE) | {GREY}
    # the figure no section places is shown under "other figures"
    other = html[html.index('id="other-figures"'):]
    assert "someone_elses_plot.png" in other
    # the nav links exactly the sections present
    assert re.findall(r'<a href="#([^"]+)">', html) == section_ids(html)


def test_many_clusterings_are_read_one_at_a_time(tmp_path, full_run):
    """A feature study's 62 x 62 matrices are unreadable as figures and its 59 contingency tables a long
    column: past 8, one clustering's row of the matrices (best agreement first) and one contingency
    table at a time, chosen from a list. A run of a few keeps its figures and open-able tables."""
    _, few = full_run
    assert 'class="pickgroup"' not in few and "<details open><summary>vade" in few
    run = make_fake_run(tmp_path / "run", n=40, size=32)
    names = add_many_comparisons(run, extra=12)
    html = build_report(run, Config()).read_text(encoding="utf-8")
    comparisons = html[html.index('id="comparisons"'):html.index('id="strangest"')]
    groups = comparisons.split('<div class="pickgroup">')[1:]
    assert len(groups) == 2
    pairs, conts = groups[0], groups[1][:groups[1].index("</div></div>")]
    options = re.findall(r'<option value="(\d+)">([^<]*)</option>', pairs)
    # every row of the matrices, the report's clusters and the truth first
    assert [o[0] for o in options] == [str(i) for i in range(len(names))]
    assert [o[1] for o in options][:2] == ["vade", "morphology"] and sorted(o[1] for o in options) == sorted(names)
    shown = re.findall(r'<div class="picked"( hidden)?>', pairs)
    assert shown[0] == "" and all(h == " hidden" for h in shown[1:]) and len(shown) == len(names)
    # the first is vade's row: every other clustering and label, by AMI, best first
    first = pairs.split('<div class="picked"')[1]
    rows = re.findall(r"<tr><th>([^<]*)</th><td[^>]*>([^<]*)</td><td[^>]*>([^<]*)</td></tr>", first)
    ami = pd.read_csv(run.path / "comparisons" / "ami.csv", index_col=0).loc["vade"].drop("vade")
    assert [r[0] for r in rows] == list(ami.sort_values(ascending=False).index)
    assert [float(r[2]) for r in rows] == pytest.approx(ami.sort_values(ascending=False).round(3).to_list(), abs=1e-3)
    options = re.findall(r"<option[^>]*>([^<]*)</option>", conts)
    assert options == ["vade \u00d7 morphology"] + [f"study_{i} \u00d7 morphology" for i in range(12)]
    assert "<details" not in conts


def test_explorer_payload_of_a_full_run(full_run):
    run, html = full_run
    data = payload(html)
    ex = data["explorer"]
    assert ex["n"] == ex["nTotal"] == 60
    assert ex["ids"] == list(run.cube_ids())
    assert [m["name"] for m in ex["maps"]] == ["vade_tsne", "vade_pca (1, 2)"]
    xy = np.frombuffer(base64.b64decode(ex["maps"][0]["xy"]), "<f4").reshape(-1, 2)
    assert xy.shape == (60, 2) and np.abs(xy).max() == pytest.approx(1.0)
    names = [c["name"] for c in ex["colourings"]]
    assert names[:3] == ["vade", "morphology", "anomaly score"]
    assert "kmeans4_vade" in names and ex["primary"] == "vade"
    # neighbours: k = 8 per galaxy, never itself, nearest in the vade embedding first
    nn = np.frombuffer(base64.b64decode(ex["neighbours"]["idx"]), "<i4").reshape(60, 8)
    z = run.read_embedding("vade")
    d = ((z[:, None] - z[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert ex["neighbours"]["space"] == "vade"
    assert (nn != np.arange(60)[:, None]).all()
    np.testing.assert_array_equal(nn[:, 0], d.argmin(1))
    # thumbnails: one sprite per galaxy (plus any gallery extra), inlined at this size
    sp = data["sprites"]
    assert sp["n"] >= 60 and sp["tile"] == 48 and sp["sheets"][0]["url"].startswith("data:image/webp;base64,")


class Parsed(HTMLParser):
    """Elements, attributes, text and script contents of a page, as a browser's parser sees them."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.text, self.scripts, self._in = [], [], [], None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in = tag if tag in ("script", "style") else None
        if tag == "script":
            self.scripts.append((dict(attrs), ""))

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in == "script":
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        elif self._in is None:
            self.text.append(data)


def assert_inert(html: str, *hostile: str) -> Parsed:
    """No hostile string became markup: it is shown as text, and the only scripts are the report's."""
    parsed = Parsed(html)
    for raw in hostile:
        assert raw not in html, raw
        assert raw in "".join(parsed.text), raw
    handlers = [(t, k) for t, attrs in parsed.tags for k in attrs if k.lower().startswith("on")]
    assert handlers == []
    assert [t for t, attrs in parsed.tags if t == "img" and attrs.get("src") == "x"] == []
    # the embedded data, then the two inline scripts of the report
    assert [a for a, _ in parsed.scripts] == [{"type": "application/json", "id": "morphospace-data"}, {}, {}]
    return parsed


def test_hostile_strings_are_escaped(full_run):
    _, html = full_run
    parsed = assert_inert(html, HOSTILE_ID, HOSTILE_LABEL)
    for raw in (HOSTILE_FIGURE, "<img src=x", "<script>alert", "<b onmouseover"):
        assert raw not in html
    text = "".join(parsed.text)
    assert f"{HOSTILE_FIGURE}.png" in text  # the file name, as text
    assert str(escape(f"{HOSTILE_FIGURE}.png")) in html
    assert HOSTILE_ID in text  # shown as text in the galleries
    block = re.search(r'id="morphospace-data">(.*?)</script>', html, re.S).group(1)
    assert "<" not in block and ">" not in block
    assert "\\u003cimg src=x onerror=alert(1)\\u003e" in block
    data = payload(html)
    assert data["explorer"]["ids"][0] == HOSTILE_ID
    morph = next(c for c in data["explorer"]["colourings"] if c["name"] == "morphology")
    assert HOSTILE_LABEL in morph["categories"]
    # only the report's own scripts may run: the CSP lists the hash of each inline script
    csp = next(a["content"] for t, a in parsed.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    inline = [text for attrs, text in parsed.scripts if not attrs]
    assert sorted(re.findall(r"'sha256-([^']+)'", csp)) == sorted(
        base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() for s in inline)
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp


HOSTILE_COLUMN = "morph\"<script>alert(5)</script>&amp;'x"
HOSTILE_VALUE = "it's \"spiral\" & <i>barred</i>"


def test_hostile_column_names_values_and_meta_are_escaped(tmp_path):
    """Label column names, label values, matrix row names, flag meanings, sources: all shown as text."""
    run = make_fake_run(tmp_path / "run", n=40, size=32)
    cat = run.read_catalogue()
    cat["morphology"] = cat["morphology"].replace("spiral", HOSTILE_VALUE)
    cat = cat.rename(columns={"morphology": HOSTILE_COLUMN})
    cat.loc[2, "id"] = "line\u2028separator\u2029id"
    write_table(run.catalogue, cat)
    summary = json.loads(run.ingest_summary.read_text())
    summary["flags"]["blank"]["meaning"] = "blank <u>&amp; 'empty'</u>"
    summary["source"] = "/data/<survey> & \"friends\""
    run.ingest_summary.write_text(json.dumps(summary))
    for m in ("ari", "ami"):
        mat = pd.read_csv(run.path / "comparisons" / f"{m}.csv").replace("morphology", HOSTILE_COLUMN)
        mat.columns = [HOSTILE_COLUMN if c == "morphology" else c for c in mat.columns]
        write_table(run.path / "comparisons" / f"{m}.csv", mat)
    (run.path / "figures" / "ari_matrix.png").unlink(missing_ok=True)
    cfg = apply_overrides(Config(), [f"data.truth_label={json.dumps(HOSTILE_COLUMN)}"])
    html = build_report(run, cfg).read_text(encoding="utf-8")
    parsed = assert_inert(html, HOSTILE_COLUMN, HOSTILE_VALUE, "blank <u>&amp; 'empty'</u>",
                          "<survey> & \"friends\"")  # the source folder shown by its name
    text = "".join(parsed.text)
    assert f"Agreement with {HOSTILE_COLUMN}" in text  # the truth column, in a card title
    assert f"the label bar shows {HOSTILE_COLUMN}" in text
    block = parsed.scripts[0][1]
    assert "</" not in block and "\u2028" not in block and "\u2029" not in block
    data = payload(html)
    assert data["explorer"]["ids"][2] == "line\u2028separator\u2029id"
    assert HOSTILE_COLUMN in [c["name"] for c in data["explorer"]["colourings"]]


def test_json_for_script_escapes_markup():
    obj = {"a": "</script><b>&amp;\u2028\u2029<!--", "</script>": ["x"]}
    text = json_for_script(obj)
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == obj


def test_templates_autoescape_and_the_page_inlines_every_explorer_part():
    assert render_string("<p title='{{ v }}'>{{ v }}</p>", v="<b>\"'&") == (
        "<p title='&lt;b&gt;&#34;&#39;&amp;'>&lt;b&gt;&#34;&#39;&amp;</p>")
    script = explorer_script()
    at = [script.index(asset(f"explorer/{name}").strip()) for name in EXPLORER_PARTS]
    assert at == sorted(at)  # every part, in order, inside one closure
    assert script.startswith("/*") and script.rstrip().endswith("})();")
    assert "</script" not in script.lower()
    # every template and asset is package data of the wheel
    import tomllib
    from fnmatch import fnmatch
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["morphospace"]
    pkg = root / "src" / "morphospace"
    files = [p.relative_to(pkg).as_posix() for d in ("report/templates", "report/assets") for p in (pkg / d).rglob("*")
             if p.is_file()]
    assert {"report/templates/page.html", "report/assets/explorer/render.js"} <= set(files)
    assert [f for f in files if not any(fnmatch(f, g) and f.count("/") == g.count("/") for g in globs)] == []


def test_minimal_grey_run_still_has_an_explorer(tmp_path):
    run = make_fake_run(tmp_path / "run", n=40, size=40, everything=False)
    grey = np.load(run.cube).mean(axis=1, keepdims=True)  # 40 x 1 x 40 x 40, like the astrovader preset
    np.save(run.cube, grey)
    html = build_report(run, Config()).read_text()
    sheet = payload(html)["sprites"]["sheets"][0]
    img = Image.open(io.BytesIO(base64.b64decode(sheet["url"].split(",", 1)[1])))
    assert img.size == (sheet["cols"] * 48, sheet["rows"] * 48)
    rgb = np.asarray(img.convert("RGB")).astype(int)  # WebP has no grey mode: three equal channels
    assert np.abs(rgb[..., 0] - rgb[..., 1]).max() <= 2 and rgb.max() > 100
    assert section_ids(html) == ["explorer", "data"]
    ex = payload(html)["explorer"]
    assert len(ex["maps"]) == 1 and ex["maps"][0]["name"].startswith("PCA of pixels")
    assert ex["neighbours"]["space"].startswith("pixels")
    assert [c["name"] for c in ex["colourings"]] == ["morphology"]


def test_primary_is_the_selected_kmeans_without_vade_and_stale_figures_go(tmp_path):
    run = make_fake_run(tmp_path / "run", n=40, size=32)
    build_report(run, Config())
    assert run.figure_path("report_strangest").exists()
    # the VaDE's clustering and scores are gone: k-means at its selected k takes over
    run.clustering_path("vade").unlink()
    (run.path / "vade_galaxies.parquet").unlink()
    run.write_clustering("kmeans3_vade", run.cube_ids(), np.arange(40) % 3)
    (run.path / "clusterings" / "kmeans3_vade.json").write_text(json.dumps({"k": 3, "best_k": 4, "representation": "vade"}))
    html = build_report(run, Config()).read_text()
    assert payload(html)["explorer"]["primary"] == "kmeans4_vade"
    assert "Clustering <code>kmeans4_vade</code>" in html
    # without probabilities, exemplars are the members nearest the centre in the clustering's representation
    assert "members nearest the cluster centre" in html
    # figures of sections that are gone are removed; other stages' figures never are
    assert 'id="strangest"' not in html
    assert not run.figure_path("report_strangest").exists()
    assert not run.figure_path("report_cluster_anomaly").exists()
    assert run.figure_path("someone_elses_plot").exists()


def test_subsample_and_sprite_sheets_beside_the_page(tmp_path):
    run = make_fake_run(tmp_path / "run", n=60, size=32)
    cfg = apply_overrides(Config(), ["report.max_points=25", "report.inline_limit_mb=0",
                                     "report.thumb_format='jpeg'", "report.thumb_size=32"])
    html = build_report(run, cfg).read_text()
    ex = payload(html)["explorer"]
    assert ex["n"] == 25 and ex["nTotal"] == 60
    assert set(ex["ids"]) <= set(run.cube_ids())
    nn = np.frombuffer(base64.b64decode(ex["neighbours"]["idx"]), "<i4")
    assert nn.min() >= 0 and nn.max() < 25
    sheets = payload(html)["sprites"]["sheets"]
    assert [s["url"] for s in sheets] == ["report_files/thumbs_0.jpeg"]
    sheet = Image.open(run.path / "report_files" / "thumbs_0.jpeg")
    assert sheet.format == "JPEG" and sheet.size == (sheets[0]["cols"] * 32, sheets[0]["rows"] * 32)
    assert "data:image/jpeg;base64" not in html.split('id="morphospace-data"')[1]
    # rebuilt small again: the sheets move back inside and the folder goes
    build_report(run, Config())
    assert not (run.path / "report_files").exists()


@pytest.mark.slow
def test_a_report_of_fewer_galaxies_than_inline_points_is_one_file(tmp_path):
    """12,000 galaxies of noise (the least compressible thumbnails: about 10 MB of sheets) under the
    default settings: the README promises one self-contained page up to ``report.inline_points``;
    the sheets went beside it above 8 MB (real sdss-gz1 galaxies from about 12,700)."""
    run = make_fake_run(tmp_path / "run", n=12_000, size=16)
    html = build_report(run, Config()).read_text()
    assert not (run.path / "report_files").exists()
    sheets = payload(html)["sprites"]["sheets"]
    assert sum(len(s["url"]) for s in sheets) > 8e6 * 4 / 3  # more than the earlier limit, base64
    assert all(s["url"].startswith("data:image/webp;base64,") for s in sheets)
    assert not payload(html)["explorer"].get("lazy")


def test_sprite_tiles_hold_their_thumbnails():
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (11, 3)).astype(np.uint8)
    thumbs = np.broadcast_to(colours[:, None, None, :], (11, 16, 16, 3)).copy()
    sheets = SpriteSheets(tile=16, cols=3, rows_per_sheet=2, fmt="webp", quality=95).fit(thumbs)
    assert len(sheets.sheets_) == 2 and sheets.per_sheet == 6
    for i in range(11):
        s = sheets.sheets_[i // 6]
        img = np.asarray(Image.open(io.BytesIO(s.data)).convert("RGB"))
        r, c = divmod(i % 6, s.cols)
        tile = img[r * 16 + 4:(r + 1) * 16 - 4, c * 16 + 4:(c + 1) * 16 - 4].reshape(-1, 3).mean(0)
        assert np.abs(tile - colours[i]).max() < 12, i


def test_thumbnails_are_area_averages():
    from morphospace.report.sprites import area_matrix, thumbnails

    a = area_matrix(4, 3)
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    np.testing.assert_allclose(a[0], [0.75, 0.25, 0, 0])
    cube = np.zeros((2, 3, 4, 4), np.float32)
    cube[1, :, :, 1] = 0.8  # a bright column
    cube[1, 0, 0, 0] = 5.0  # beyond the display range: clipped before averaging
    th = thumbnails(cube, [1, 0], 3)
    assert th.shape == (2, 3, 3, 3) and th[1].max() == 0
    # output column 0 covers input columns [0, 4/3): a quarter of it is the bright column
    assert th[0, 1, 0, 1] == round(0.25 * 0.8 * 255)
    assert th[0, 0, 0, 0] == round((0.75 * (0.75 * 1.0 + 0.25 * 0.8) + 0.25 * 0.25 * 0.8) * 255)


def test_to_uint8_clips_and_handles_grey():
    cube = np.array([[[[-0.5, 0.5], [1.0, np.nan]]]], dtype=np.float32)  # 1 x 1 x 2 x 2
    out = to_uint8(cube)
    assert out.shape == (1, 2, 2, 1)
    assert out[0, :, :, 0].tolist() == [[0, 128], [255, 0]]


def test_neighbours_never_include_self_even_with_duplicates():
    X = np.array([[0.0, 0], [0, 0], [0, 0], [5, 5], [5, 6]])
    nn = nearest_neighbours(X, k=3)
    assert (nn != np.arange(5)[:, None]).all()
    assert set(nn[0]) == {1, 2, 3}
    assert nearest_neighbours(X[:2], k=3).tolist() == [[1, -1, -1], [0, -1, -1]]


def test_normalise_keeps_aspect():
    xy = normalise_xy(np.array([[0.0, 0], [10, 2], [4, 1]]))
    assert xy[:, 0].min() == -1 and xy[:, 0].max() == 1
    assert xy[:, 1].max() - xy[:, 1].min() == pytest.approx(0.4)


def test_flagged_examples_show_their_source_image(tmp_path):
    run = make_fake_run(tmp_path / "run", n=30, size=32, everything=False)
    cat = run.read_catalogue()
    img = tmp_path / "bad.png"
    Image.new("RGB", (120, 90), (250, 10, 10)).save(img)
    cat.loc[cat["id"] == "BAD000", "source"] = str(img)
    write_table(run.catalogue, cat)
    html = build_report(run, Config()).read_text()
    flags = html[html.index('class="flags"'):]
    assert flags.count("data:image/jpeg;base64,") == 1  # BAD000's file; BAD001/2 have none
    assert flags.count("no image") == 2


def test_nothing_to_report_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="ingest"):
        build_report(RunDir(tmp_path, create=True), Config())


@pytest.mark.slow
def test_linear_probes_are_shown(tmp_path):
    from morphospace.analysis.probe import linear_probe
    from morphospace.run import write_table

    run = make_fake_run(tmp_path / "run", n=60, size=32, everything=False)
    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b", "c"], 40)
    good = linear_probe(np.eye(3)[np.searchsorted(["a", "b", "c"], y)] * 5 + rng.normal(size=(120, 3)), y, repeats=2)
    bad = linear_probe(rng.normal(size=(120, 3)), y, repeats=2)
    table = pd.concat([good.assign(embedding="good", label="kind"), bad.assign(embedding="noise", label="kind")])
    write_table(run.path / "comparisons" / "linear_probe.csv", table)
    html = build_report(run, Config()).read_text(encoding="utf-8")
    card = html[html.index("Linear probes"):]
    card = card[: card.index("</table>")]
    n = int(good.loc[good["fraction"] == 0.1, "n_train"].iloc[0])
    assert "<code>kind</code>" in card and f"10% of labels ({n})" in card and "all labels (5-fold CV" in card
    assert card.index(">good<") < card.index(">noise<")  # best first
    assert f"{good['balanced_accuracy'].iloc[1]:.3f}" in card


def test_the_report_says_when_the_clustering_was_fitted_on_a_sample(tmp_path):
    run = make_fake_run(tmp_path / "run", n=40, size=32)
    run.clustering_path("vade").unlink()  # k-means becomes the primary clustering
    meta_path = run.clustering_path("kmeans4_vade").with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    html = build_report(run, Config()).read_text()
    assert "fitted on a random sample" not in html
    meta_path.write_text(json.dumps({**meta, "fit_sample": 25}))
    html = build_report(run, Config()).read_text()
    assert "Clustering <code>kmeans4_vade</code>" in html
    assert "fitted on a random sample of 25 galaxies, extended to the rest by prediction" in html
    # a sampled clustering that is not the primary (DBSCAN, HDBSCAN, a GMM) was said nowhere
    meta_path.write_text(json.dumps(meta))
    side = run.clustering_path("gmm3_vade")
    table = pd.read_parquet(run.clustering_path("kmeans4_vade"))
    run.write_clustering("gmm3_vade", table["id"].to_numpy(), table["label"].to_numpy() % 3)
    side.with_suffix(".json").write_text(json.dumps({"method": "gmm", "representation": "vade", "fit_sample": 30}))
    html = html_lib.unescape(build_report(run, Config()).read_text())
    assert ("Of the run's other clusterings, 1 (gmm3_vade) was fitted on a random sample of 30 galaxies and "
            "extended to the rest by prediction") in html
    # a meta file edited or damaged: the report still builds, and says nothing it cannot read
    for damaged in ("thirty", [30], 30.5, True):
        side.with_suffix(".json").write_text(json.dumps({"method": "gmm", "representation": "vade", "fit_sample": damaged}))
        meta_path.write_text(json.dumps({**meta, "fit_sample": damaged}))
        html = html_lib.unescape(build_report(run, Config()).read_text())
        assert "fitted on a random sample" not in html, damaged


def test_the_report_says_when_the_model_trained_on_a_sample(tmp_path):
    run = make_fake_run(tmp_path / "run", n=40, size=32)
    summary = run.path / "models" / "vade" / "training.json"
    summary.write_text(json.dumps({"seconds": 1.0, "train_sample": 30}))
    html = build_report(run, Config()).read_text()
    assert "trained on a random sample of 30 of the 40 galaxies" in html
    summary.write_text(json.dumps({"seconds": 1.0, "train_sample": None}))
    assert "trained on a random sample" not in build_report(run, Config()).read_text()
    # damaged by hand: the report builds and says nothing it cannot read (a traceback before)
    summary.write_text(json.dumps({"seconds": 1.0, "train_sample": "all"}))
    assert "trained on a random sample" not in build_report(run, Config()).read_text()
    # the pixel-PCA baseline fitted on the same sample: said too (its record alone said it)
    pca = run.embedding_path("pixels_pca")
    if not pca.is_file():
        write_npy(pca, np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32))
    pca.with_suffix(".json").write_text(json.dumps({"name": "pixels_pca", "fit_sample": 30}))
    html = html_lib.unescape(build_report(run, Config()).read_text())
    assert "pixels_pca (the pixel-PCA baseline)</code> trained on a random sample of 30 of the 40 galaxies" in html
    map_record = run.reduction_path("vade_tsne").with_suffix(".json")
    for damaged in ("[]", '{"fit_sample": "many"}'):
        map_record.write_text(damaged)
        assert "fitted on" not in build_report(run, Config()).read_text()


def test_results_of_an_earlier_model_are_said_out_of_date(tmp_path, caplog):
    """`train` then `report` showed the previous model's clusters, component means and generated
    galaxies as the run's, beside a model of another K: the page now says they are out of date. The
    same weights written again (a resume with nothing left to train, a copied run) are the same model."""
    import torch

    from morphospace.vade.io import model_fingerprint, save_model

    run = make_fake_run(tmp_path / "run", n=40, size=32)
    model = run.path / "models" / "vade" / "model.pt"
    model.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net, hp = torch.nn.Linear(3, 2), {"preset": "default", "latent_dim": 2}
    save_model(net, hp, model)
    note = run.embedding_path("vade").with_suffix(".json")
    note.write_text(json.dumps({"name": "vade", "model_fingerprint": model_fingerprint(model)}))
    for name in ("vade_reconstructions", "vade_clusters", "vade_component_means", "vade_generated", "vade_generated_0"):
        Image.new("RGB", (20, 10)).save(run.figure_path(name))  # what `embed` draws (a page without: said missing)
    assert 'class="notice"' not in build_report(run, Config()).read_text()
    save_model(net, hp, model, extra={"events": [], "seconds": 9.0})  # written again: other notes, other time
    assert 'class="notice"' not in build_report(run, Config()).read_text()
    save_model(torch.nn.Linear(3, 2), hp, model)  # trained again
    html = html_lib.unescape(build_report(run, Config()).read_text())
    assert re.search(r'class="notice"[^>]*>The model.s clusters, embeddings and figures on this page are out of date: '
                     r"the model was trained again after `morphospace embed` made them", html)
    assert "out of date" in caplog.text
    model.write_bytes(b"garbage")
    assert "the run&#39;s model file is damaged" in build_report(run, Config()).read_text()
    model.unlink()
    assert "the model they came from is no longer in the run" in build_report(run, Config()).read_text()
    save_model(net, hp, model)  # trained, not embedded yet: the page says what to run
    embedded = run.embedding_path("vade").read_bytes()
    run.embedding_path("vade").unlink()
    assert "The run has a trained model whose results are not here yet: run `morphospace embed RUN`" in \
        html_lib.unescape(build_report(run, Config()).read_text())
    run.embedding_path("vade").write_bytes(embedded)
    note.write_text(json.dumps({"name": "vade"}))  # embedded before the fingerprint was recorded: current
    assert 'class="notice"' not in build_report(run, Config()).read_text()


def test_a_map_fitted_on_a_sample_says_so(tmp_path):
    import json

    run = make_fake_run(tmp_path / "run", n=40, size=16)
    meta = run.reduction_path("vade_tsne").with_suffix(".json")
    meta.write_text(json.dumps({"reduction": "tsne", "fit_sample": 30}))
    html = build_report(run, Config()).read_text()
    assert "The map <code>vade_tsne</code> was fitted on a random 30 of the galaxies" in html
    meta.write_text(json.dumps({"reduction": "tsne", "fit_sample": None}))
    assert "was fitted on a random" not in build_report(run, Config()).read_text()


def test_a_duplicate_left_out_shows_its_own_picture_not_the_kept_galaxy_s(tmp_path):
    """Two images under one id: the second is kept out (duplicate_id); the quality-flags example is
    its own file, not the cube thumbnail of the galaxy kept under that id (which it showed, clickable)."""
    from fixtures import galaxy_rgb, save_image, write_csv

    from morphospace.cli import main

    root = tmp_path / "s"
    for i in range(4):
        save_image(root / f"g{i}.png", galaxy_rgb(48, seed=i))
    save_image(root / "dup.png", galaxy_rgb(48, seed=7))
    write_csv(root / "catalogue.csv", ["id", "file", "morph"],
              [[f"g{i}", f"g{i}.png", "ab"[i % 2]] for i in range(4)] + [["g3", "dup.png", "a"]])
    assert main(["ingest", str(root), "--out", str(tmp_path / "r"), "--size", "32", "--quiet"]) == 0
    assert main(["report", str(tmp_path / "r"), "--quiet"]) == 0
    html = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    row = html[html.index("duplicate_id</code>"):]
    row = row[: row.index("</tr>")]
    assert 'title="g3"' in row and "data-s=" not in row and "thumb static" in row


def test_the_probe_table_gives_each_chance_level_it_holds(tmp_path):
    """A fine-tuned embedding probed on its held-out galaxies may lack a class, and so have another
    chance level than the rest: the card gives the range, not the first row's alone; its row is
    named as probed on those galaxies; a table written before the ``rows`` column still reads."""
    from morphospace.report.sections import probe_view

    path = tmp_path / "linear_probe.csv"
    pd.DataFrame({"embedding": ["features", "features", "form", "form"], "label": "morph3",
                  "fraction": [0.1, 1.0, 0.1, 1.0], "balanced_accuracy": [0.6, 0.7, 0.78, 0.8],
                  "chance": [0.5, 0.5, 1 / 3, 1 / 3],
                  "rows": ["held out from fine-tuning"] * 2 + ["all labelled"] * 2}).to_csv(path, index=False)
    view = probe_view(path)
    assert view["chance"] == "0.333-0.5"
    assert "features (galaxies its fine-tuning held out)" in str(view["table"])
    pd.read_csv(path).drop(columns=["rows"]).iloc[2:].to_csv(path, index=False)
    assert probe_view(path)["chance"] == "0.333"
    # the headings' counts: the fine-tuned one trained on fewer (its held-out half), so "up to"
    both = pd.DataFrame({"embedding": ["features", "form"], "label": "morph3", "fraction": [0.1, 0.1],
                         "balanced_accuracy": [0.6, 0.78], "chance": [1 / 3] * 2, "n_train": [160, 320]})
    both.to_csv(path, index=False)
    assert probe_view(path)["table"].head[1] == "10% of labels (up to 320)"
    both.assign(n_train=320).to_csv(path, index=False)
    assert probe_view(path)["table"].head[1] == "10% of labels (320)"


def test_a_share_that_is_not_the_whole_never_reads_100_percent():
    """60,000 of 60,003 galaxies in the cube read "100.0% of those listed" beside "3 left out"."""
    from morphospace.report.context import pct

    assert pct(60_000, 60_003) == ">99.9%" and pct(3, 60_003) == "<0.1%"
    assert pct(5, 5) == "100.0%" and pct(0, 5) == "0.0%" and pct(1, 3) == "33.3%" and pct(1, 0) == "-"


def test_the_data_section_says_frames_of_several_sizes_were_resampled_and_how_they_were_cut(tmp_path):
    """The ingest's log and the nuisance audit said it; the report, which a person reads, did not."""
    import json

    run = make_fake_run(tmp_path / "run", n=24, size=32)
    summary = json.loads(run.ingest_summary.read_text()) if run.ingest_summary.exists() else {}
    summary["frame_sizes"] = {"min": 100, "max": 423, "distinct": 7}
    run.ingest_summary.write_text(json.dumps(summary))
    html = build_report(run, Config()).read_text()
    assert "100–423 px" in html and "7 sizes resampled to 32 px: see frame_px in the nuisance audit" in html
    # and how the frames were cut: the reader of a run whose galaxies look small or clipped asks first
    summary["preprocess"] = {"crop": 0.794, "framing": "fixed", "size_spread": 1.31}
    run.ingest_summary.write_text(json.dumps(summary))
    html = build_report(run, Config()).read_text()
    assert "crop of the frame" in html and ">0.794<" in html and "sampled sizes spread 1.31x (10-90%)" in html
    summary["preprocess"] = {"crop": 0.5, "framing": "galaxy", "galaxy_r90s": 4.3, "size_spread": 2.71}
    run.ingest_summary.write_text(json.dumps(summary))
    html = build_report(run, Config()).read_text()
    assert "framed by each galaxy" in html and ">4.3 R90<" in html
    assert "a square about each; sampled sizes spread 2.71x" in html


def test_comparisons_made_before_a_clustering_changed_are_left_out_saying_so(tmp_path):
    """`cluster` re-run alone: the report showed the old contingency tables and AMI beside the new
    clusters, and tables of clusterings that no longer existed."""
    from morphospace.analysis.compare import compare_run

    from PIL import Image

    run = make_fake_run(tmp_path / "run", n=40, size=32)
    compare_run(run, Config())
    drawn = ("map_vade_pca", "k_selection_vade", "gallery_kmeans4_vade")  # the compare stage's figures
    for name in drawn:
        Image.new("RGB", (8, 8)).save(run.figure_path(name))
    html = build_report(run, Config()).read_text()
    assert "Contingency tables" in html and "Made before the run changed" not in html
    assert all(f"{name}.png" in html for name in drawn)
    table = pd.read_parquet(run.clustering_path("kmeans4_vade"))
    run.write_clustering("kmeans4_vade", table["id"].to_numpy(), (table["label"].to_numpy() + 1) % 4)
    html = build_report(run, Config()).read_text()
    assert "Made before the run changed" in html and "clusterings have changed since (kmeans4_vade)" in html
    assert "Contingency tables" not in html and "Agreement matrices" not in html
    assert "ari matrix" not in html.lower() and "ami_matrix.png" not in html  # nor among "other figures"
    assert not any(f"{name}.png" in html for name in drawn)  # of the clusterings before (galleries of
    # clusterings since deleted, k-selection curves that pick another k than the tables)
    compare_run(run, Config())  # made again: shown again
    html = build_report(run, Config()).read_text()
    assert "Contingency tables" in html and "Made before the run changed" not in html
    run.clustering_path("kmeans4_vade").unlink()  # one gone
    assert "clusterings have changed since (kmeans4_vade)" in build_report(run, Config()).read_text()
    compare_run(run, Config())
    assert "Linear probes" in build_report(run, Config()).read_text()
    emb = run.embeddings()[0]  # an embedding made again: its probe is stale, the clusterings' tables are not
    write_npy(run.embedding_path(emb), np.load(run.embedding_path(emb)) + 1)
    html = build_report(run, Config()).read_text()
    assert f"embeddings have changed since ({emb})" in html and "Contingency tables" in html
    assert "Linear probes" not in html
    record = run.path / "comparisons" / "inputs.json"  # a record of a version that kept no embeddings:
    was = json.loads(record.read_text())              # their change cannot be told, and is not claimed
    record.write_text(json.dumps({k: v for k, v in was.items() if k != "embeddings"}))
    assert "embeddings have changed" not in build_report(run, Config()).read_text()
    shutil.rmtree(run.path / "embeddings")  # compared without an embedding: no probe, none left over
    compare_run(run, Config())
    assert not (run.path / "comparisons" / "linear_probe.csv").exists()


def test_comparisons_of_clusterings_left_out_or_removed_are_not_shown(tmp_path):
    """A clustering made from an earlier embedding or map is left out of the page (said at its top),
    but the Comparisons section still showed its tables, matrices and audit rows; with comparisons/
    removed, its matrices and audit figures were still shown as the run's."""
    from PIL import Image

    from morphospace.analysis.compare import compare_run
    from morphospace.run.provenance import input_stamp

    run = make_fake_run(tmp_path / "run", n=40, size=32)
    record = run.clustering_path("kmeans4_vade").with_suffix(".json")
    write_json(record, {**json.loads(record.read_text()), "input_stamp": input_stamp(run, "vade")})
    compare_run(run, Config())
    html = build_report(run, Config()).read_text()
    assert "Contingency tables" in html and "Made before the run changed" not in html
    write_npy(run.embedding_path("vade"), np.load(run.embedding_path("vade")) + 1)  # the model's embedding again
    html = build_report(run, Config()).read_text()
    assert "clusterings compared were made from an earlier embedding or map (kmeans4_vade)" in html
    assert "Contingency tables" not in html and "ami_matrix.png" not in html
    shutil.rmtree(run.path / "comparisons")
    for name in ("ari_matrix", "ami_matrix", "nuisance_audit"):
        Image.new("RGB", (8, 8)).save(run.figure_path(name))
    html = build_report(run, Config()).read_text()
    assert "the compare stage&#39;s results are not in the run" in html or \
        "the compare stage's results are not in the run" in html
    assert not any(f"{name}.png" in html for name in ("ari_matrix", "ami_matrix", "nuisance_audit"))


def test_clusters_that_hold_no_galaxy_are_counted_and_shown_as_such(tmp_path):
    """A collapsed mixture: the log and the files said 5 clusters (sizes [40, 0, ...]) while the
    page said "1 clusters", and the strips generated for the empty ones sat under "Other figures"
    without a card. The page now counts them, says they hold no galaxy and shows each strip in its card."""
    from morphospace.report.clusterings import aligned_clustering

    run = make_fake_run(tmp_path / "run", n=40, size=32)
    ids = run.cube_ids()
    probs = np.full((40, 5), 0.01)
    probs[:, 0] = 0.96
    run.write_clustering("vade", np.array(ids), probs.argmax(1), probs)
    figures = run.sub("figures")
    for k in range(5):
        Image.new("RGB", (80, 10), (10 * k, 0, 0)).save(figures / f"vade_generated_{k}.png")
    html = html_lib.unescape(build_report(run, Config()).read_text())
    assert "5 clusters (4 hold no galaxy) (vade)" in html
    assert "5 clusters (4 hold no galaxy) over 40 galaxies" in html
    assert html.count("no galaxy: none is most likely here") == 4
    other = html.split('id="other-figures"')[1] if 'id="other-figures"' in html else ""
    assert "vade_generated_3" not in other and 'id="clusters"' in html
    table = pd.DataFrame({"id": ids, "label": [0] * 40})
    one = aligned_clustering("x", table, np.arange(40), 40)
    assert one.count_text() == "1 cluster" and one.empty == []


def test_a_report_of_another_truth_than_the_comparisons_says_so(tmp_path):
    """`report --set data.truth_label=kind` said the truth was kind above contingency tables, a
    linear probe and an audit scored against morphology."""
    from morphospace.analysis.compare import compare_run

    run = make_fake_run(tmp_path / "run", n=40, size=32)
    cat = run.read_catalogue()
    cat["kind"] = pd.array(["a", "b"] * (len(cat) // 2) + ["a"] * (len(cat) % 2), dtype="string")
    write_table(run.catalogue, cat)
    compare_run(run, apply_overrides(Config(), ["data.truth_label=morphology"]))
    html = html_lib.unescape(build_report(run, apply_overrides(Config(), ["data.truth_label=morphology"])).read_text())
    assert "Contingency tables" in html and "Made before the run changed" not in html
    html = html_lib.unescape(build_report(run, apply_overrides(Config(), ["data.truth_label=kind"])).read_text())
    assert "they score the clusterings against morphology, and this page's truth label is kind" in html
    assert "Contingency tables" not in html


def test_the_model_s_generated_galaxies_are_shown_on_its_own_clusters_only(tmp_path):
    """With the model's own clustering gone, the cards of K-Means's cluster k showed the model's
    galaxies generated for its cluster k (other galaxies) as "generated for this cluster"."""
    run = make_fake_run(tmp_path / "run", n=40, size=32)
    figures = run.sub("figures")
    for k in range(4):
        Image.new("RGB", (80, 10), (10 * k, 0, 0)).save(figures / f"vade_generated_{k}.png")
    html = build_report(run, Config()).read_text()
    clusters = html.split('id="clusters"')[1].split("</section>")[0]
    assert "vade_generated_1" in clusters
    for suffix in (".parquet", ".json"):
        run.clustering_path("vade").with_suffix(suffix).unlink(missing_ok=True)
    html = build_report(run, Config()).read_text()
    clusters = html.split('id="clusters"')[1].split("</section>")[0]
    assert "kmeans4_vade" in clusters and "vade_generated_" not in clusters


def test_a_copied_or_touched_run_keeps_its_comparisons(tmp_path):
    """The record of what was compared held sizes and modification times: `cp -r` (new times, the
    same bytes) or a `touch` of the catalogue made the report drop every comparison saying "the
    catalogue has changed since". Only a change of the bytes makes them stale."""
    import os

    from morphospace.analysis.compare import compare_run

    run = make_fake_run(tmp_path / "run", n=40, size=32)
    compare_run(run, Config())
    copy = RunDir(shutil.copytree(run.path, tmp_path / "copy", copy_function=shutil.copy))  # times not kept
    assert os.stat(copy.catalogue).st_mtime_ns != os.stat(run.catalogue).st_mtime_ns
    later = os.stat(run.catalogue).st_mtime + 5
    os.utime(run.catalogue, (later, later))
    for r in (copy, run):
        html = build_report(r, Config()).read_text()
        assert "Contingency tables" in html and "Linear probes" in html and "Made before the run changed" not in html
    table = pd.read_parquet(copy.catalogue)
    table.loc[0, "morphology"] = "changed"  # a label corrected: the bytes differ
    write_table(copy.catalogue, table)
    assert "the catalogue has changed since" in build_report(copy, Config()).read_text()


def test_a_compare_that_did_not_finish_leaves_its_results_out(tmp_path, monkeypatch):
    """compare_run removed its record first: a compare that failed half way read as a run older than
    the record, and the earlier tables were shown as this run's."""
    from morphospace.analysis import compare as compare_module
    from morphospace.analysis.compare import compare_run

    run = make_fake_run(tmp_path / "run", n=40, size=32)
    compare_run(run, Config())

    def broken(*args, **kwargs):
        raise RuntimeError("killed half way")

    monkeypatch.setattr(compare_module, "contingency_table", broken)
    with pytest.raises(RuntimeError):
        compare_run(run, Config())
    html = build_report(run, Config()).read_text()
    assert "the last `morphospace compare` did not finish" in html and "Contingency tables" not in html


def test_a_table_never_shows_minus_zero():
    """An AMI of -3e-16 (chance) read "-0.000" in the nuisance audit; a small negative one still reads as one."""
    from morphospace.report.views import table

    view = table(pd.DataFrame({"what": ["a", "b", "c"], "ami": [-3.3e-16, -0.0004, -0.012]}))
    assert [row[1].text for row in view.rows] == ["0.000", "0.000", "-0.012"]


def test_the_primary_clustering_found_clusters_and_the_report_says_why_it_was_chosen(tmp_path):
    """An all-noise HDBSCAN was shown as "0 clusters", and called "the first clustering of the run"
    when another came first."""
    from morphospace.report.clusterings import Clustering, primary_choice

    noise = Clustering("hdbscan_pixels_pca", np.full(10, -1), None, {})
    found = Clustering("dbscan_pixels_pca", np.r_[np.zeros(5, int), -np.ones(5, int)], None, {})
    chosen, why = primary_choice([noise, found], tmp_path)
    assert chosen is found and why == "the run's first DBSCAN clustering that found clusters"
    chosen, why = primary_choice([noise], tmp_path)
    assert chosen is noise and why == "the run's first clustering"
    kmeans = Clustering("kmeans3_form", np.arange(10) % 3, None, {"k": 3, "best_k": 3})
    assert primary_choice([found, kmeans], tmp_path) == (kmeans, "K-Means at the number of clusters with the best silhouette")


def test_a_run_without_labels_is_told_where_its_cluster_gallery_is(tmp_path):
    run = make_fake_run(tmp_path / "run", n=40, size=32)
    table = pd.read_parquet(run.catalogue).drop(columns=["morphology"])
    write_table(run.catalogue, table)
    summary = json.loads(run.ingest_summary.read_text())
    write_json(run.ingest_summary, {**summary, "label_columns": []})
    html = build_report(run, Config()).read_text()
    assert "the label bar shows" not in html
    assert "All galleries are also saved as figures/report_cluster_gallery.png" in html
    assert run.figure_path("report_cluster_gallery").is_file()


def test_the_truth_table_says_when_no_clustering_could_be_scored(tmp_path):
    """One labelled galaxy: every score is NaN (shown as -), and the caption said "undefined (scored 0)"
    and ranked the clusterings on NaN."""
    from morphospace.analysis.compare import compare_run

    run = make_fake_run(tmp_path / "run", n=40, size=32)
    table = pd.read_parquet(run.catalogue)
    keep = table["morphology"].notna().idxmax()
    table["morphology"] = table["morphology"].where(table.index == keep, None)
    write_table(run.catalogue, table)
    compare_run(run, Config())
    html = build_report(run, Config()).read_text()
    assert "No clustering can be scored against the truth label (shown as -)" in html
    assert "scored 0" not in html and "recover the truth label best" not in html


def test_exemplars_of_a_saturated_soft_cluster_are_its_central_members():
    """q(c|x) is 1.0 for half a survey's galaxies: sorted by it alone (stably), a cluster's exemplars
    were its first members in cube order, no more typical than any."""
    from types import SimpleNamespace

    from morphospace.report.clusterings import Clustering
    from morphospace.report.sections.clusters import exemplars

    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (200, 4)).astype(np.float32)
    probs = np.ones((200, 1), np.float32)
    probs[::7] = 0.6  # a few less probable ones
    cl = Clustering("vade", np.zeros(200, int), probs, {"representation": "emb"})
    contents = SimpleNamespace(embeddings=["emb"], embedding=lambda name: X, n=200)
    ctx = SimpleNamespace(contents=contents, run=None, seed=0)
    rows, how = exemplars(ctx, cl, 0, 10)
    central = np.argsort(np.where(probs[:, 0] == 1, np.linalg.norm(X - X.mean(0), axis=1), np.inf))[:10]
    assert rows == central.tolist() and "most central first" in how


def test_the_nuisance_audit_says_what_to_conclude():
    """The audit was a 61-row heatmap with no sentence: which nuisance the report's clusters follow,
    against the aim and against the truth label, and which clustering follows one most."""
    from morphospace.report.sections.comparisons import _audit_verdict

    vals = pd.DataFrame({"pa_bin": [0.001, 0.30, 0.0, 0.002], "size_px": [0.048, 0.01, 0.069, 0.02]},
                        index=["vade", "kmeans7_pixels_pca", "morphology", "anomaly score (tenths)"])
    said = _audit_verdict(vals, "vade", "morphology")
    assert "(vade) follow size_px most, at 0.048 (above the 0.02 aimed at)" in said
    assert "the truth label itself follows it at 0.069" in said
    assert "follows a nuisance most is kmeans7_pixels_pca, on pa_bin (0.300)" in said
    assert "within the 0.02" in _audit_verdict(vals.assign(size_px=[0.01, 0.01, 0.069, 0.02]), "vade", None)


def test_an_lda_map_in_the_explorer_says_it_was_fitted_with_the_labels(tmp_path):
    """The explorer offered `vade_lda` among the maps as if found without labels."""
    from morphospace.run import write_npy

    run = make_fake_run(tmp_path / "run", n=40, size=16, everything=False)
    rng = np.random.default_rng(0)
    write_npy(run.reduction_path("vade_lda"), rng.normal(size=(40, 2)).astype(np.float32))
    # a study's LDA map is "lda", and one of 5 discriminants (6 classes) shows its first two
    write_npy(run.reduction_path("lda"), rng.normal(size=(40, 5)).astype(np.float32))
    write_npy(run.reduction_path("glda"), rng.normal(size=(40, 2)).astype(np.float32))  # no LDA
    maps = [m["name"] for m in payload(build_report(run, Config()).read_text())["explorer"]["maps"]]
    assert sorted(maps) == ["glda", "lda (1, 2) (fitted with the labels)", "vade_lda (fitted with the labels)"]


def test_the_page_opens_on_what_the_run_found(full_run):
    """The heading said only the run's name, size and date: the numbers a reader looks for first
    (clusters, agreement with the labels, the largest nuisance) were sections further down."""
    run, html = full_run
    hero = html[html.index('class="hero"'):html.index('id="explorer"')]
    tiles = re.findall(r'<div class="stat-value">([^<]+)</div><div class="stat-label">([^<]+)</div>'
                       r'<div class="stat-hint">([^<]+)</div>', hero)
    clusters = len(set(pd.read_parquet(run.path / "clusterings" / "vade.parquet")["label"]) - {-1})
    assert tiles[0] == (str(clusters), "clusters", "vade")
    assert ("0.72", "AMI with morphology") == tiles[1][:2]
    assert tiles[2] == ("0.050", "largest nuisance AMI", "vade with pa_bin (0: chance)")
    assert "the adjusted Rand index (ARI:" in html  # the matrices' scores were never explained
    # the audit's columns explained, an ingest flag by what the ingest says it means
    assert "<li><code>flag_nonfinite</code>: the ingest&#39;s quality flag: NaN or inf pixels</li>" in html
    # one cluster is "cluster"; a nuisance AMI a hair below 0 is 0.000, not -0.000
    from morphospace.report.collect import RunContents
    from morphospace.report.findings import key_findings

    one = make_fake_run(run.path.parent / "one", n=30, size=16)
    one.write_clustering("vade", one.cube_ids(), np.zeros(30, dtype=np.int64))
    write_table(one.path / "comparisons" / "nuisance_audit.csv",
                pd.DataFrame({"clustering": ["vade"], "pa_bin": [-0.0002]}))
    got = key_findings(RunContents(one))
    assert got[0] == ("1", "cluster", "vade") and got[-1][:2] == ("0.000", "largest nuisance AMI")
    # its audit has no truth or anomaly row: the caption describes none ("for reference: the truth label")
    audit = html[html.index("Nuisance audit"):]
    assert "Below the clusterings, for reference" not in audit[:audit.index("</p>")]


def test_an_audit_of_no_nuisance_is_said_not_a_traceback(tmp_path):
    """Where no nuisance varied (round identical galaxies, no catalogue columns) compare wrote an audit
    of no column, and the report stopped on a jinja2 UndefinedError ('truth'), with no report.html."""
    run = make_fake_run(tmp_path / "run", n=30, size=16)
    write_table(run.path / "comparisons" / "nuisance_audit.csv", pd.DataFrame({"clustering": ["vade"]}))
    (run.path / "figures" / "nuisance_audit.png").unlink(missing_ok=True)
    html = build_report(run, Config()).read_text()
    audit = html[html.index("Nuisance audit"):]
    assert "No nuisance the audit measures varies among these galaxies" in audit[:2000]


def test_frames_without_a_source_at_the_centre_are_shown_and_marked_among_the_strangest(tmp_path):
    """The report said a frame artefact alone does not make a galaxy strange, beside strangest lists
    whose top held frames without a galaxy at the centre (8 of 3,359 sdss-gz1 frames; 4 in the top 24),
    and its data section said nothing of them."""
    run = make_fake_run(tmp_path / "run", n=40, size=32)
    anomaly = pd.read_parquet(run.path / "vade_galaxies.parquet")["anomaly"].to_numpy()
    top = int(np.argmax(anomaly))
    central = np.ones(40, bool)
    central[[top, 5 if top != 5 else 6]] = False
    pd.DataFrame({"id": run.cube_ids(), "n_masked": 0, "masked_fraction": 0.0,
                  "central_found": central}).to_parquet(run.path / "cube_masked.parquet")
    html = build_report(run, Config()).read_text()
    data = html[html.index('id="data"'):html.index('id="model"')]
    assert "Frames without a source at the centre" in data and "2 frames of the cube have no source" in data
    strangest = html_lib.unescape(html[html.index('id="strangest"'):])
    assert "#1 \u00b7 score" in strangest and "no source at the centre" in strangest.split("#2 \u00b7")[0]
    # a list of another cube's frames marks nothing
    pd.DataFrame({"id": [f"x{i}" for i in range(40)], "n_masked": 0, "masked_fraction": 0.0,
                  "central_found": central}).to_parquet(run.path / "cube_masked.parquet")
    assert "no source at the centre" not in build_report(run, Config()).read_text()


def test_the_headline_numbers_say_where_they_stand(tmp_path):
    """The AMI tile gave a number with nothing to judge it by (sdss-gz1's 0.26 is 15th of 50 label-free
    clusterings), and the probe tile named a winner 0.004 ahead with draws spread by 0.006."""
    from morphospace.report.collect import RunContents
    from morphospace.report.findings import key_findings

    run = make_fake_run(tmp_path / "run", n=30, size=16)
    names = ["vade", "kmeans3_vade", "kmeans3_vade_lda", "morphology"]
    ami = pd.DataFrame([[1, .5, .4, .30], [.5, 1, .4, .45], [.4, .4, 1, .9], [.30, .45, .9, 1]], index=names, columns=names)
    ami.rename_axis("name").reset_index().to_csv(run.path / "comparisons" / "ami.csv", index=False)
    (run.path / "comparisons" / "held_out.json").write_text(json.dumps({"held_out": {"kmeans3_vade_lda": 6}}))
    pd.DataFrame({"embedding": ["vade", "form", "pixels_pca"], "label": "morphology", "fraction": 0.1, "n_train": 3,
                  "balanced_accuracy": [0.789, 0.785, 0.6], "std": [0.006, 0.007, 0.01], "repeats": 5,
                  "chance": 1 / 3}).to_csv(run.path / "comparisons" / "linear_probe.csv", index=False)
    tiles = {label: hint for _, label, hint in key_findings(RunContents(run))}
    # the LDA clustering (the labels made its map) and the label column are not ranked
    assert tiles["AMI with morphology"].endswith("; 2 of the run's 2 label-free clusterings, the best kmeans3_vade at 0.45")
    assert tiles["linear probe, 10% of labels"].endswith("; as good within the draws' spread (0.006): form")
    # a primary the labels made is not ranked with the label-free clusterings
    (run.path / "comparisons" / "held_out.json").write_text(json.dumps({"held_out": {"kmeans3_vade_lda": 6, "vade": 6}}))
    tiles = {label: hint for _, label, hint in key_findings(RunContents(run))}
    assert tiles["AMI with morphology"].endswith("; made with the labels (scored on the galaxies held out), not ranked "
                                                 "with the label-free")


def test_the_headline_names_the_change_that_moves_the_clusters_most(tmp_path):
    """The intervention test's largest excess over its control is a headline tile, with its interval."""
    from morphospace.report.collect import RunContents
    from morphospace.report.findings import key_findings
    from morphospace.vade.invariance import CHANGES

    run = make_fake_run(tmp_path / "run", n=30, size=16)
    assert "most moved by how a galaxy is shown" not in {label for _, label, _ in key_findings(RunContents(run))}
    rows = [("moved 1/2 px", 0.09, 0, 0, 0), ("larger", 0.30, 0.21, 0.15, 0.27), ("fainter", 0.12, 0.03, -0.01, 0.07)]
    pd.DataFrame([{"change": c, "what": CHANGES[c], "changed": v, "ari": 1 - v, "excess": e, "excess_low": lo,
                   "excess_high": hi, "chance": 0.7, "n": 256} for c, v, e, lo, hi in rows]).to_csv(
        run.path / "comparisons" / "invariance.csv", index=False)
    tiles = {label: (value, hint) for value, label, hint in key_findings(RunContents(run))}
    value, hint = tiles["most moved by how a galaxy is shown"]
    assert value == "+0.21" and hint.startswith("30% of the galaxies tested change cluster when grown to 1.4")
    assert "against 9% for the control (95% interval +0.15 to +0.27)" in hint

    def tile(rows, chance=0.7):
        pd.DataFrame([{"change": c, "what": CHANGES[c], "changed": v, "ari": 1 - v, "excess": e, "excess_low": lo,
                       "excess_high": hi, "chance": chance, "n": 256} for c, v, e, lo, hi in rows]).to_csv(
            run.path / "comparisons" / "invariance.csv", index=False)
        return [t for t in key_findings(RunContents(run)) if t[1] == "most moved by how a galaxy is shown"]

    # nothing shown to move beyond the control (an interval holding zero, a negative excess), a control that
    # alone moves half of chance, or numbers that are not: no tile, and no failed report
    assert not tile([("moved 1/2 px", 0.09, 0, 0, 0), ("larger", 0.12, 0.03, -0.01, 0.07), ("fainter", 0.07, -0.02, -0.06, 0.02)])
    assert not tile([("moved 1/2 px", 0.40, 0, 0, 0), ("larger", 0.60, 0.20, 0.12, 0.28)])
    assert not tile([("moved 1/2 px", float("nan"), 0, 0, 0), ("larger", 0.3, float("nan"), float("nan"), float("nan"))])
