"""`morphospace export`: one row per input galaxy, stable column names, three formats."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from morphospace.cli import main
from morphospace.errors import UserError
from morphospace.export import export, results_table
from morphospace.run import RunDir, write_npy, write_table


@pytest.fixture
def run(tmp_path):
    """A run with a repeated id, flagged galaxies outside the cube, a hard and a soft clustering."""
    run = RunDir(tmp_path / "run", create=True)
    cat = pd.DataFrame({
        "id": ["a", "b", "c", "c", "d"],
        "source": ["a.png", "b.png", "c.png", "c2.png", ""],
        "morph3": pd.array(["spiral", "elliptical", None, None, "edge_on"], dtype="string"),
        "flag_duplicate_id": [False, False, False, True, False],
        "flag_missing_image": [False, False, False, False, True],
        "cube_index": [0, 1, 2, -1, -1],
    })
    write_table(run.catalogue, cat)
    write_npy(run.cube, np.zeros((3, 1, 4, 4), np.float32))
    run.write_clustering("kmeans3_pca", np.array(["a", "b", "c"]), np.array([2, 0, -1]))
    run.write_clustering("vade", np.array(["a", "b", "c"]), np.array([1, 0, 1]),
                         probabilities=np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]))
    return run


def test_results_table_columns_and_values(run):
    t = results_table(run)
    assert list(t["id"]) == ["a", "b", "c", "c", "d"]  # every input galaxy, flagged ones too
    assert {"morph3", "flag_duplicate_id", "flag_missing_image", "cluster_kmeans3_pca", "cluster_vade",
            "prob_vade_0", "prob_vade_1"} <= set(t.columns)
    assert "cube_index" not in t.columns and "source" not in t.columns
    assert t["cluster_kmeans3_pca"].tolist()[:3] == [2, 0, -1]  # noise stays -1
    assert t["cluster_kmeans3_pca"].isna().tolist() == [False, False, False, True, True]
    assert t["prob_vade_1"].tolist()[:3] == pytest.approx([0.9, 0.2, 0.7])
    assert np.isnan(t["prob_vade_1"].iloc[4])


@pytest.mark.parametrize("ext", [".csv", ".parquet", ".fits"])
def test_export_formats_round_trip(run, tmp_path, ext):
    out = export(run, tmp_path / f"results{ext}")
    if ext == ".csv":
        back = pd.read_csv(out)
    elif ext == ".parquet":
        back = pd.read_parquet(out)
    else:
        back = Table.read(out).to_pandas()
    assert len(back) == 5
    assert "cluster_vade" in back.columns
    assert int(back["cluster_vade"].iloc[0]) == 1


def test_export_unknown_extension(run, tmp_path):
    with pytest.raises(UserError, match="use one of .csv, .parquet, .fits"):
        export(run, tmp_path / "x.xlsx")


def test_export_mismatched_clustering_is_an_error(run):
    run.write_clustering("stale", np.array(["a", "b"]), np.array([0, 1]))
    with pytest.raises(UserError, match="does not match"):
        results_table(run)


def test_the_vade_scores_are_read_checked(run):
    """vade_galaxies.parquet damaged, or of other galaxies: one line naming it, not a traceback or
    scores put on the wrong galaxies."""
    scores = run.path / "vade_galaxies.parquet"
    write_table(scores, pd.DataFrame({"id": ["a", "b", "c"], "anomaly": [0.1, 0.2, 0.3]}))
    assert results_table(run)["vade_anomaly"].tolist()[:3] == pytest.approx([0.1, 0.2, 0.3])
    write_table(scores, pd.DataFrame({"id": ["b", "a", "c"], "anomaly": [0.1, 0.2, 0.3]}))
    with pytest.raises(UserError, match="vade_galaxies.parquet does not match"):
        results_table(run)
    scores.write_text("garbage{[")
    with pytest.raises(UserError, match="vade_galaxies.parquet is damaged"):
        results_table(run)


def test_export_cli(run, tmp_path, capsys):
    assert main(["export", str(run.path), "--out", str(tmp_path / "r.csv"), "--quiet"]) == 0
    back = pd.read_csv(tmp_path / "r.csv")
    assert list(back["id"]) == ["a", "b", "c", "c", "d"]
    assert back["cluster_vade"].tolist()[:3] == [1, 0, 1]


def test_text_fits_cannot_hold_is_one_line_before_any_file(run, tmp_path, capsys):
    cat = pd.read_parquet(run.catalogue)
    cat["morph3"] = cat["morph3"].astype(object)
    cat.loc[1, "morph3"] = "elliptique à bulbe"  # a label (or an id) with non-ASCII text
    write_table(run.catalogue, cat)
    assert main(["export", str(run.path), "--out", str(tmp_path / "new" / "folder" / "r.fits")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "column 'morph3'" in err and ".csv or .parquet" in err
    assert not (tmp_path / "new").exists()  # refused before the folders were made
    assert main(["export", str(run.path), "--out", str(tmp_path / "r.csv")]) == 0
    assert "elliptique à bulbe" in pd.read_csv(tmp_path / "r.csv")["morph3"].tolist()


def test_fits_keeps_column_names_types_and_missing_values(run, tmp_path):
    from astropy.io import fits

    out = export(run, tmp_path / "results.fits")
    want = results_table(run)
    with fits.open(out) as hdus:
        hdu = hdus[1]
        names = [hdu.header[f"TTYPE{k}"] for k in range(1, hdu.header["TFIELDS"] + 1)]
        forms = {n: hdu.header[f"TFORM{k}"] for k, n in enumerate(names, 1)}
    assert names == list(want.columns)  # the same columns, in the same order
    assert forms["id"].endswith("A") and forms["morph3"].endswith("A")  # text
    assert forms["flag_duplicate_id"] == forms["flag_missing_image"] == "L"  # logical
    assert forms["cluster_vade"] == forms["cluster_kmeans3_pca"] == "K"  # 64-bit integers
    assert forms["prob_vade_0"] == forms["prob_vade_1"] == "D"  # float32 in memory, float64 on disk
    back = Table.read(out)
    assert back["cluster_kmeans3_pca"].mask.tolist() == [False, False, False, True, True]
    assert back["cluster_kmeans3_pca"][2] == -1  # noise is a value, not a missing one
    assert back["morph3"].mask.tolist() == [False, False, True, True, False]
    assert [str(v) for v in back["morph3"][[0, 1, 4]]] == ["spiral", "elliptical", "edge_on"]
    assert back["flag_duplicate_id"].tolist() == [False, False, False, True, False]
    np.testing.assert_allclose(np.ma.filled(back["prob_vade_1"], np.nan)[:3], [0.9, 0.2, 0.7], rtol=1e-6)
    assert np.isnan(np.ma.filled(back["prob_vade_1"], np.nan)[3:]).all()


def test_fits_null_markers_are_values_no_column_holds_and_names_differ_beyond_case(run, tmp_path, capsys):
    """astropy marks a missing integer with TNULL = 999999 whatever the column holds: a galaxy with
    999999 votes read back as missing. Columns whose names differ only in case (prob_label_Spiral,
    prob_label_spiral) were written, and a FITS reader finds either under both."""
    cat = pd.read_parquet(run.catalogue)
    cat["nvotes"] = pd.array([999999, None, 0, -9223372036854775808, 12], dtype="Int64")
    write_table(run.catalogue, cat)
    back = Table.read(export(run, tmp_path / "r.fits"))
    assert back["nvotes"].mask.tolist() == [False, True, False, False, False]
    assert back["nvotes"].data[[0, 2, 3, 4]].tolist() == [999999, 0, -9223372036854775808, 12]
    assert back["cluster_kmeans3_pca"].mask.tolist() == [False, False, False, True, True]
    from morphospace.export import fits_table  # unsigned 64-bit: a marker FITS's signed K column holds

    unsigned = fits_table(pd.DataFrame({"u": pd.array([0, None, 2**63 - 1], dtype="UInt64")}))
    unsigned.write(tmp_path / "u.fits")
    assert Table.read(tmp_path / "u.fits")["u"].tolist() == [0, None, 2**63 - 1]
    cat["Morph3"] = "x"
    write_table(run.catalogue, cat)
    assert main(["export", str(run.path), "--out", str(tmp_path / "case.fits")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "'morph3' and 'Morph3' to FITS: FITS column names ignore case" in err
    assert not (tmp_path / "case.fits").exists()
    assert main(["export", str(run.path), "--out", str(tmp_path / "case.csv")]) == 0
    # a trailing slash means a folder: it wrote a file named new.csv
    assert main(["export", str(run.path), "--out", f"{tmp_path / 'new.csv'}/"]) == 2
    assert "is a folder: name a file" in capsys.readouterr().err and not (tmp_path / "new.csv").exists()


@pytest.mark.parametrize("ext", [".csv", ".parquet", ".fits"])
def test_export_is_atomic(run, tmp_path, monkeypatch, ext):
    """A write that fails half-way leaves the previous file as it was and no temporary file behind."""
    from astropy.table import Table as AstropyTable

    out = tmp_path / f"results{ext}"
    out.write_bytes(b"the previous export")

    def half_then_fail(self_or_table, path, *args, **kwargs):
        if hasattr(path, "write"):  # parquet goes through an open file (a path pyarrow cannot encode)
            path.write(b"half a file")
        else:
            Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_then_fail)
    monkeypatch.setattr(AstropyTable, "write", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        export(run, out)
    assert out.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_the_catalogue_s_own_columns_are_not_overwritten_by_results(run, caplog):
    """A catalogue that holds columns named like the export's (a previous results.csv ingested as
    the catalogue): the user's values stay, renamed ``<name>_input``, with a warning; the results
    take the name. A classification named like a clustering is refused, not written over it."""
    cat = pd.read_parquet(run.catalogue)
    cat["cluster_vade"] = [10, 11, 12, 13, 14]
    cat["prob_vade_0"] = 0.123
    write_table(run.catalogue, cat)
    with caplog.at_level("WARNING", logger="morphospace"):
        t = results_table(run)
    assert t["cluster_vade_input"].tolist() == [10, 11, 12, 13, 14]
    assert t["prob_vade_0_input"].tolist() == pytest.approx([0.123] * 5)
    assert t["cluster_vade"].tolist()[:3] == [1, 0, 1] and t["prob_vade_0"].tolist()[:3] == pytest.approx([0.1, 0.8, 0.3])
    assert "exported as 'cluster_vade_input'" in caplog.text
    assert list(t.columns).count("cluster_vade") == 1


def test_a_classification_named_like_a_clustering_is_refused_in_one_line(run, monkeypatch):
    import morphospace.analysis.classes as classes

    probs = np.array([0.5, 0.4, 0.6], dtype=np.float32)
    monkeypatch.setattr(classes, "class_columns", lambda r, ascii_text=False: {
        "class_vade": ("class", np.array(["x", "y", "x"], dtype=object)), "prob_vade_0": ("prob", probs)})
    with pytest.raises(UserError, match=r"both write the column 'prob_vade_0': remove the classification's files from .*classes and run"):
        results_table(run)


@pytest.mark.parametrize("name", ["größe", "a_label_column_whose_name_goes_on_and_on_well_beyond_what_one_card_holds_x"])
def test_a_column_name_fits_cannot_hold_is_one_line(run, tmp_path, capsys, name):
    cat = pd.read_parquet(run.catalogue)
    cat[name] = "x"
    write_table(run.catalogue, cat)
    assert main(["export", str(run.path), "--out", str(tmp_path / "r.fits")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "to FITS: its name must be printable ASCII" in err
    assert not (tmp_path / "r.fits").exists()


def test_a_refused_write_names_the_file_asked_for_not_its_temporary_name(run, tmp_path, monkeypatch, capsys):
    from morphospace.cli import main

    def refused(self, path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_csv", refused)
    out = tmp_path / "results.csv"
    assert main(["export", str(run.path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err and "partial" not in err
    monkeypatch.undo()
    (tmp_path / "afile").write_text("")  # an error about another path keeps naming that path
    assert main(["export", str(run.path), "--out", str(tmp_path / "afile" / "x.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{tmp_path / 'afile'} is a file, not a folder" in err  # (it was "cannot use afile: File exists")


def test_a_csv_export_runs_no_formula_in_a_spreadsheet(tmp_path):
    """A catalogue's text (a label, a name) beginning with =, +, -, @ was written as it was: a spreadsheet
    opening the CSV ran it as a formula. Such text gets a leading apostrophe, as the explorer's
    downloads do; ids stay as they are (they must match the catalogue), and so do numbers."""
    from morphospace.run import spreadsheet_safe

    run = RunDir(tmp_path / "run", create=True)
    cat = pd.DataFrame({"id": ["=a", "-5", "c"], "kind": pd.array(["=1+1", "-2.5", "@SUM(A1)"], dtype="string"),
                        "note": ["+cmd", "-x", "plain"], "cube_index": [0, 1, 2]})
    write_table(run.catalogue, cat)
    write_npy(run.cube, np.zeros((3, 1, 4, 4), np.float32))
    back = pd.read_csv(export(run, tmp_path / "out.csv"), dtype=str, keep_default_na=False)
    assert back["id"].tolist() == ["=a", "-5", "c"]
    assert back["kind"].tolist() == ["'=1+1", "-2.5", "'@SUM(A1)"] and back["note"].tolist() == ["'+cmd", "'-x", "plain"]
    assert pd.read_parquet(export(run, tmp_path / "out.parquet"))["kind"].tolist() == ["=1+1", "-2.5", "@SUM(A1)"]
    numbers = pd.DataFrame({"x": [-1.5, 2.0]})
    assert spreadsheet_safe(numbers) is numbers  # nothing to change: the table itself


def test_a_long_legal_file_name_is_written(run, tmp_path):
    """A 250-byte name is legal, but its temporary name beside it (`.<name>.<8>.partial`) was not:
    "File name too long"."""
    out = tmp_path / ("y" * 246 + ".csv")
    assert export(run, out) == out and len(pd.read_csv(out)) == 5
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    wide = tmp_path / ("é" * 123 + ".csv")  # 250 bytes of two-byte letters
    assert export(run, wide) == wide and wide.is_file()


def test_pipes_and_files_in_the_way_are_said_so(run, tmp_path):
    """`export --out lab.csv/r.csv` said "cannot use lab.csv: File exists"; a labels file or an image
    given as a pipe (`<(cat lab.csv)`) was "not found"."""
    import os

    (tmp_path / "lab.csv").write_text("id,kind\n")
    with pytest.raises(UserError, match=r"lab.csv is a file, not a folder"):
        export(run, tmp_path / "lab.csv" / "r.csv")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    from morphospace.analysis.label_files import read_labels

    with pytest.raises(UserError, match="is not a regular file \\(a pipe or a device\\)"):
        read_labels(fifo, "kind")
    from morphospace.data.ingest.workers import preprocess_file

    with pytest.raises(UserError, match="pipe: not a regular file \\(a pipe or a device\\): save the image"):
        preprocess_file(fifo, None)  # refused before the recipe is read


def test_export_says_when_the_model_behind_its_clusters_is_gone(run, caplog):
    """A new training set the model aside (or stopped half way): the report said the model's clusters
    were no longer its model's, the export said nothing."""
    import json
    import logging

    note = run.embedding_path("vade").with_suffix(".json")
    note.parent.mkdir(parents=True, exist_ok=True)
    note.write_text(json.dumps({"name": "vade", "model_fingerprint": "of the model embedded"}))
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        assert "cluster_vade" in results_table(run).columns
    assert "the model's own clusters and scores (vade, vade_*, and the form anomaly score made from its form " \
           "embedding) are not those of the run's model: the model they came from is no longer in the run" in caplog.text


def test_export_refuses_to_overwrite_a_file_of_the_survey_the_run_read(run, tmp_path, capsys):
    """`export RUN --out survey/catalogue.csv` replaced the survey's own catalogue with the results
    table (no file column), and the survey could not be ingested again; an earlier export there is
    written again."""
    import json

    from morphospace.cli import main

    survey = tmp_path / "survey"
    survey.mkdir()
    (survey / "catalogue.csv").write_text("id,file,morph\na,a.png,spiral\n")
    (survey / "a.png").write_bytes(b"an image")
    run.ingest_summary.write_text(json.dumps({"source": str(survey)}))
    for name in ("catalogue.csv", "a.png"):
        before = (survey / name).read_bytes()
        code = main(["export", str(run.path), "--out", str(survey / name), "--quiet"])
        line = capsys.readouterr().err.strip()
        assert code == 2 and "is a file of the survey the run read" in line and "\n" not in line
        assert (survey / name).read_bytes() == before
    for name in ("results.csv", "results.parquet", "results.fits"):  # new, then written again
        assert main(["export", str(run.path), "--out", str(survey / name), "--quiet"]) == 0
        assert main(["export", str(run.path), "--out", str(survey / name), "--quiet"]) == 0, capsys.readouterr().err
    # a catalogue given apart from the survey (ingest --catalogue), even one an earlier export wrote
    from morphospace.config import Config, apply_overrides, dumps_config

    apart = tmp_path / "elsewhere" / "labels.csv"
    apart.parent.mkdir()
    apart.write_bytes((survey / "results.csv").read_bytes())
    run.config.write_text(dumps_config(apply_overrides(Config(), [f"data.catalogue={apart}"])))
    before = apart.read_bytes()
    code = main(["export", str(run.path), "--out", str(apart), "--quiet"])
    assert "is the catalogue the run's survey was read with" in capsys.readouterr().err and code == 2
    assert apart.read_bytes() == before
