"""The thin CLIs: flags, key=value overrides and YAML files reach the validated tool config; an
unknown key is refused naming where it came from and the closest valid key."""
from __future__ import annotations

import pytest

from mmrag.cli import run_default, run_surf
from mmrag.cli._args import tool_config, tool_parser
from mmrag.common.errors import ConfigError
from mmrag.common.tool_config import load_tool_config
from mmrag.pipelines import prepare  # noqa: F401  (registers the data tools' defaults)


def test_run_default_and_run_surf_arguments():
    args = run_default.parse_args(["--quick", "--out", "/tmp/x", "--force", "world", "train_gemkr"])
    assert (args.quick, args.out, args.force, args.setting, args.no_ablations) == (True, "/tmp/x", ["world", "train_gemkr"], "default", False)
    opt = run_surf.options(run_surf.parse_args(["--pope-max", "400", "--surf-k", "3"]))
    assert (opt.pope_max, opt.surf_k, opt.vqa_max, opt.clip_steps) == (400, 3, 600, 200)
    assert run_surf.parse_args(["--only", "report"]).only == ["report"]


def build_index_cfg(argv):
    parser = tool_parser("x")
    parser.add_argument("--out")
    parser.add_argument("--shards", type=int)
    parser.add_argument("--no-text", action="store_const", const=False, dest="store_text")
    return tool_config("build_index", parser, argv, {"out": "out", "shards": "shards", "store_text": "store_text"})


def test_flags_and_overrides_mix(tmp_path):
    cfg = build_index_cfg(["workers=3", "--out", "idx", "--no-text", "batch_size=8"])
    assert (cfg["out"], cfg["workers"], cfg["batch_size"], cfg["store_text"], cfg["shards"]) == ("idx", 3, 8, False, 1)
    yaml = tmp_path / "b.yaml"
    yaml.write_text("out: from_file\nshards: 4\n")
    cfg = build_index_cfg(["--cfg", str(yaml), "--out", "flag_wins"])
    assert (cfg["out"], cfg["shards"]) == ("flag_wins", 4)


def test_unknown_keys_name_the_source_and_closest_key(tmp_path):
    with pytest.raises(ConfigError, match=r"command line: unknown config key 'worker'; closest valid key: 'workers'"):
        build_index_cfg(["--out", "x", "worker=2"])
    yaml = tmp_path / "b.yaml"
    yaml.write_text("out: x\nbatchsize: 4\n")
    with pytest.raises(ConfigError, match=rf"{yaml}:2: unknown config key 'batchsize'; closest valid key: 'batch_size'"):
        build_index_cfg(["--cfg", str(yaml)])
    with pytest.raises(ConfigError, match="should be int"):
        build_index_cfg(["--out", "x", "workers=many"])


def test_allowed_values_and_required_keys():
    with pytest.raises(ConfigError, match="'size' = 'huge'; expected one of large, tiny"):
        load_tool_config("make_tiny_backbones", overrides=["size=huge"])
    with pytest.raises(ConfigError, match="'out' is required"):
        load_tool_config("build_index")
