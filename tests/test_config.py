"""The TOML configuration: validation, overrides, round trip."""

import pytest

from morphospace.config import Config, apply_overrides, dumps_config, load_config
from morphospace.errors import UserError


def test_defaults_load_without_a_file():
    cfg = load_config(None)
    assert cfg.preprocess.size == 64
    assert cfg.data.path == ""


def test_unknown_key_names_the_key(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[preprocess]\nsise = 64\n")
    with pytest.raises(UserError, match=r"unknown key 'preprocess\.sise'"):
        load_config(p)


def test_unknown_section_is_an_error(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[modle]\nkind = 'vade'\n")
    with pytest.raises(UserError, match="unknown key 'modle'"):
        load_config(p)


def test_wrong_type_names_the_key(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[train]\nepochs = 'ten'\n")
    with pytest.raises(UserError, match=r"train\.epochs must be int"):
        load_config(p)


def test_bool_is_not_an_int(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[train]\nepochs = true\n")
    with pytest.raises(UserError, match=r"train\.epochs"):
        load_config(p)


def test_list_items_are_checked(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[cluster]\nkmeans_k = [3, 'x']\n")
    with pytest.raises(UserError, match=r"cluster\.kmeans_k\[1\]"):
        load_config(p)


def test_int_accepted_for_float(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[preprocess]\ncrop = 1\n")
    assert load_config(p).preprocess.crop == 1.0


def test_invalid_toml_is_one_line(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[train\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_config(p)


def test_overrides_parse_values_and_validate():
    cfg = apply_overrides(Config(), ["preprocess.size=128", "data.path=/x/y", "cluster.kmeans_k=[3,4]"])
    assert cfg.preprocess.size == 128
    assert cfg.data.path == "/x/y"
    assert cfg.cluster.kmeans_k == [3, 4]
    with pytest.raises(UserError, match="unknown key 'preprocess.nope'"):
        apply_overrides(cfg, ["preprocess.nope=1"])
    with pytest.raises(UserError, match="must be int"):
        apply_overrides(cfg, ["preprocess.size=big"])


def test_nested_table_round_trip(tmp_path):
    cfg = apply_overrides(Config(), {"data.vote_thresholds.smooth": 0.8, "model.kind": "pca"})
    p = tmp_path / "resolved.toml"
    p.write_text(dumps_config(cfg))
    again = load_config(p)
    assert again == cfg
    assert again.data.vote_thresholds.smooth == 0.8
