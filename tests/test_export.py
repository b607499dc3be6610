"""`morphospace export`: one row per input galaxy, stable column names, three formats."""

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


def test_export_cli(run, tmp_path, capsys):
    assert main(["export", str(run.path), "--out", str(tmp_path / "r.csv"), "--quiet"]) == 0
    assert (tmp_path / "r.csv").exists()
