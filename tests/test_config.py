"""The TOML configuration: validation, overrides, round trip, old files, one-line errors."""

import os
import re
import tomllib

import pytest

from morphospace.config import (
    Config,
    ConfigError,
    FormConfig,
    PreprocessConfig,
    apply_overrides,
    config_from_dict,
    dump_config,
    dumps_config,
    load_config,
    to_dict,
)
from morphospace.errors import UserError


def load_text(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return load_config(p)


def error_of(tmp_path, text) -> str:
    """The message of loading ``text``; it must be a one-line UserError."""
    with pytest.raises(UserError) as info:
        load_text(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message and message.startswith("config: ")
    assert isinstance(info.value, ConfigError) and info.value.exit_code == 2
    return message


def test_defaults_load_without_a_file():
    cfg = load_config(None)
    assert cfg.preprocess.size == 64
    assert cfg.data.path == ""
    assert cfg == Config()


def test_unknown_key_names_the_key(tmp_path):
    message = error_of(tmp_path, "[preprocess]\nsise = 64\n")
    assert message.startswith("config: unknown key 'preprocess.sise' (did you mean 'preprocess.size'?")
    assert "known here: asinh_softening, colour, crop, framing, galaxy_r90s, normalise, preset, size" in message


def test_a_key_below_a_setting_or_not_text_is_named_as_given():
    """`--set train.epochs.x=3` said "unknown key 'train.epochs' (did you mean 'train.epochs'?)";
    a notebook's {3: 64} raised AttributeError from the message itself."""
    for key in ("train.epochs.x", "train.epochs."):
        with pytest.raises(UserError) as err:
            apply_overrides(Config(), [f"{key}=3"])
        assert str(err.value) == f"config: unknown key '{key}' ('train.epochs' is a setting, not a table of settings)"
    with pytest.raises(UserError, match="unknown key '3'"):
        apply_overrides(Config(), {3: 64})


def test_unknown_section_is_an_error(tmp_path):
    with pytest.raises(UserError, match="unknown key 'modle'"):
        load_text(tmp_path, "[modle]\nkind = 'vade'\n")
    assert "unknown key 'model.knid' (did you mean 'model.kind'?" in error_of(tmp_path, "[model]\nknid = 'vade'\n")


def test_wrong_type_names_the_key(tmp_path):
    assert error_of(tmp_path, "[train]\nepochs = 'ten'\n") == "config: train.epochs must be int; got str 'ten'"
    assert error_of(tmp_path, "[train]\nepochs = 4.5\n") == "config: train.epochs must be int; got float 4.5"
    assert error_of(tmp_path, "[model]\ncanonicalise = 1\n") == \
        "config: model.canonicalise must be true or false; got int 1"
    assert error_of(tmp_path, "data = 3\n") == "config: data must be a table; got int 3"


def test_bool_is_not_an_int(tmp_path):
    with pytest.raises(UserError, match=r"train\.epochs"):
        load_text(tmp_path, "[train]\nepochs = true\n")
    assert "got bool True" in error_of(tmp_path, "[train]\nlr = true\n")


def test_list_items_are_checked(tmp_path):
    with pytest.raises(UserError, match=r"cluster\.kmeans_k\[1\]"):
        load_text(tmp_path, "[cluster]\nkmeans_k = [3, 'x']\n")
    assert error_of(tmp_path, "[cluster]\nkmeans_k = [3, 0]\n") == \
        "config: cluster.kmeans_k[1] must be in [2, 1000]; got 0"
    assert error_of(tmp_path, "[cluster]\nmethods = ['kmeans', 'spectral']\n") == \
        "config: cluster.methods[1] must be one of 'kmeans', 'dbscan', 'hdbscan', 'gmm'; got 'spectral'"
    assert "model.widths must have at least 1 item" in error_of(tmp_path, "[model]\nwidths = []\n")


def test_seeds_are_what_every_library_takes(tmp_path, capsys):
    """A seed numpy, scikit-learn or Lightning refuses is refused here first, in one line."""
    from morphospace.cli import main

    for key in ("train.seed", "cluster.seed", "report.seed", "data.synth_seed"):
        section, name = key.split(".")
        assert error_of(tmp_path, f"[{section}]\n{name} = -1\n") == f"config: {key} must be in [0, 2147483647]; got -1"
    assert "got 99999999999" in error_of(tmp_path, "[train]\nseed = 99999999999\n")
    assert load_text(tmp_path, "[train]\nseed = 2147483647\n").train.seed == 2**31 - 1
    for argv in (["synth", "--seed", "-1", "--out", str(tmp_path / "m")],
                 ["generate", str(tmp_path), "--component", "0", "--seed", "99999999999999999999"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "a seed is in [0, 2147483647]" in err


def test_a_value_fitting_no_member_of_a_union_is_one_problem(tmp_path):
    assert error_of(tmp_path, "[form]\ntrunk_lr_scale = 0\n") == \
        "config: form.trunk_lr_scale must be greater than 0, or 'auto'; got 0"
    assert error_of(tmp_path, "[form]\ntrunk_lr_scale = 'fast'\n") == \
        "config: form.trunk_lr_scale must be float, or 'auto'; got 'fast'"
    assert error_of(tmp_path, "[form]\ntrunk_lr_scale = 'fast'\ndim = 1\n") == \
        "config: form.dim must be in [2, 4096]; got 1 (and 1 more problem)"  # the union's two failures: one problem
    assert load_text(tmp_path, "[form]\ntrunk_lr_scale = 'auto'\n").form.trunk_lr_scale == "auto"
    assert load_text(tmp_path, "[form]\ntrunk_lr_scale = 0.5\n").form.trunk_lr_scale == 0.5


def test_int_accepted_for_float(tmp_path):
    cfg = load_text(tmp_path, "[preprocess]\ncrop = 1\n")
    assert cfg.preprocess.crop == 1.0 and isinstance(cfg.preprocess.crop, float)


def test_invalid_toml_is_one_line(tmp_path):
    with pytest.raises(UserError, match="not valid TOML"):
        load_text(tmp_path, "[train\n")
    with pytest.raises(UserError, match="is a folder: give a TOML file"):
        load_config(tmp_path)


def test_a_byte_order_mark_is_no_error(tmp_path):
    (tmp_path / "bom.toml").write_bytes("\ufeff[train]\nseed = 3\n".encode("utf-8"))
    assert load_config(tmp_path / "bom.toml").train.seed == 3


def test_bad_choice_lists_the_allowed_values(tmp_path):
    assert error_of(tmp_path, "[model]\npreset = 'fomr'\n") == \
        "config: model.preset must be one of 'form', 'default', 'astrovader'; got 'fomr'"
    assert error_of(tmp_path, "[data]\nlayout = 'zip'\n").startswith("config: data.layout must be one of 'auto', ")


@pytest.mark.parametrize("text,message", [
    ("[preprocess]\ncrop = 2.0\n", "config: preprocess.crop must be in [0.05, 1.0], or 'auto'; got 2.0"),
    ("[form]\ntrunk_lr_scale = 0\n", "config: form.trunk_lr_scale must be greater than 0, or 'auto'; got 0"),
    ("[preprocess]\nsize = 8\n", "config: preprocess.size must be in [16, 1024]; got 8"),
    ("[train]\nepochs = 0\n", "config: train.epochs must be in [1, 1000000]; got 0"),
    ("[data.vote_thresholds]\nsmooth = 1.5\n", "config: data.vote_thresholds.smooth must be in [0.0, 1.0]; got 1.5"),
    ("[report]\nthumb_quality = 101\n", "config: report.thumb_quality must be in [1, 100]; got 101"),
    ("[cluster]\nkmeans_k = [1, 3]\n", "config: cluster.kmeans_k[0] must be in [2, 1000]; got 1"),
    ("[cluster]\ngmm_k = [1]\n", "config: cluster.gmm_k[0] must be in [2, 1000]; got 1"),
    ("[cluster]\nkmeans_k = []\n", "config: cluster.kmeans_k must have at least 1 item(s); got []"),
    ("[cluster]\nn_jobs = 0\n", "config: cluster.n_jobs must be -1 (every core) or at least 1, got 0"),
    # refused mid-stage before, after the maps, and saved into the run's config.toml
    ("[cluster]\nhdbscan_min_cluster_size = 1\n",
     "config: cluster.hdbscan_min_cluster_size must be 0 (chosen from the data) or at least 2, got 1"),
    ("[cluster]\nmap_sample = 2\n", "config: cluster.map_sample must be 0 (every galaxy) or at least 5, got 2"),
    ("[cluster]\nmethods = []\n", "config: cluster.methods must have at least 1 item(s); got []"),
    ("[cluster]\nrepresentations = []\n", "config: cluster.representations must have at least 1 item(s); got []"),
    ("[study]\nbatch_size = 1\n", "config: study.batch_size must be in [2, 1000000]; got 1"),
    ("[study]\ninput_size = 1\n", "config: study.input_size must be 0 (the backbone's own) or at least 32 pixels, got 1"),
])
def test_out_of_range_names_key_value_and_range(tmp_path, text, message):
    assert error_of(tmp_path, text) == message


@pytest.mark.parametrize("literal", ["nan", "inf", "-inf"])
def test_non_finite_floats_are_rejected(tmp_path, literal):
    message = error_of(tmp_path, f"[train]\nlr = {literal}\n")
    assert message.startswith("config: train.lr must be a finite number; got ")


def test_control_characters_are_rejected_and_shown_escaped(tmp_path):
    message = error_of(tmp_path, '[data]\npath = "a\\nb\\u001b[31m"\n')
    assert message == ("config: data.path must not contain control characters (newline, tab, escape); "
                       "got 'a\\nb\\x1b[31m'")


@pytest.mark.parametrize("value", ["true", "false", "4.0"])
def test_embed_views_takes_whole_numbers_only(tmp_path, value):
    """A strict literal still matched true as 1 and 4.0 as 4: `form.embed_views = true` made one view."""
    assert error_of(tmp_path, f"[form]\nembed_views = {value}\n").startswith(
        "config: form.embed_views must be one of 0 (auto), 1, 2, 4 or 8, a whole number, got ")


def test_files_settings_name_are_saved_absolute(tmp_path, monkeypatch):
    """data.catalogue, form.weights and study.weights given relative were saved so in the run's
    config.toml, and a later command run from another folder read another file, or none (the
    survey itself, data.path, is saved as typed and read as the survey the run read)."""
    from morphospace.config import Config, apply_overrides, dumps_config, load_config

    monkeypatch.chdir(tmp_path)
    cfg = apply_overrides(Config(), ["data.catalogue=cat.csv", "form.weights=~/w.pt", "study.weights=sub/s.pt",
                                     "data.path=survey"])
    assert cfg.data.catalogue == str(tmp_path / "cat.csv") and cfg.study.weights == str(tmp_path / "sub" / "s.pt")
    assert cfg.form.weights == os.path.expanduser("~/w.pt") and cfg.data.path == "survey"
    (tmp_path / "config.toml").write_text(dumps_config(cfg))
    monkeypatch.chdir(tmp_path.parent)
    again = load_config(tmp_path / "config.toml")
    assert (again.data.catalogue, again.form.weights, again.study.weights) == (
        cfg.data.catalogue, cfg.form.weights, cfg.study.weights)
    assert Config().data.catalogue == ""  # none given: none


def test_names_of_bytes_that_are_not_utf8_are_one_line(tmp_path, capsys):
    """A survey folder or a --set text of bytes that are not UTF-8 (Python keeps them as surrogates)
    ended in a traceback writing config.toml, exit 1, a half-made run left behind."""
    import os

    from fixtures import galaxy_rgb, save_image
    from morphospace.cli import main

    for i in range(3):
        save_image(tmp_path / "data" / f"g{i}.png", galaxy_rgb(48, seed=i))
    odd = os.fsdecode(bytes(tmp_path) + b"/\xffsurvey")
    os.symlink(tmp_path / "data", odd)
    for args in (["ingest", odd], ["ingest", str(tmp_path / "data"), "--set", "data.truth_label=" + os.fsdecode(b"\xff")]):
        out = tmp_path / "run"
        code = main([*args, "--out", str(out), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "must be UTF-8 text" in err and "\n" not in err and not out.exists(), err


def test_rules_across_keys(tmp_path):
    assert error_of(tmp_path, "[model]\nk_min = 13\n") == "config: model.k_min (13) must not exceed model.k_max (12)"
    for model in ("preset = 'default'", "preset = 'form'\n[form]\ncore = 'mlp'"):
        assert error_of(tmp_path, f"[model]\n{model}\n[train]\nepochs = 8\n") == \
            "config: train.epochs (8) must exceed train.pretrain_epochs (8)"
    # PCA has no pretraining phase, nor the form model's linear core (the default; `--epochs 5` was refused)
    assert load_text(tmp_path, "[model]\nkind = 'pca'\n[train]\nepochs = 8\n").train.epochs == 8
    assert load_text(tmp_path, "[train]\nepochs = 5\n").train.epochs == 5


def test_lightning_settings_are_checked_when_the_config_loads(tmp_path):
    # a typo reached Lightning only inside the training, after the settings were saved and the model cleared
    assert error_of(tmp_path, "[train]\nprecision = 'bogus'\n").startswith(
        "config: train.precision must be one of 16, 16-mixed, ")
    assert error_of(tmp_path, "[train]\nstrategy = 'dpp'\n").startswith("config: train.strategy must be one of auto, ddp")
    assert error_of(tmp_path, "[train]\naccelerator = 'gpuu'\n") == \
        "config: train.accelerator must be one of auto, cpu, cuda, gpu, mps, tpu, got 'gpuu'"
    cfg = load_text(tmp_path, "[train]\naccelerator = 'gpu'\nstrategy = 'ddp_spawn'\nprecision = 'bf16-mixed'\n")
    assert (cfg.train.accelerator, cfg.train.strategy, cfg.train.precision) == ("gpu", "ddp_spawn", "bf16-mixed")


def test_several_problems_report_the_first_and_count_the_rest(tmp_path):
    message = error_of(tmp_path, "[train]\nepochs = 'x'\nlr = nan\nbatch_size = 0\n")
    assert message == "config: train.epochs must be int; got str 'x' (and 2 more problems)"


def test_overrides_parse_values_and_validate():
    cfg = apply_overrides(Config(), ["preprocess.size=128", "data.path=/x/y", "cluster.kmeans_k=[3,4]"])
    assert cfg.preprocess.size == 128
    assert cfg.data.path == "/x/y"
    assert cfg.cluster.kmeans_k == [3, 4]
    with pytest.raises(UserError, match="unknown key 'preprocess.nope'"):
        apply_overrides(cfg, ["preprocess.nope=1"])
    with pytest.raises(UserError, match="must be int"):
        apply_overrides(cfg, ["preprocess.size=big"])


def test_a_notebook_s_numpy_values_are_taken_as_python_s():
    import numpy as np

    cfg = apply_overrides(Config(), {"model.k_max": np.int64(8), "train.lr": np.float32(0.5),
                                     "cluster.kmeans_k": np.arange(3, 6), "model.canonicalise": np.bool_(False)})
    assert (cfg.model.k_max, cfg.train.lr, cfg.cluster.kmeans_k, cfg.model.canonicalise) == (8, 0.5, [3, 4, 5], False)
    assert type(cfg.model.k_max) is int and all(type(k) is int for k in cfg.cluster.kmeans_k)
    assert tomllib.loads(dumps_config(cfg))["model"]["k_max"] == 8
    # still judged by the configuration: a fraction is no int, a bool no number
    with pytest.raises(UserError, match="model.k_max must be int"):
        apply_overrides(Config(), {"model.k_max": np.float64(8.5)})
    with pytest.raises(UserError, match="model.k_max"):
        apply_overrides(Config(), {"model.k_max": np.bool_(True)})
    # inside lists and arrays of objects too; a time is no number of epochs (its .tolist() is an int)
    kept = apply_overrides(Config(), {"cluster.kmeans_k": np.array([np.int64(3), np.int64(4)], dtype=object)})
    assert kept.cluster.kmeans_k == [3, 4]
    for when in (np.datetime64(5, "ns"), np.timedelta64(5, "ns")):
        with pytest.raises(UserError, match="train.epochs must be int"):
            apply_overrides(Config(), {"train.epochs": when})


def test_override_values_are_read_as_toml():
    cfg = apply_overrides(Config(), [
        "train.epochs=20",                 # int
        "train.lr = 3e-4",                 # float (spaces around '=' allowed)
        "model.canonicalise=false",        # bool
        "study.labels=Class*",             # not TOML: the text itself
        "data.catalogue='my file.csv'",    # a quoted TOML string
        "cluster.methods=['kmeans', 'gmm']",
        "cluster.gmm_k=[2, 3]",            # lists
        "report.inline_limit_mb=2",        # an int for a float key
        "form.precision=32",               # a key that holds text keeps the text as written
        "train.precision=16-mixed",
    ])
    assert (cfg.train.epochs, cfg.train.lr, cfg.model.canonicalise) == (20, 3e-4, False)
    assert (cfg.study.labels, cfg.data.catalogue) == ("Class*", os.path.abspath("my file.csv"))  # a file: absolute
    assert cfg.cluster.methods == ["kmeans", "gmm"] and cfg.cluster.gmm_k == [2, 3]
    assert cfg.report.inline_limit_mb == 2.0 and isinstance(cfg.report.inline_limit_mb, float)
    assert (cfg.form.precision, cfg.train.precision) == ("32", "16-mixed")
    # the input is left alone; later overrides of a key win; validation happens once, at the end
    assert Config().train.epochs == 16
    assert apply_overrides(Config(), ["train.epochs=30", "train.epochs=40"]).train.epochs == 40
    both = apply_overrides(Config(), ["train.epochs=3", "train.pretrain_epochs=1"])
    assert (both.train.epochs, both.train.pretrain_epochs) == (3, 1)


def test_override_errors_are_one_line():
    cases = {
        "model.preset=fomr": "config: model.preset must be one of 'form', 'default', 'astrovader'; got 'fomr'",
        "model.latent_dim=0": "config: model.latent_dim must be in [1, 1024]; got 0",
        "train.lr=nan": "config: train.lr must be a finite number; got nan",
        "model.canonicalise=yes": "config: model.canonicalise must be true or false; got str 'yes'",
        "modle.kind=pca": "config: unknown key 'modle' (did you mean 'model'?",
        "ingest.workerz=2": "config: unknown key 'ingest.workerz' (did you mean 'ingest.workers'?",
        # a setting outside its section: it suggested the section named most like it ('preprocess')
        "epochs=3": "config: unknown key 'epochs' (did you mean 'train.epochs' or 'study.epochs'? settings go in",
        "data.smooth=0.5": "config: unknown key 'data.smooth' (did you mean 'data.vote_thresholds.smooth'?",
        "train.epochs": "--set expects section.key=value, got 'train.epochs'",
        # a second TOML line in the value: it was dropped without a word (3 epochs, study.epochs untouched)
        "train.epochs=3\nstudy.epochs = 4": "config: train.epochs must be int; got str",
    }
    for override, message in cases.items():
        with pytest.raises(ConfigError) as info:
            apply_overrides(Config(), [override])
        assert str(info.value).startswith(message), (override, str(info.value))
        assert "\n" not in str(info.value)
    # dict overrides (the command line's typed options) are used as they are: no parsing
    assert apply_overrides(Config(), {"data.path": "42"}).data.path == "42"
    with pytest.raises(ConfigError, match="train.epochs must be int; got str '4'"):
        apply_overrides(Config(), {"train.epochs": "4"})


def test_nested_table_round_trip(tmp_path):
    cfg = apply_overrides(Config(), {"data.vote_thresholds.smooth": 0.8, "model.kind": "pca"})
    p = tmp_path / "resolved.toml"
    p.write_text(dumps_config(cfg))
    again = load_config(p)
    assert again == cfg
    assert again.data.vote_thresholds.smooth == 0.8


def test_round_trip_of_every_kind_of_value(tmp_path):
    cfg = apply_overrides(Config(), {
        "data.path": "dir with spaces/\u00e9\u00e8 \"quoted\" \\ back", "data.label_columns": ["a", "b c"],
        "data.vote_thresholds.merger": 0.25, "preprocess.crop": 0.45, "model.widths": [8, 16],
        "model.min_weight": 1e-9, "train.lr": 1.5e-12, "train.epochs": 1_000_000, "form.core": "mlp",
        "cluster.gmm_k": [], "cluster.n_jobs": -1, "ingest.strict": True, "report.inline_limit_mb": 0.0,
    })
    path = dump_config(cfg, tmp_path / "config.toml")
    again = load_config(path)
    assert again == cfg and to_dict(again) == to_dict(cfg)
    assert dumps_config(again) == path.read_text(encoding="utf-8")  # a fixed point
    assert tomllib.loads(path.read_text(encoding="utf-8")) == to_dict(cfg)
    assert config_from_dict(to_dict(cfg)) == cfg


def _previous_dumps(table: dict) -> str:
    """TOML as the hand-written writer of the previous version wrote it (kept here verbatim)."""
    def value_text(value):
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return repr(value)
        if isinstance(value, str):
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            return f'"{escaped}"'
        return "[" + ", ".join(value_text(v) for v in value) + "]"

    lines: list[str] = []

    def emit(node: dict, name: str) -> None:
        if name:
            lines.append(f"[{name}]")
        for k, v in node.items():
            if not isinstance(v, dict):
                lines.append(f"{k} = {value_text(v)}")
        lines.append("")
        for k, v in node.items():
            if isinstance(v, dict):
                emit(v, f"{name}.{k}" if name else k)

    emit(table, "")
    return "\n".join(lines).strip() + "\n"


def test_config_toml_of_the_previous_version_still_loads(tmp_path):
    # a run directory's config.toml from before form.core existed: every other key, old writer
    table = to_dict(apply_overrides(Config(), {"data.path": "C:\\surveys\\gz1", "train.epochs": 30,
                                               "cluster.kmeans_k": [3, 5], "data.vote_thresholds.smooth": 0.7}))
    del table["form"]["core"]
    old = tmp_path / "run" / "config.toml"
    old.parent.mkdir()
    old.write_text(_previous_dumps(table))
    assert old.read_text().startswith('[data]\npath = "C:\\\\surveys\\\\gz1"\nlayout = "auto"\n')
    cfg = load_config(old)
    assert cfg.data.path == "C:\\surveys\\gz1" and cfg.train.epochs == 30 and cfg.cluster.kmeans_k == [3, 5]
    assert cfg.data.vote_thresholds.smooth == 0.7
    assert cfg.form.core == "linear"  # a key the file predates takes its default
    assert to_dict(cfg) == {**table, "form": {**table["form"], "core": "linear"}}
    # and the defaults as the previous version wrote them
    old.write_text(_previous_dumps({**to_dict(Config()), "form": {k: v for k, v in to_dict(FormConfig()).items()
                                                                    if k != "core"}}))
    assert load_config(old) == Config()


def test_form_core_key():
    assert Config().form.core == "linear"
    assert apply_overrides(Config(), ["form.core=mlp"]).form.core == "mlp"
    with pytest.raises(ConfigError, match=r"^config: form\.core must be one of 'linear', 'mlp'; got 'transformer'$"):
        apply_overrides(Config(), ["form.core=transformer"])


def test_sections_check_construction_and_assignment():
    cfg = Config()
    cfg.train.epochs = 20
    assert cfg.train.epochs == 20
    with pytest.raises(ConfigError, match=r"^config: train\.epochs must be in \[1, 1000000\]; got 0$"):
        cfg.train.epochs = 0
    with pytest.raises(ConfigError, match=r"^config: unknown key 'train\.epochz' \(did you mean 'train\.epochs'\?"):
        cfg.train.epochz = 3
    with pytest.raises(ConfigError, match=r"^config: cluster\.kmeans_k\[0\] must be int; got str '3'$"):
        cfg.cluster.kmeans_k = ["3"]
    assert cfg.train.epochs == 20 and cfg.cluster.kmeans_k == [3, 4, 5, 6, 7, 8]  # unchanged by the failures
    with pytest.raises(ConfigError, match=r"^config: preprocess\.size must be in \[16, 1024\]; got 4$"):
        PreprocessConfig(size=4)
    with pytest.raises(ConfigError, match=r"^config: train\.epochs \(4\) must exceed"):
        Config(model={"preset": "default"}, train={"epochs": 4})
    assert Config(train={"epochs": 40}).train.epochs == 40
    # list defaults are not shared between instances
    cfg.cluster.kmeans_k.append(9)
    assert Config().cluster.kmeans_k == [3, 4, 5, 6, 7, 8]


def test_command_line_prints_one_line_and_exits_2(tmp_path, capsys):
    from morphospace.cli import main

    run = tmp_path / "run"
    assert main(["ingest", str(tmp_path), "--out", str(run), "--quiet", "--set", "model.preset=fomr"]) == 2
    err = capsys.readouterr().err
    assert err == ("morphospace: error: config: model.preset must be one of 'form', 'default', 'astrovader'; "
                   "got 'fomr'\n")
    assert not (run / "config.toml").exists()


def test_loader_workers_auto_reads_from_the_main_process_on_a_cpu_and_feeds_an_accelerator(tmp_path, monkeypatch):
    """On an H200 the trunk embedded 3,028 images/s read by the main process and 11,064 with 8
    loader processes: `auto` (the default) gives an accelerator's devices the node's cores less
    one each, 8 at most, and the CPU none (its cores compute); a number is taken as it is."""
    from morphospace.config import Config, apply_overrides

    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert Config().train.loader_workers == "auto" and Config().train.loader_processes() == 0
    on = lambda **kw: apply_overrides(Config(), {f"train.{k}": v for k, v in kw.items()}).train.loader_processes()  # noqa: E731
    assert on(accelerator="gpu") == 8 and on(accelerator="cuda", devices=4) == 3 and on(accelerator="gpu", devices=16) == 0
    assert on(accelerator="gpu", loader_workers=2) == 2 and on(loader_workers=3) == 3
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert on(accelerator="auto") == 0
    assert load_text(tmp_path, '[train]\nloader_workers = "auto"\n').train.loader_processes() == 0
    assert "loader_workers" in error_of(tmp_path, '[train]\nloader_workers = "many"\n')


def test_an_inline_table_in_set_is_refused_not_a_reset_of_the_table():
    """`--set "train={epochs=3}"` replaced the whole [train] table: its learning rate and the rest went
    back to their defaults without a word (so did `data.vote_thresholds={smooth=0.7}` to spiral's)."""
    cfg = apply_overrides(Config(), ["train.lr=0.005", "data.vote_thresholds.spiral=0.8"])
    for text, table in (("train={epochs=3}", "train"), ("data.vote_thresholds={smooth=0.7}", "data.vote_thresholds")):
        with pytest.raises(ConfigError, match=rf"sets the whole table {re.escape(table)}, which would set its other "
                                              rf"keys back to their defaults: give its keys one by one"):
            apply_overrides(cfg, [text])
    kept = apply_overrides(cfg, ["train.epochs=3", "data.vote_thresholds.smooth=0.7"])
    assert (kept.train.lr, kept.train.epochs) == (0.005, 3)
    assert kept.data.vote_thresholds.spiral == 0.8 and kept.data.vote_thresholds.smooth == 0.7
