"""The explorer's data beside the page (above ``report.inline_points``): the files written, and the encoders.

The browser side (the page opening from file:// and loading those files) is in
``test_report_browser.py``.
"""

from __future__ import annotations

import base64
import hashlib
import html as htmllib
import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from morphospace.config import Config, apply_overrides
from morphospace.report import build_report
from morphospace.report.beside import CHUNK_SCRIPT
from morphospace.report.collect import RunContents
from morphospace.report.colourings import categorical_colouring as _categorical
from morphospace.report.explorer import encode_column, explorer_arrays

from report_fakerun import make_fake_run

N, SHARD = 150, 64


def payload(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="morphospace-data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def read_chunk(path) -> tuple[bytes, str, str]:
    """The bytes, the JSON text and the CSP of a chunk file."""
    text = path.read_text()
    b = re.search(r'<pre id="b">(.*?)</pre>', text, re.S).group(1)
    t = re.search(r'<pre id="t">(.*?)</pre>', text, re.S).group(1)
    csp = re.search(r'content="([^"]*)"', text).group(1)
    return base64.b64decode(b), htmllib.unescape(t), csp


def part(data: bytes, meta: dict, key: str) -> np.ndarray:
    dtype, offset, n = meta["parts"][key]
    return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"), count=n, offset=offset)


def sha(b: bytes) -> str:
    return base64.b64encode(hashlib.sha256(b).digest()).decode()


@pytest.fixture(scope="module")
def beside(tmp_path_factory):
    run = make_fake_run(tmp_path_factory.mktemp("beside") / "run", n=N, size=16)
    cfg = apply_overrides(Config(), ["report.inline_points=100", f"report.shard_points={SHARD}"])
    report = build_report(run, cfg)
    return run, report, cfg


def test_the_files_beside_the_page_hold_the_run_in_cube_order(beside):
    run, report, cfg = beside
    html = report.read_text()
    E = payload(html)["explorer"]
    lazy = E["lazy"]
    assert lazy["shard"] == SHARD and lazy["shards"] == 3 and E["n"] == N
    assert "ids" not in E and "idx" not in E["neighbours"]  # nothing per galaxy left in the page
    folder = run.path / "report_files"
    want = explorer_arrays(RunContents(run), np.arange(N), k=cfg.report.neighbours, seed=cfg.report.seed)
    chunks = {}
    for name, f in lazy["files"].items():
        path = run.path / f["url"]
        assert path.parent == folder and path.stat().st_size == f["bytes"]
        data, text, csp = read_chunk(path)
        # the page checks these digests; the chunk's own CSP allows only its one script, by hash
        assert f["sha"] == [sha(data), sha(text.encode())]
        assert csp == f"default-src 'none'; script-src 'sha256-{sha(CHUNK_SCRIPT.encode())}'"
        chunks[name] = (data, json.loads(text))
    assert sorted(chunks) == sorted([f"m{k}" for k in range(len(E["maps"]))] + [f"c{k}" for k in range(len(E["colourings"]))]
                                    + [f"{p}{s}" for p in "ir" for s in range(3)])
    # ids, neighbours and tooltip columns: shard by shard, in cube order
    ids = sum((chunks[f"i{s}"][1]["ids"] for s in range(3)), [])
    assert ids == list(run.cube_ids())
    nn = np.concatenate([part(*chunks[f"r{s}"], "nn") for s in range(3)]).reshape(N, -1)
    assert nn.dtype == np.int32 and np.array_equal(nn, want["neighbours"]["idx"])
    cat = pd.read_parquet(run.catalogue).set_index("id").loc[ids]
    names = [c["name"] for c in E["columns"]]
    j = names.index("pa_deg")
    pa = np.concatenate([part(*chunks[f"r{s}"], f"c{j}") for s in range(3)])
    assert pa.dtype == np.float32 and np.allclose(pa, cat["pa_deg"].to_numpy(), atol=1e-3)
    j = names.index("source")
    assert E["columns"][j]["prefix"] == ""  # the survey's folder (the user's machine's) is not on the page
    src = sum((chunks[f"r{s}"][1][f"s{j}"] for s in range(3)), [])
    assert ["/data/survey/" + v for v in src] == list(cat["source"])  # relative to the survey
    assert not any("/data/survey" in p.read_text() for p in (run.path / "report_files").glob("*.html"))
    j = names.index("morphology")
    codes = np.concatenate([part(*chunks[f"r{s}"], f"c{j}") for s in range(3)])
    cats = E["columns"][j]["categories"]
    assert [cats[c] for c in codes] == list(cat["morphology"].astype(str))
    # maps and colourings: one chunk each, the explorer's arrays exactly
    for k, m in enumerate(want["maps"]):
        xy = part(*chunks[f"m{k}"], "xy")
        assert xy.dtype == np.float32 and np.array_equal(xy.reshape(N, 2), m["xy"])
    for k, c in enumerate(want["colourings"]):
        key = "codes" if c["type"] == "categorical" else "values"
        got = part(*chunks[f"c{k}"], key)
        assert got.dtype == c[key].dtype and np.array_equal(got, c[key], equal_nan=True)
        if key == "codes":
            assert np.bincount(got, minlength=len(c["categories"])).tolist() == E["colourings"][k]["counts"]


def test_map_thumbnails_are_smaller_sheets_beside_the_page_and_the_csp_allows_frames_not_scripts(beside):
    run, report, cfg = beside
    html = report.read_text()
    E = payload(html)["explorer"]
    t = E["thumbs"]
    assert t["tile"] == min(cfg.report.thumb_size, cfg.report.large_thumb_size) == 32 and t["n"] == N
    assert [s["url"] for s in t["sheets"]] == ["report_files/map_0.webp"]
    sheet = Image.open(run.path / "report_files" / "map_0.webp")
    assert sheet.size == (t["sheets"][0]["cols"] * 32, t["sheets"][0]["rows"] * 32)
    csp = htmllib.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html).group(1))
    script_src = re.search(r"script-src ([^;]*);", csp).group(1)
    assert "frame-src 'self' file:;" in csp and "unsafe" not in script_src and "file:" not in script_src
    assert all(s.startswith("'sha256-") for s in script_src.split())
    # rebuilt with every point inline: the page is self-contained again, no frames, no folder
    html = build_report(run, Config()).read_text()
    assert "frame-src" not in html and not (run.path / "report_files").exists()
    assert "lazy" not in payload(html)["explorer"] and len(payload(html)["explorer"]["ids"]) == N


def _old_encode(values: pd.Series) -> dict:
    """encode_column as it was, one Python step per row: the reference of the vectorised one."""
    if pd.api.types.is_float_dtype(values):
        return {"type": "num"}
    text = [None if (v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA) else str(v)
            for v in values.to_numpy(dtype=object)]
    uniq = pd.unique(pd.Series([t for t in text if t is not None], dtype=object))
    if len(uniq) <= max(64, len(text) // 4):
        index = {u: k for k, u in enumerate(uniq)}
        return {"type": "cat", "categories": [str(u) for u in uniq],
                "codes": np.array([index[t] if t is not None else -1 for t in text], dtype=np.int32)}
    return {"type": "str", "values": text}


@pytest.mark.parametrize("values", [
    pd.Series(["b", None, "a", "b", np.nan, "c"], dtype=object),
    pd.Series(pd.array(["x", None, "y", "x"], dtype="string")),
    pd.Series([3, 1, 3, 2, 1]),
    pd.Series([1, "1", None, 2.0], dtype=object),
    pd.Series([f"/a/b/{i}.jpg" for i in range(300)] + [None]),
])
def test_vectorised_column_encoding_matches_the_row_by_row_one(values):
    got, want = encode_column(values), _old_encode(values)
    assert got["type"] == want["type"]
    if want["type"] == "cat":
        assert got["categories"] == want["categories"] and np.array_equal(got["codes"], want["codes"])
    elif want["type"] == "str":
        full = [None if v is None else got["prefix"] + v for v in got["values"]]
        assert full == want["values"] and got["prefix"] == "/a/b/"


def test_the_tooltip_shows_paths_relative_to_the_survey_or_file_names():
    """Absolute paths reached the page (the shared folder in the payload once, or every full path of a
    column of few values): a report is shared, the user's folders are not."""
    from morphospace.report.explorer import shareable_paths

    values = pd.Series(["/home/ann/sv/a/g0.png", "/home/ann/sv/g1.jpg", None, "/elsewhere/x/g2.tif",
                        "C:\\Users\\ann\\g3.fits", "\\\\server\\share\\g4.png", "~/cut/g5.png", "notes/w 1", 3],
                       dtype=object)
    got = shareable_paths(values, "/home/ann/sv")
    assert got.tolist()[:8] == ["a/g0.png", "g1.jpg", None, "g2.tif", "g3.fits", "g4.png", "g5.png", "notes/w 1"]
    assert got.tolist()[8] == 3
    assert shareable_paths(values, "").tolist()[:2] == ["g0.png", "g1.jpg"]  # no survey folder: file names
    plain = pd.Series(["2021/03/01", "w/ companion"])
    assert shareable_paths(plain, "/home/ann/sv") is plain
    floats = pd.Series([1.0, np.nan])
    assert shareable_paths(floats, "/x") is floats


def test_absolute_paths_of_every_system_are_told_from_relative_ones():
    """The report's data section and the tooltip's paths read one rule: a survey folder given as
    C:\\... or \\\\server\\... on POSIX is absolute, not a folder under the working one."""
    from morphospace.report.explorer import is_absolute_text

    for text in ["/data/sv", "~/sv", "C:\\sv", "c:/sv", "\\\\server\\share"]:
        assert is_absolute_text(text), text
    for text in ["sv", "../sv", "./sv", "2021/03/01", "C:sv", "w/ companion", ""]:
        assert not is_absolute_text(text), text


def test_a_report_holds_no_absolute_path_of_the_survey_s_images(tmp_path):
    run = make_fake_run(tmp_path / "run", n=40, size=16, everything=False)
    html = build_report(run, Config()).read_text()
    E = payload(html)["explorer"]
    source = next(c for c in E["columns"] if c["name"] == "source")
    assert source["type"] == "cat" and all(c.startswith("images/") for c in source["categories"])
    assert "/data/survey/images" not in html


def test_the_data_section_names_the_survey_s_folder_as_the_tooltips_do(tmp_path):
    """The data section said "Source: /data/survey", the user's folder, in a page that is shared: it
    shows the folder relative to the run where it lies inside it, else the folder's name."""
    import json

    run = make_fake_run(tmp_path / "run", n=40, size=16, everything=False)
    html = build_report(run, Config()).read_text()
    assert "Source: <code>survey</code>" in html and "/data/survey" not in html
    summary = json.loads(run.ingest_summary.read_text())
    summary["source"] = str(run.path / "images" / "cutouts") + "/"
    run.ingest_summary.write_text(json.dumps(summary))
    html = build_report(run, Config()).read_text()
    assert "Source: <code>images/cutouts</code>" in html and str(run.path) not in html


def test_the_data_section_reads_a_relative_run_or_survey_from_the_working_folder(tmp_path, monkeypatch):
    """A run named relative to the working folder showed a survey inside it by its name alone (its path
    was compared unresolved), and a relative source ("../../home/alice/survey") was shown as it was, a
    way out of the run to the user's folders. Both are read from the working folder, as Python reads
    them: inside the run, relative to it; else the folder's name."""
    import json

    from morphospace.run import RunDir

    make_fake_run(tmp_path / "run", n=40, size=16, everything=False)
    monkeypatch.chdir(tmp_path)
    run = RunDir("run")
    summary = json.loads(run.ingest_summary.read_text())
    for source, shown in ((str(tmp_path / "run" / "images" / "cutouts"), "images/cutouts"),
                          ("run/images/cutouts", "images/cutouts"), ("../../home/alice/survey", "survey")):
        summary["source"] = source
        run.ingest_summary.write_text(json.dumps(summary))
        html = build_report(run, Config()).read_text()
        assert f"Source: <code>{shown}</code>" in html, source
        assert "alice" not in html and "../" not in html and str(tmp_path) not in html


def test_vectorised_categorical_keeps_order_blanks_and_missing():
    c = _categorical("x", "label", np.array(["b", " ", None, "a", "10", "9", "b"], dtype=object))
    assert c["categories"] == ["9", "10", "a", "b", "(missing)"]  # natural order, then the missing
    assert c["codes"].tolist() == [3, 4, 4, 2, 1, 0, 3] and c["counts"] == [1, 1, 1, 2, 2]


def test_only_a_shared_folder_is_left_out_of_free_text():
    """Free text whose values shared "2021/" or "w/" lost it in the tooltip ("…/03/01"); a folder of
    file paths, absolute or relative to here or home, is still written once."""
    n = 300
    for text, prefix in (([f"2021/03/{i % 28 + 1:02d} {i}" for i in range(n)], ""),
                         ([f"w/ companion {i}" for i in range(n)], ""),
                         ([f"images/g{i}.jpg" for i in range(n)], ""),
                         ([f"/data/sdss/g{i}.jpg" for i in range(n)], "/data/sdss/"),
                         ([f"../cutouts/g{i}.png" for i in range(n)], "../cutouts/"),
                         ([f"C:\\survey/g{i}.fits" for i in range(n)], "C:\\survey/")):
        got = encode_column(pd.Series(text, dtype=object))
        assert got["type"] == "str" and got["prefix"] == prefix
        assert [got["prefix"] + v for v in got["values"]] == text


def test_more_classes_than_the_palette_each_get_their_own_colour():
    """A label of 30 classes: the 20-colour palette cycled, so class_0 and class_20 were one colour on
    the map and in its legend. Beyond 20, each class (and each cluster) takes its own colour of turbo."""
    from morphospace.report.style import GREY, PALETTE
    from morphospace.report.views import category_colours

    values = np.array([f"class_{i % 30}" for i in range(90)] + [None], dtype=object)
    c = _categorical("x", "label", values)
    assert len(c["categories"]) == 31 and len(set(c["colours"][:30])) == 30 and c["colours"][30] == GREY
    few = _categorical("y", "label", np.array(["a", "b", "a"], dtype=object))
    assert few["colours"] == PALETTE[:2]  # up to 20: the palette, as before
    mapping = category_colours([f"c{i}" for i in range(25)] + ["(missing)"])
    assert len(set(mapping.values())) == 26 and mapping["(missing)"] == GREY
    # neighbouring numbers far apart on the ramp: in order along it, classes 0-6 of 36 were one blue
    from matplotlib.colors import to_rgb

    from morphospace.report.style import colour

    ramp = [np.array(to_rgb(colour(k, 36))) for k in range(36)]
    assert min(np.abs(ramp[k] - ramp[k + 1]).sum() for k in range(35)) > 0.3


def test_a_report_that_fails_half_way_leaves_the_earlier_page_with_its_files(tmp_path, monkeypatch):
    """The files beside the page were removed first and written in place: a report killed or failed
    half way (another shard size, say) left the earlier page without its data ("is the report_files
    folder beside the page?"). They are made apart and swapped in with the page."""
    import morphospace.report as report_module

    run = make_fake_run(tmp_path / "run", n=N, size=16)
    cfg = apply_overrides(Config(), ["report.inline_points=100", f"report.shard_points={SHARD}"])
    page = build_report(run, cfg)
    folder = run.path / "report_files"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    html = page.read_bytes()

    def failing(ctx):
        raise RuntimeError("a builder failed half way")

    with monkeypatch.context() as m:
        m.setattr(report_module, "BUILDERS", [failing])
        with pytest.raises(RuntimeError):
            build_report(run, apply_overrides(cfg, [f"report.shard_points={SHARD + 7}"]))
    assert page.read_bytes() == html and {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert not any(p.name.startswith(".report") for p in run.path.iterdir())  # what it made went with it
    build_report(run, apply_overrides(cfg, [f"report.shard_points={SHARD + 7}"]))
    assert not any(p.name.startswith(".report") for p in run.path.iterdir())
    lazy = payload(page.read_text())["explorer"]["lazy"]
    assert lazy["shard"] == SHARD + 7 and all((run.path / f["url"]).is_file() for f in lazy["files"].values())


def test_a_label_s_classes_take_the_page_s_colours_in_the_explorer(tmp_path):
    """The explorer coloured a label's classes with the clusters' palette (morph3's edge_on the blue of
    cluster 0) where the page's figures give them their own; and in the order of the points shown, so
    a class absent from a sample shifted the others' colours."""
    from morphospace.report.colourings import label_colouring
    from morphospace.report.style import PALETTE
    from morphospace.report.views import category_colours

    run = make_fake_run(tmp_path / "run", n=60, size=16)
    contents = RunContents(run)
    values = np.asarray(contents.labels("morphology"), dtype=object)
    every = label_colouring(contents, "morphology", np.arange(60))
    classes = every["categories"]
    assert every["colours"] == [category_colours(classes)[c] for c in classes]
    assert not set(every["colours"]) & set(PALETTE[:len(classes)])
    rest = np.flatnonzero(values != classes[0])  # a sample without the first class
    some = label_colouring(contents, "morphology", rest)
    assert some["categories"] == classes and some["colours"] == every["colours"] and some["counts"][0] == 0


def test_a_class_has_one_colour_whichever_label_column_or_view_shows_it(tmp_path, monkeypatch):
    """A class took the colour of its place in its own column: with gz1_class (elliptical, spiral,
    uncertain) and morph3 (edge-on, elliptical, spiral), spiral was #9b2226 in the explorer coloured
    by gz1_class and #2d6a4f coloured by morph3, in the Data section's panels and in the cluster
    cards' mix of morph3 (the truth); elliptical #1d3557 and #9b2226. Each class now has its
    value's one colour in the explorer, the Data section, the cluster cards and the study's maps."""
    from matplotlib.colors import to_hex

    from morphospace.report.sections import clusters, data
    from morphospace.run import write_table
    from morphospace.study import figures as study

    run = make_fake_run(tmp_path / "run", n=60, size=16)
    cat = pd.read_parquet(run.catalogue)
    rng = np.random.default_rng(0)
    cat["gz1_class"] = pd.Series(rng.choice(["elliptical", "spiral", "uncertain"], len(cat)), dtype="string")
    cat["morph3"] = pd.Series(rng.choice(["edge-on", "elliptical", "spiral"], len(cat)), dtype="string")
    write_table(run.catalogue, cat)
    seen: dict[tuple[str, str], set] = {}  # (where, class) -> colours drawn

    def saw(where: str, cls, col) -> None:
        seen.setdefault((where, str(cls)), set()).add(to_hex(col))

    def drawn_labels(counts, *args):
        fig = draw_labels(counts, *args)
        for ax, s in zip(fig.axes, counts.values()):
            for cls, bar in zip(s.index, ax.patches):
                saw(f"data:{ax.get_title(loc='left')}", cls, bar.get_facecolor())
        return fig

    def drawn_mix(table, *args):
        fig = draw_label_mix(table, *args)
        for bars in fig.axes[0].containers:
            saw("cluster mix figure", bars.get_label(), bars[0].get_facecolor())
        return fig

    def cards_mix(counts):
        for cls, _, col in counts:
            saw("cluster card", cls, col)
        return mix_bar(counts)

    def maps(xy, panels, path, title, palette=None):
        for name, labels, *kind in panels:
            if kind == ["labels"]:  # the truth's panel (the others: clusters)
                cats = sorted({str(v) for v in labels if v is not None})
                given = [] if palette is None else [palette]  # the stage's palette, where it passes one
                for cls, col in study._category_colours(cats, "labels", *given).items():
                    saw(f"map:{name}", cls, col)
        return path

    draw_labels, draw_label_mix, mix_bar = data.draw_labels, clusters.draw_label_mix, clusters.mix_bar
    monkeypatch.setattr(data, "draw_labels", drawn_labels)
    monkeypatch.setattr(clusters, "draw_label_mix", drawn_mix)
    monkeypatch.setattr(clusters, "mix_bar", cards_mix)
    monkeypatch.setattr(study, "map_figure", maps)
    study.write_study_figures(run)
    page = build_report(run, Config())
    for c in payload(page.read_text())["explorer"]["colourings"]:
        if c["kind"] == "label":
            for cls, col in zip(c["categories"], c["colours"]):
                saw(f"explorer:{c['name']}", cls, col)
    by_class: dict[str, set] = {}
    for (where, cls), cols in seen.items():
        if cls not in ("(missing)", "noise"):
            by_class.setdefault(cls, set()).update(cols)
    wheres = {where for where, cls in seen if cls == "spiral"}
    assert {"explorer:gz1_class", "explorer:morph3", "data:gz1_class", "data:morph3", "cluster card",
            "cluster mix figure", "map:true distribution (morph3)"} <= wheres
    assert {cls: cols for cls, cols in by_class.items() if len(cols) > 1} == {}
    for c in payload(page.read_text())["explorer"]["colourings"]:  # the classes of one column: apart
        if c["kind"] == "label":
            shown = [col for cls, col in zip(c["categories"], c["colours"]) if cls not in ("(missing)", "noise")]
            assert len(set(shown)) == len(shown) > 1, c["name"]
