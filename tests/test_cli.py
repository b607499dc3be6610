"""The command line: help with examples, one-line errors with exit status 2."""

import re
import subprocess
import sys

import numpy as np
import pytest

import morphospace
from morphospace.cli import build_parser, main
from morphospace.config import load_config

STAGES = ["synth", "ingest", "train", "embed", "reduce", "cluster", "compare", "generate", "report",
          "run", "export", "study", "import-astrovader"]


@pytest.mark.parametrize("argv, said", [
    (["cluster", "RUN", "--config", ""], "--config must not be empty"),
    (["reduce", "RUN", "--embedding", " "], "--embedding must not be empty"),
    (["train", ""], "RUN must not be empty"),
    (["study", "--labels", ""], "--labels must not be empty"),
])
def test_an_empty_value_is_refused_not_read_as_not_given(argv, said, capsys):
    """`--config ""` ran on the defaults and `--embedding ""` on the primary embedding (exit 0), and a RUN
    of "" was the folder the command was typed in."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and said in err and len(err.strip().splitlines()) == 1

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


@pytest.mark.parametrize("argv, typed, meant", [(["studdy"], "studdy", "study"), (["clustr", "RUN"], "clustr", "cluster"),
                                                (["ingest", "D", "--out", "R", "--colour", "gray"], "gray", "grey")])
def test_a_mistyped_command_or_choice_names_the_closest(argv, typed, meant, capsys):
    """`morphospace studdy` listed every command without saying which was meant."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("morphospace: error: argument ") and f"invalid choice: {typed!r} (did you mean " \
        f"'{meant}'? choose from " in err and err.endswith("(see --help)"), err


def test_an_unknown_command_with_none_close_keeps_the_list_alone(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["xyzzy"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "did you mean" not in err
    assert err.startswith("morphospace: error: argument STAGE: invalid choice: 'xyzzy' (choose from 'run', ")


def test_a_mistyped_command_is_one_line_and_status_2_from_the_entry_point():
    r = _run("studdy")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "did you mean 'study'?" in lines[0]


@pytest.mark.parametrize("argv", [["similar", "R", "--id", "a", "--id", "b"], ["synth", "--n", "2", "--n", "3"],
                                  ["train", "R", "--devices", "1", "--devices", "2"]])
def test_an_option_of_one_value_given_twice_is_refused(argv, capsys):
    """argparse kept the last of them silently: `similar --id a --id b` answered for b alone."""
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(argv)
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "given twice: give it once" in err and len(err.splitlines()) == 1
    # the options that gather keep gathering
    assert build_parser().parse_args(["anomalies", "R", "--boring", "a", "--boring", "b"]).boring == ["a", "b"]
    assert build_parser().parse_args(["run", "--set", "x=1", "--set", "y=2"]).overrides == ["x=1", "y=2"]


def test_stage_on_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing"), "--quiet"]) == 2
    assert "run directory not found" in capsys.readouterr().err
    (tmp_path / "afile").write_text("")  # a file given as the run: said so, not "not found"
    assert main(["reduce", str(tmp_path / "afile"), "--quiet"]) == 2
    assert f"{tmp_path / 'afile'} is a file, not a run directory" in capsys.readouterr().err


def test_wrong_data_format_lists_known_layouts(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("hello")
    assert main(["ingest", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "known layouts" in err and "sdss-gz1" in err and "galaxy10" in err


def test_set_is_repeatable_and_options_have_their_documented_defaults():
    args = build_parser().parse_args(["study", "--backbone", "small", "--set", "study.lr=0.01",
                                      "--set", "train.seed=3"])
    assert (args.command, args.backbone, args.out) == ("study", "small", "runs/study")
    assert args.overrides == ["study.lr=0.01", "train.seed=3"]  # in order: a later --set wins
    assert build_parser().parse_args(["run"]).out == "runs/default"
    args = build_parser().parse_args(["generate", "R", "--component", "2", "--out", "gen"])
    assert (args.n, args.temperature, args.seed, args.reject_below) == (64, 0.5, 0, None)


def test_stage_options_and_set_reach_the_saved_config_and_the_stage(tiny_folder_survey, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["ingest", str(tiny_folder_survey), "--out", str(run), "--colour", "grey", "--size", "64",
                 "--set", "cluster.seed=8", "--quiet"]) == 0
    assert "ingested 6 of 6 galaxies" in capsys.readouterr().out
    cfg = load_config(run / "config.toml")
    assert (cfg.preprocess.colour, cfg.preprocess.size, cfg.cluster.seed) == ("grey", 64, 8)
    assert cfg.data.path == str(tiny_folder_survey)
    assert np.load(run / "cube.npy", mmap_mode="r").shape == (6, 1, 64, 64)  # grey: one channel


def test_study_seed_and_workers_are_the_settings_run_gives_them(tiny_folder_survey, tmp_path, monkeypatch, capsys):
    """`study` had no --seed or --workers (`run` has both): `study --seed 3 --workers 1` is now
    `--set train.seed=3 --set cluster.seed=3 --set ingest.workers=1`, as `run --seed 3 --workers 1` is."""
    from morphospace import pipeline
    from morphospace.config import dumps_config

    given = []

    def study(run, cfg, created=False, resume=False):  # the settings the study is given, not its hours
        given.append(cfg)
        return tmp_path / "report.html"

    monkeypatch.setattr(pipeline, "run_study", study)
    base = ["study", "--data", str(tiny_folder_survey), "--backbone", "small", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "a"), "--seed", "3", "--workers", "1"]) == 0
    assert main([*base, "--out", str(tmp_path / "b"), "--set", "train.seed=3", "--set", "cluster.seed=3",
                 "--set", "ingest.workers=1"]) == 0
    assert main([*base, "--out", str(tmp_path / "c")]) == 0
    by_options, by_set, neither = given
    assert (by_options.train.seed, by_options.cluster.seed, by_options.ingest.workers) == (3, 3, 1)
    assert dumps_config(by_options) == dumps_config(by_set) != dumps_config(neither)
    assert (neither.train.seed, neither.cluster.seed, neither.ingest.workers) == (0, 0, 2)
    # an option and a --set that disagree: one line, as for the other stages
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "d"), "--seed", "3", "--set", "cluster.seed=7"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cluster.seed is given twice" in err and len(err.splitlines()) == 1 and not (tmp_path / "d").exists()
    for bad in (["--seed", "-1"], ["--workers", "x"]):
        with pytest.raises(SystemExit) as stop:
            main([*base, *bad])
        assert stop.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1


def test_version_is_the_package_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"morphospace {morphospace.__version__}"


def test_ctrl_c_is_one_line_and_status_130_even_inside_a_lightning_fit(monkeypatch, capsys, tmp_path):
    """Lightning turns Ctrl-C during a fit into sys.exit(1) once it has stopped its processes:
    the command line still says `interrupted` in one line, with status 130."""
    import morphospace.cli as cli

    def lightning_fit(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            sys.exit(1)  # what lightning.pytorch.trainer.call does

    monkeypatch.setattr(cli, "_dispatch", lightning_fit)
    assert main(["cluster", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip() == "morphospace: interrupted"

    def plain_exit(args):  # any other exit passes through untouched
        sys.exit(3)

    monkeypatch.setattr(cli, "_dispatch", plain_exit)
    with pytest.raises(SystemExit) as exc:
        main(["cluster", str(tmp_path)])
    assert exc.value.code == 3


def test_sigterm_during_a_lightning_fit_is_a_failure_with_status_143(monkeypatch, capsys, tmp_path):
    """Lightning turns a SIGTERM during a fit (a scheduler's preemption) into a SystemExit without a
    code: the command exited 0, as if it had finished, with no model written. Now: one line, 143."""
    import os
    import signal

    import lightning.pytorch as pl
    import torch

    import morphospace.cli as cli

    class Toy(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(2, 1)

        def training_step(self, batch, i):
            if i == 2:
                os.kill(os.getpid(), signal.SIGTERM)  # as `kill`, `scancel` or a preemption sends it
            return self.w(batch[0]).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def fit(args):
        data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(64, 2)), batch_size=4)
        pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=tmp_path).fit(Toy(), data)
        return 0

    monkeypatch.setattr(cli, "_dispatch", fit)
    assert main(["cluster", str(tmp_path)]) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "morphospace: terminated (SIGTERM)"


def test_main_leaves_its_caller_s_logging_as_it_found_it(tmp_path, monkeypatch, capsys):
    """main() called from Python (a notebook, a test) left its console handler on the ``morphospace``
    logger, bound to the stderr of that moment, with propagation off and the level at INFO: the
    caller's own logging never saw morphospace's lines again and INFO lines went on reaching that
    stderr. Now the logger (handlers, level, propagation), ``py.warnings`` and the capture of warnings
    are as the caller had them however the command ends, while during the command its console and
    its run's log.txt are as before."""
    import logging
    import warnings

    import morphospace.cli as cli
    from morphospace.errors import UserError
    from morphospace.progress import is_quiet
    from morphospace.run import RunDir

    logger, pw = logging.getLogger("morphospace"), logging.getLogger("py.warnings")
    seen: list[str] = []
    mine = logging.Handler()  # the caller's own handler, e.g. a notebook's
    mine.emit = lambda record: seen.append(record.getMessage())
    monkeypatch.setattr(logger, "handlers", [mine])
    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setattr(pw, "handlers", [])
    monkeypatch.setattr(pw, "propagate", True)
    level, captured = logger.level, logging._warnings_showwarning is not None

    def state():
        return (logger.handlers[:], logger.level, logger.propagate, pw.handlers[:], pw.level, pw.propagate,
                logging._warnings_showwarning, warnings.showwarning,  # the capture: what it gives back when off
                is_quiet())  # progress bars: --quiet is the command's alone

    def stage(args):
        run = RunDir(args.run, create=True)
        cli._setup_logging(args.quiet, run)  # as a stage does, once it knows its run
        logger.info("clustering %s", run.path.name)
        if args.quiet:  # kept off the console, in the run's log
            warnings.warn(f"a library's warning in {run.path.name}")
        how = run.path.name
        if how == "usererror":
            raise UserError("no embedding")
        if how == "ctrlc":
            raise KeyboardInterrupt
        if how == "exit":
            sys.exit(3)
        if how == "bug":
            raise RuntimeError("a bug")
        return 0

    dispatch = cli._dispatch
    monkeypatch.setattr(cli, "_dispatch", stage)
    ends = {"ok": 0, "usererror": 2, "ctrlc": 130, "exit": SystemExit, "bug": RuntimeError}
    try:
        for capture in (False, True):
            logging.captureWarnings(capture)
            for logged in (logging.WARNING, logging.NOTSET):
                logger.setLevel(logged)
                for quiet in (False, True):
                    for name, status in ends.items():
                        before = state()
                        argv = ["cluster", str(tmp_path / name)] + ["--quiet"] * quiet
                        if isinstance(status, int):
                            assert main(argv) == status
                        else:
                            with pytest.raises(status):
                                main(argv)
                        assert state() == before, (name, quiet, capture, logged)
                        err = capsys.readouterr().err  # the command's console and log, as before
                        log = (tmp_path / name / "log.txt").read_text()
                        assert err.count(f"clustering {name}") == (0 if quiet else 1)
                        assert log.count(f"INFO clustering {name}") == 1
                        if quiet:  # a library's warning in the run's log alone
                            assert f"a library's warning in {name}" in log
                            assert f"a library's warning in {name}" not in err
                        # afterwards morphospace's lines reach the caller's handler, and no console of the command
                        seen.clear()
                        logger.info("an info line after the command")
                        logger.warning("a warning after the command")
                        assert seen == ["a warning after the command"]
                        assert "after the command" not in capsys.readouterr().err
                        (tmp_path / name / "log.txt").unlink()
        # a real command that sets its logging up, then stops on the user's mistake
        monkeypatch.setattr(cli, "_dispatch", dispatch)
        before = state()
        assert main(["synth", "--out", str(tmp_path / "mock"), "--n", "0"]) == 2
        assert state() == before
        assert "--n must be at least 1" in capsys.readouterr().err
    finally:
        logging.captureWarnings(captured)
        logger.setLevel(level)


def test_sigterm_outside_a_fit_stops_a_stage_in_one_line_and_in_its_log(tmp_path):
    """Left to its default, SIGTERM ended every stage but a training's fit where it stood: status 143,
    no line, nothing in the run's log. (In a process of its own: unfixed, the signal ends it.)"""
    import subprocess
    import sys
    import textwrap

    run = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, signal, sys
        import morphospace.cli as cli
        from morphospace.cli.logs import _setup_logging
        from morphospace.run import RunDir

        run = RunDir({str(run)!r}, create=True)
        run.config.write_text("")

        def clustering(args):
            _setup_logging(False, run)
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill` or a scheduler's limit sends it
            raise AssertionError("SIGTERM did not stop the stage")

        cli._dispatch = clustering
        status = cli.main(["cluster", {str(run)!r}])
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the process's own again
        sys.exit(status)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 143, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == "morphospace: terminated (SIGTERM)"
    assert (run / "log.txt").read_text().rstrip().endswith("terminated (SIGTERM)")


def test_sigterm_during_a_first_ingest_takes_away_the_folder_it_made(monkeypatch, capsys, tmp_path):
    """SIGTERM (`timeout`, a scheduler's limit) ended a first ingest where it stood, leaving a folder
    with a log and a partial cube that every later ingest refused as 'not a run'. Now it is taken
    away as on Ctrl-C, status 143; an existing run is left to the ingest's own recovery."""
    import os
    import signal

    import morphospace.data.ingest as ingest_module
    from fixtures import galaxy_rgb, save_image

    for i in range(3):
        save_image(tmp_path / "data" / f"g{i}.png", galaxy_rgb(48, seed=i))

    def killed(data, run, cfg, **kwargs):
        (run.path / "cube.npy.partial").write_bytes(b"half a cube")
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the ingest")

    monkeypatch.setattr(ingest_module, "ingest", killed)
    out = tmp_path / "run"
    assert main(["ingest", str(tmp_path / "data"), "--out", str(out), "--quiet"]) == 143
    assert capsys.readouterr().err.strip().splitlines()[-1] == "morphospace: terminated (SIGTERM)"
    assert not out.exists() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    monkeypatch.undo()
    assert main(["ingest", str(tmp_path / "data"), "--out", str(out), "--quiet"]) == 0


def test_epochs_the_default_model_does_not_use_are_said_so():
    """`--epochs` sets train.epochs; the form model's linear core has none: a warning names what trains."""
    import argparse
    import logging

    from morphospace.cli import _say_unused_epochs
    from morphospace.config import Config, apply_overrides

    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("morphospace")
    logger.addHandler(handler)
    try:
        _say_unused_epochs(argparse.Namespace(epochs=50), Config())
        _say_unused_epochs(argparse.Namespace(epochs=None), Config())
        _say_unused_epochs(argparse.Namespace(epochs=50), apply_overrides(Config(), ["form.core=mlp"]))
        assert len(seen) == 1 and "--epochs 50 is not used by the form model's linear core" in seen[0]
        # nor the training settings given by --set (recorded as the model's, used by nothing)
        given = ["train.batch_size=1", "train.lr=0.5", "train.seed=3"]
        _say_unused_epochs(argparse.Namespace(epochs=None, overrides=given), apply_overrides(Config(), given))
        assert len(seen) == 2 and seen[1].startswith("train.batch_size = 1, train.lr = 0.5: not used by the form "
                                                     "model's linear core")
        mlp = [*given, "form.core=mlp"]
        _say_unused_epochs(argparse.Namespace(epochs=None, overrides=mlp), apply_overrides(Config(), mlp))
        assert len(seen) == 2  # the MLP core trains by them
    finally:
        logger.removeHandler(handler)


def test_epochs_and_seed_are_checked_with_the_settings_they_go_with():
    """`train --set train.pretrain_epochs=9 --epochs 12` was refused ("train.epochs (1) must exceed
    train.pretrain_epochs (9)": the run's saved epochs, not the 12 given): --epochs and --seed are
    validated with --set; a --set of the same key that disagrees is refused (it lost without a word)."""
    from types import SimpleNamespace

    from morphospace.cli import _config_for
    from morphospace.config import ConfigError
    from morphospace.errors import UserError

    args = SimpleNamespace(config=None, overrides=["model.preset=default", "train.pretrain_epochs=9"], epochs=12, seed=3)
    cfg = _config_for(args, None, training=True)
    assert (cfg.train.epochs, cfg.train.pretrain_epochs, cfg.train.seed) == (12, 9, 3)
    args.overrides.append("train.epochs=1")
    with pytest.raises(UserError, match="train.epochs is given twice, 12 by an option and 1 by --set"):
        _config_for(args, None, training=True)
    with pytest.raises(ConfigError, match="must exceed"):
        _config_for(args, None)


def test_after_sigterm_a_pool_broken_by_the_same_signal_adds_no_traceback(tmp_path):
    """`timeout` signals the whole group: the pool's workers died too, and Python 3.11's pool thread
    failed on the futures already cancelled (InvalidStateError), a traceback beside the one line.
    (`morphospace synth --n 3000` stopped by `timeout -s TERM 1.5`, 3 times in 4.)"""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import os, signal, sys, threading
        from concurrent.futures import InvalidStateError
        from morphospace.errors import Terminated, sigterm_raises

        class _ExecutorManagerThread(threading.Thread):  # as concurrent.futures.process names its thread
            def run(self):
                raise InvalidStateError("CANCELLED: <Future state=cancelled>")

        try:
            with sigterm_raises():
                os.kill(os.getpid(), signal.SIGTERM)
                raise AssertionError("SIGTERM did not stop the block")
        except Terminated:
            pass
        pool = _ExecutorManagerThread(); pool.start(); pool.join()
        other = threading.Thread(target=lambda: 1 / 0); other.start(); other.join()  # still shown
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "InvalidStateError" not in done.stderr and "ZeroDivisionError" in done.stderr
def test_each_stage_s_help_shows_a_setting_it_takes():
    """reduce, cluster, compare, report and embed showed `--set train.epochs=5`, which each refuses."""
    import argparse

    from morphospace.cli.settings import _made_before
    from morphospace.config import Config, apply_overrides
    from morphospace.config.stage_keys import ANALYSIS_READERS

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("embed", "reduce", "cluster", "compare", "report", "ingest"):
        example = re.search(r"e\.g\. --set (\S+)", " ".join(sub.choices[name].format_help().split())).group(1)
        apply_overrides(Config(), [example])  # a setting there is
        assert name == "ingest" or _made_before(name, example.partition("=")[0]) is None, (name, example)
        # and the stage's own, not one it shares with the stage it belongs to: compare showed
        # `cluster.seed=1`, whose clusterings `cluster` makes (compare reads it for its probe alone)
        assert ANALYSIS_READERS.get(example.partition("=")[0], (name,))[0] == name, (name, example)


@pytest.mark.parametrize("setting, fix", [
    ("cluster.methods=[kmeans]", """write it as --set 'cluster.methods=["kmeans"]' (TOML: strings in quotes)"""),
    ("cluster.reductions=[pca, umap]", """write it as --set 'cluster.reductions=["pca", "umap"]'"""),
    # a number among the words is a column's name too: quoted, or the fix fails again ("must be str")
    ("cluster.nuisance_columns=[g_r, 2]", """write it as --set 'cluster.nuisance_columns=["g_r", "2"]'"""),
    ("data.label_columns={a}", "not read as TOML: write strings in quotes"),
    ('cluster.methods=["kmeans"', "not read as TOML: write strings in quotes")])
def test_a_list_of_bare_words_is_told_to_quote_them(tmp_path, capsys, setting, fix):
    """`--set cluster.methods=[kmeans]` said "must be a list; got str '[kmeans]'", which looks like a
    list: what is wrong is TOML's quotes, which the strings in it need."""
    assert main(["run", "--out", str(tmp_path / "r"), "--quiet", "--set", setting]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "must be a list; got str" in lines[0] and fix in lines[0], lines
    assert not (tmp_path / "r").exists()
    # a list of numbers is not told to quote (quotes would not mend it), but that it is no TOML list (it
    # said "must be a list; got str '[3, a]'", which looks like one); a key that takes no list, neither
    assert main(["run", "--out", str(tmp_path / "r"), "--quiet", "--set", "cluster.kmeans_k=[3, a]"]) == 2
    err = capsys.readouterr().err
    assert "'[3, a]' is not read as a TOML list: write it as one, its numbers bare (e.g. --set " \
           "'cluster.kmeans_k=[3, 4, 5, 6, 7, 8]')" in err and "quotes" not in err  # its default
    assert main(["run", "--out", str(tmp_path / "r"), "--quiet", "--set", "form.aug_scale=[0.7,x]"]) == 2
    assert "(e.g. --set 'form.aug_scale=[0.7, 1.43]')" in capsys.readouterr().err  # one its checks take
    assert main(["run", "--out", str(tmp_path / "r"), "--quiet", "--set", "cluster.seed=[1"]) == 2
    assert "TOML" not in capsys.readouterr().err


def test_an_option_s_prefix_is_not_taken_for_it(capsys):
    """argparse took `--inter` for --interesting and `--q` for --quiet, and `--c` named a hidden option."""
    with pytest.raises(SystemExit) as exc:
        main(["anomalies", "RUN", "--inter", "g1", "--q"])
    assert exc.value.code == 2 and "unrecognized arguments: --inter g1 --q" in capsys.readouterr().err


def test_a_set_key_given_twice_takes_the_last_value_as_the_help_says(tiny_folder_survey, tmp_path):
    """A script appends an override to a base command (`... --set preprocess.size=48` after the base's
    32): the last value is taken, and --help says so (a review read it as taken unsaid)."""
    from morphospace.config import load_config

    ingest = next(a for a in build_parser()._actions if a.dest == "command").choices["ingest"]
    assert "a key given twice takes the last value" in " ".join(ingest.format_help().split())
    assert main(["ingest", str(tiny_folder_survey), "--out", str(tmp_path / "r"), "--quiet",
                 "--set", "cluster.seed=7", "--set", "cluster.seed=8"]) == 0
    assert load_config(tmp_path / "r" / "config.toml").cluster.seed == 8


def test_no_command_prints_the_help_on_stderr_and_exits_2(capsys):
    """Bare `morphospace` exited 2 with its 47-line help on stdout, where a pipe took it for output."""
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "usage: morphospace" in err


def test_a_command_that_stops_early_leaves_a_caller_s_log_file_alone(tmp_path):
    """A command that stops before it opens its run's log (no such run) wrote its error line into the
    caller's own file handler and closed it, which the logger then held closed (found by review)."""
    import logging

    logger = logging.getLogger("morphospace")
    mine = logging.FileHandler(tmp_path / "mine.log", mode="w")
    logger.addHandler(mine)
    try:
        assert main(["report", str(tmp_path / "not-a-run")]) == 2
        assert mine in logger.handlers and mine.stream is not None
        logger.warning("after the command")
        mine.flush()
        assert (tmp_path / "mine.log").read_text() == "after the command\n"
    finally:
        logger.removeHandler(mine)
        mine.close()


def test_make_demo_gives_no_setting_the_default_model_ignores(caplog):
    """`make demo` passed `--set train.epochs=12 --set train.pretrain_epochs=4` (the pixel VaDE's schedule):
    the default form model's linear core uses neither, so the README's first command opened with the warning
    "train.epochs = 12, train.pretrain_epochs = 4: not used by the form model's linear core" and trained
    the full schedule its Makefile comment said it shortened."""
    import logging
    import re
    import shlex
    from pathlib import Path
    from types import SimpleNamespace

    from morphospace.cli import _config_for
    from morphospace.cli.settings import _say_unused_epochs

    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    opts = re.search(r"^DEMO_OPTS\s*\?=(.*)$", makefile, re.M).group(1)
    words = shlex.split(opts)
    overrides = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    args = SimpleNamespace(command="run", config=None, overrides=overrides, epochs=None, seed=None)
    cfg = _config_for(args, None, training=True)
    with caplog.at_level(logging.WARNING, logger="morphospace"):
        _say_unused_epochs(args, cfg)
    assert not [r for r in caplog.records if "not used" in r.getMessage()], caplog.text
