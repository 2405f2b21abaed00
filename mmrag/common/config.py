"""Experiment configuration: class defaults <- experiment YAML <- command-line overrides, validated.

An experiment YAML has the sections `model:`, `datasets:`, `run:` and optionally `evaluation:`; it
may name a `base:` YAML (merged under it), and `datasets: {name: null}` drops a base file's dataset.
Every registered class declares its defaults (`default_config`); the experiment file may only set
keys that some default declares, with a value of the declared type. Errors name the file, the line,
the dotted key and the closest valid key, and are raised before anything is built.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

from mmrag.common.errors import ConfigError
from mmrag.common.registry import closest

SECTIONS = ("model", "datasets", "run", "evaluation")


# ----------------------------------------------------------------------------- loading
def parse_overrides(options: Sequence[str]) -> DictConfig:
    """`["run.lr=1e-4", "model.llm.path=/x"]` -> a DictConfig; a malformed item is an error."""
    bad = [o for o in options if "=" not in o or o.startswith("=")]
    if bad:
        raise ConfigError(f"command-line override {bad[0]!r} is not of the form a.b.c=value")
    return OmegaConf.from_dotlist(list(options))


def load_yaml(path: str | Path) -> DictConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # yaml.YAMLError carries the line; keep its message
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: expected a mapping with sections {SECTIONS}, got a {type(cfg).__name__}")
    unknown = [k for k in cfg.keys() if k not in SECTIONS + ("base",)]
    if unknown:
        raise ConfigError(_unknown_key_message(path, str(unknown[0]), SECTIONS, str(unknown[0])))
    return cfg


# ----------------------------------------------------------------------------- validation
def _line_of(path: Optional[Path], dotted: str) -> str:
    """Best-effort 'file:line' for a dotted key, found by walking its parts through the YAML text."""
    if path is None or not Path(path).is_file():
        return str(path) if path else "command line"
    lines = Path(path).read_text().splitlines()
    start = 0
    for part in dotted.split("."):
        pattern = re.compile(rf"^\s*{re.escape(part)}\s*:")
        for i in range(start, len(lines)):
            if pattern.match(lines[i]):
                start = i
                break
    return f"{path}:{start + 1}"


def _unknown_key_message(where: Any, dotted: str, valid: Iterable[str], leaf: str) -> str:
    valid = sorted(str(v) for v in valid)
    close = closest(leaf, valid)
    hint = f"; closest valid key: '{close}'" if close else ""
    return f"{where}: unknown config key '{dotted}'{hint} (valid here: {', '.join(valid)})"


def _type_ok(default: Any, value: Any) -> bool:
    if default is None or value is None:  # None means "unset": any type may replace it
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (list, ListConfig)):
        return isinstance(value, (list, ListConfig))
    if isinstance(default, (dict, DictConfig)):
        return isinstance(value, (dict, DictConfig))
    return True


def check_against_defaults(values: Any, defaults: Any, prefix: str, source: Optional[Path]) -> None:
    """Raise ConfigError if `values` holds a key absent from `defaults` or a value of another type.

    A default that is an empty mapping is open: it accepts any keys (e.g. a raw HF model config).
    """
    if not isinstance(values, (dict, DictConfig)):
        return
    if isinstance(defaults, (dict, DictConfig)) and len(defaults) == 0:
        return
    for key in values.keys():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in defaults:
            raise ConfigError(_unknown_key_message(_line_of(source, dotted), dotted, defaults.keys(), str(key)))
        default, value = defaults[key], values[key]
        if not _type_ok(default, value):
            raise ConfigError(
                f"{_line_of(source, dotted)}: config key '{dotted}' should be "
                f"{type(default).__name__} (default {default!r}), got {type(value).__name__} {value!r}"
                + (f" (YAML reads yes/no/on/off/true/false as booleans: quote the word, e.g. {dotted}=\"'no'\")"
                   if isinstance(default, str) and isinstance(value, bool) else "")
            )
        if isinstance(default, (dict, DictConfig)):
            check_against_defaults(value, default, dotted, source)


def plain(cfg: Any) -> Any:
    """A resolved plain-python copy of a DictConfig (or pass-through for plain values)."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


# ----------------------------------------------------------------------------- assembly
def collect_defaults(user: DictConfig) -> DictConfig:
    """The defaults of every class the experiment names: model arch, dataset builders, task, runner."""
    from mmrag.common.registry import DATASETS, MODELS, RUNNERS, TASKS

    model = user.get("model") or {}
    run = user.get("run") or {}
    if "arch" not in model:
        raise ConfigError(f"model.arch is required: one of {', '.join(MODELS.names())}")
    if "task" not in run:
        raise ConfigError(f"run.task is required: one of {', '.join(TASKS.names())}")
    task_cls = TASKS.get(run.task)
    runner_cls = RUNNERS.get(run.get("runner", "runner_base"))
    datasets = {}
    for name, ds in (user.get("datasets") or {}).items():
        if ds is None:  # dropped by the experiment
            continue
        builder = ds.get("builder", name)
        datasets[name] = DATASETS.get(builder).default_config(ds or {})
    task_defaults = task_cls.default_config(user)
    return OmegaConf.merge(
        {
            "model": MODELS.get(model.arch).default_config(model),
            "datasets": datasets,
            "run": OmegaConf.merge(runner_cls.default_config(), task_defaults.get("run", {})),
            "evaluation": task_defaults.get("evaluation", {}),
        }
    )


def config_chain(path: Path, seen: Sequence[Path] = ()) -> List[tuple]:
    """[(file, cfg), ...] from the outermost `base:` to `path` itself (an eval config names its train config)."""
    path = Path(path)
    if path.resolve() in seen:
        raise ConfigError(f"{path}: 'base' files form a cycle")
    cfg = load_yaml(path)
    chain = []
    if "base" in cfg:
        base = Path(cfg.base) if Path(cfg.base).is_absolute() else path.parent / cfg.base
        chain = config_chain(base, [*seen, path.resolve()])
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "base"])
    return chain + [(path, cfg)]


def build_config(cfg_path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """Load, merge and validate an experiment: defaults <- base YAMLs <- YAML <- overrides. Raises ConfigError."""
    chain = config_chain(Path(cfg_path))
    override = parse_overrides(overrides)
    user = OmegaConf.merge(*[cfg for _, cfg in chain], override)
    # `datasets: {name: null}` drops a dataset that a base file declares
    dropped = [n for n, v in (user.get("datasets") or {}).items() if v is None]
    defaults = collect_defaults(user)
    for name in dropped:
        defaults.datasets[name] = {}
    for source, cfg in chain:
        check_against_defaults(cfg, defaults, "", source)
    check_against_defaults(override, defaults, "", None)
    merged = OmegaConf.merge(defaults, *[cfg for _, cfg in chain], override)
    for name in dropped:
        del merged.datasets[name]
    OmegaConf.resolve(merged)
    return merged


def save_config(cfg: DictConfig, out_dir: str | Path) -> Path:
    """Write the fully merged config next to the run's outputs (never overwrites: numbered if present)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "config.yaml"
    n = 1
    while target.exists():
        target = out_dir / f"config.{n}.yaml"
        n += 1
    OmegaConf.save(cfg, target)
    return target


def last_saved_config(out_dir: str | Path) -> Optional[Path]:
    """The config save_config wrote last in `out_dir` (config.yaml, then config.1.yaml, config.2.yaml, ...);
    None when there is none."""
    numbered = {0 if p.name == "config.yaml" else int(p.name[len("config."):-len(".yaml")]): p
                for p in Path(out_dir).glob("config*.yaml") if re.fullmatch(r"config(\.\d+)?\.yaml", p.name)}
    return numbered[max(numbered)] if numbered else None
