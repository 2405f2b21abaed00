import copy

import pytest

from mmrag.common.errors import UnknownNameError
import yaml
from omegaconf import OmegaConf

import mmrag  # noqa: F401
from mmrag.common.config import ConfigError, build_config, last_saved_config, save_config


def _write(tmp_path, cfg, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _experiment(tiny_model_cfg, **run):
    return {"model": copy.deepcopy(tiny_model_cfg), "datasets": {"llava_instruct": {"data_path": "x.json", "image_root": "."}},
            "run": {"task": "instruction_tuning", **run}}


def test_merge_order_default_then_file_then_override(tmp_path, tiny_model_cfg):
    path = _write(tmp_path, _experiment(tiny_model_cfg, init_lr=0.5, batch_size=4))
    cfg = build_config(path, ["run.batch_size=2"])
    assert cfg.run.weight_decay == 0.05          # class default
    assert cfg.run.init_lr == 0.5                # experiment file
    assert cfg.run.batch_size == 2               # command line wins
    assert cfg.model.lora.r == 4 and cfg.model.lora.target_modules == ["q_proj", "v_proj"]
    assert cfg.model.vision_tower.select_feature == "patch"  # tower-type default
    assert cfg.datasets.llava_instruct.missing_images == "skip"


def test_cli_accepts_options_and_bare_overrides(tmp_path, tiny_model_cfg):
    from mmrag.common.cli import parse_args

    args = parse_args("x", tmp_path / "d.yaml", ["--cfg-path", "a.yaml", "run.seed=3", "--options", "run.amp=bf16"])
    assert args.cfg_path == "a.yaml" and sorted(args.options) == ["run.amp=bf16", "run.seed=3"]


def test_unknown_key_names_file_line_and_closest(tmp_path, tiny_model_cfg):
    exp = _experiment(tiny_model_cfg)
    exp["run"]["init_lrr"] = 0.1
    path = _write(tmp_path, exp)
    with pytest.raises(ConfigError) as err:
        build_config(path)
    message = str(err.value)
    line = path.read_text().splitlines().index("  init_lrr: 0.1") + 1
    assert f"{path}:{line}" in message and "'run.init_lrr'" in message and "'init_lr'" in message


def test_unknown_nested_key_and_override_key(tmp_path, tiny_model_cfg):
    path = _write(tmp_path, _experiment(tiny_model_cfg))
    with pytest.raises(ConfigError, match=r"command line.*'model.lora.rank'.*closest valid key: 'r'"):
        build_config(path, ["model.lora.rank=4"])


def test_wrong_type_is_an_error(tmp_path, tiny_model_cfg):
    path = _write(tmp_path, _experiment(tiny_model_cfg, batch_size="eight"))
    with pytest.raises(ConfigError, match=r"'run.batch_size' should be int"):
        build_config(path)
    path = _write(tmp_path, _experiment(tiny_model_cfg, init_lr=1))  # an int where a float is expected is fine
    assert build_config(path).run.init_lr == 1


def test_unknown_registry_names_fail_before_building(tmp_path, tiny_model_cfg):
    exp = _experiment(tiny_model_cfg)
    exp["model"]["arch"] = "mm_lm"
    with pytest.raises(UnknownNameError, match="did you mean 'mm_llm'"):
        build_config(_write(tmp_path, exp))
    exp = _experiment(tiny_model_cfg)
    exp["model"]["vision_tower"]["type"] = "hf_clap"
    with pytest.raises(UnknownNameError, match="hf_clip"):
        build_config(_write(tmp_path, exp))


def test_unknown_section_and_missing_file(tmp_path, tiny_model_cfg):
    exp = _experiment(tiny_model_cfg)
    exp["runn"] = {}
    with pytest.raises(ConfigError, match="'runn'.*closest valid key: 'run'"):
        build_config(_write(tmp_path, exp))
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(tmp_path / "nope.yaml")


def test_saved_config_roundtrips_and_never_overwrites(tmp_path, tiny_model_cfg):
    cfg = build_config(_write(tmp_path, _experiment(tiny_model_cfg)))
    first = save_config(cfg, tmp_path / "out")
    second = save_config(cfg, tmp_path / "out")
    assert first.name == "config.yaml" and second.name == "config.1.yaml"
    assert OmegaConf.load(first) == cfg
    assert last_saved_config(tmp_path / "out") == second and last_saved_config(tmp_path / "none") is None


def test_base_file_is_merged_under_the_experiment(tmp_path, tiny_model_cfg):
    _write(tmp_path, _experiment(tiny_model_cfg, init_lr=0.5, batch_size=4), "train.yaml")
    path = _write(tmp_path, {"base": "train.yaml", "run": {"batch_size": 2}}, "eval.yaml")
    cfg = build_config(path)
    assert cfg.run.init_lr == 0.5 and cfg.run.batch_size == 2 and "base" not in cfg
    bad = _write(tmp_path, {"base": "train.yaml", "run": {"batch_sise": 2}}, "bad.yaml")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: unknown config key 'run.batch_sise'"):
        build_config(bad)


def test_a_null_dataset_drops_the_base_files_dataset(tmp_path, tiny_model_cfg):
    base = _experiment(tiny_model_cfg)
    base["datasets"]["extra"] = {"builder": "llava_instruct", "data_path": "y.json", "image_root": "."}
    _write(tmp_path, base, "base.yaml")
    path = _write(tmp_path, {"base": "base.yaml", "datasets": {"extra": None}}, "child.yaml")
    assert list(build_config(path).datasets) == ["llava_instruct"]
    assert list(build_config(tmp_path / "base.yaml").datasets) == ["llava_instruct", "extra"]


def test_yaml_boolean_word_for_a_string_key_says_to_quote_it(tmp_path, tiny_model_cfg):
    """`run.amp=no` reaches the config as the boolean False (YAML 1.1); the error says how to pass the word."""
    path = _write(tmp_path, _experiment(tiny_model_cfg))
    with pytest.raises(ConfigError, match=r"'run.amp' should be str.*got bool False.*quote the word") as err:
        build_config(path, ["run.amp=no"])
    assert "\n" not in str(err.value)
    assert build_config(path, ["run.amp='no'"]).run.amp == "no"
