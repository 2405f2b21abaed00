"""mmrag-run-lrv's argument handling: backend key=value pairs and their errors."""
import pytest

from mmrag.cli.run_lrv import backend_config, parse_args
from mmrag.common.errors import ConfigError


def test_backend_pairs_are_parsed_with_numbers():
    assert backend_config(["type=openai", "url=http://127.0.0.1:8000/v1", "concurrency=4", "timeout_s=2.5"]) == \
        {"type": "openai", "url": "http://127.0.0.1:8000/v1", "concurrency": 4, "timeout_s": 2.5}
    with pytest.raises(ConfigError, match="--backend 'type'"):
        backend_config(["type"])


def test_defaults_and_generator_choice():
    args = parse_args([])
    assert args.generator == "oracle" and args.world == "dataset/world_small" and args.lrv_max == 1200
    with pytest.raises(SystemExit):
        parse_args(["--generator", "gpt"])
