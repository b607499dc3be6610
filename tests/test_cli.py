"""The command line: help with examples, one-line errors with exit status 2."""

import subprocess
import sys

import pytest

from morphospace.cli import build_parser, main

STAGES = ["synth", "ingest", "train", "embed", "reduce", "cluster", "compare", "generate", "report",
          "run", "export", "study", "import-astrovader"]


def test_every_stage_has_help_with_an_example(capsys):
    for stage in STAGES:
        with pytest.raises(SystemExit) as exc:
            main([stage, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert "example" in out and f"morphospace {stage}" in out, stage


def test_top_level_help_lists_stages(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for stage in STAGES:
        assert stage in out


def _run(*args):
    return subprocess.run([sys.executable, "-m", "morphospace", *args], capture_output=True, text=True, timeout=120)


def test_missing_folder_is_one_line_exit_2(tmp_path):
    r = _run("ingest", str(tmp_path / "nope"), "--out", str(tmp_path / "run"), "--quiet")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "data not found" in lines[0]


def test_unknown_config_key_is_one_line_exit_2(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[ingest]\nworkerz = 2\n")
    r = _run("run", "--config", str(cfg), "--out", str(tmp_path / "run"), "--quiet")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("morphospace: error: config: unknown key 'ingest.workerz'")


def test_bad_option_is_one_line_exit_2():
    r = _run("ingest")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1


def test_stage_on_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing"), "--quiet"]) == 2
    assert "run directory not found" in capsys.readouterr().err


def test_wrong_data_format_lists_known_layouts(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("hello")
    assert main(["ingest", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "known layouts" in err and "sdss-gz1" in err and "galaxy10" in err


def test_parser_builds():
    assert build_parser().prog == "morphospace"
