"""Configuration of the command-line data tools, validated like the experiment configs.

Each tool registers its defaults once (`register_tool`). Its config is
defaults <- YAML file (`--cfg`) <- `key=value` overrides <- simple `--flags`; an unknown key fails
naming the file and line (or "command line") and the closest valid key, a value of another type
fails naming the expected type, and allowed values (`choices`) and required keys are checked here,
before the tool does any work.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from mmrag.common.config import check_against_defaults, parse_overrides
from mmrag.common.errors import ConfigError
from mmrag.common.registry import Registry

TOOL_CONFIGS = Registry("tool config")


@dataclass
class ToolSpec:
    defaults: Dict[str, Any]
    choices: Dict[str, Sequence[Any]] = field(default_factory=dict)   # dotted key -> allowed values
    required: Sequence[str] = ()                                       # dotted keys that must be set
    open_keys: Sequence[str] = ()                                      # dotted keys whose mapping takes any keys


def register_tool(name: str, defaults: Dict[str, Any], choices: Optional[Mapping[str, Sequence[Any]]] = None,
                  required: Sequence[str] = (), open_keys: Sequence[str] = ()) -> Dict[str, Any]:
    """Register a tool's defaults (once per name); returns `defaults` for use at module level."""
    TOOL_CONFIGS.register(name)(ToolSpec(defaults, dict(choices or {}), tuple(required), tuple(open_keys)))
    return defaults


def _get(cfg: Mapping[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def _set(cfg: Dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        cfg = cfg[part]
    cfg[leaf] = value


def _schema(spec: ToolSpec) -> Dict[str, Any]:
    """The defaults with every open mapping emptied (an empty default mapping accepts any keys)."""
    schema = copy.deepcopy(spec.defaults)
    for key in spec.open_keys:
        _set(schema, key, {})
    return schema


def _load_file(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # yaml errors carry the line; keep their message
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: expected a mapping of config keys, got a {type(cfg).__name__}")
    return cfg


def load_tool_config(name: str, cfg_file: Optional[str | Path] = None, overrides: Sequence[str] = (),
                     flags: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The validated plain config of tool `name` (see the module doc for the order of sources).

    `flags` maps dotted keys to values given by `--flags`; entries whose value is None were not given.
    """
    spec: ToolSpec = TOOL_CONFIGS.get(name)
    schema = _schema(spec)
    layers = []
    if cfg_file:
        file_cfg = _load_file(Path(cfg_file))
        check_against_defaults(file_cfg, schema, "", Path(cfg_file))
        layers.append(file_cfg)
    override = parse_overrides(overrides)
    check_against_defaults(override, schema, "", None)
    layers.append(override)
    merged = OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(spec.defaults), *layers), resolve=True)
    for key, value in (flags or {}).items():
        if value is not None:
            _set(merged, key, value)
    _check_values(name, spec, merged)
    return merged


def _check_values(name: str, spec: ToolSpec, cfg: Dict[str, Any]) -> None:
    for key, allowed in spec.choices.items():
        value = _get(cfg, key)
        if value not in allowed:
            raise ConfigError(f"{name}: config key '{key}' = {value!r}; expected one of {', '.join(map(str, allowed))}")
    for key in spec.required:
        if _get(cfg, key) in (None, ""):
            raise ConfigError(f"{name}: config key '{key}' is required")
