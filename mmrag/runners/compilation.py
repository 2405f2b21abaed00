"""torch.compile for the multimodal LLM's training forward: which modules, how, and undoing it.

One implementation for the runner (`run.compile`) and the training-step benchmarks. Modules are
compiled in place (`nn.Module.compile`), so parameter names, state dicts, checkpoints and peft's
adapter saving are unchanged. The model's forward does host-side work around the networks (the
image-position check and the target positions are computed on the CPU batch, `masked_scatter` of the
visual tokens, the loss at target positions), so no scope compiles `forward` itself; the scopes are:

  none    eager.
  layers  every LLM decoder layer on its own (one graph, reused by all layers of the same shape).
  llm     the LLM's decoder stack (embeddings -> layers -> final norm; rotary, RMSNorm, LoRA and the
          residual adds of all layers in one graph).
  model   `llm` plus the image encoder (the region-prefix encoder with the vision tower it runs, or
          the plain vision tower) and the projector, each its own graph.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from torch import nn

from mmrag.models.llm import base_causal_lm
from mmrag.common.errors import ConfigError

COMPILE_SCOPES = ("none", "layers", "llm", "model")
# "max-autotune" also exists; it is max-autotune-no-cudagraphs + CUDA graphs
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune")


class CompileOptionError(ConfigError):
    """An unknown compile scope, mode or inductor flag."""


def causal_lm(model: nn.Module) -> nn.Module:
    """The multimodal model's causal LM without the peft wrapper."""
    return base_causal_lm(model.llm)


def decoder_stack(model: nn.Module) -> nn.Module:
    """The LLM's decoder (HF `get_decoder()`: embeddings, layers, final norm), what the forward calls."""
    return causal_lm(model).get_decoder()


def image_encoder(model: nn.Module) -> nn.Module:
    """The module that turns pixels into visual features: the region-prefix encoder when present."""
    return model.region_prefix if getattr(model, "region_prefix", None) is not None else model.vision_tower


def modules_for_scope(model: nn.Module, scope: str) -> List[nn.Module]:
    """The modules `scope` compiles (see the module docstring), outermost first."""
    check_choice("compile scope", scope, COMPILE_SCOPES)
    if scope == "none":
        return []
    if scope == "layers":
        return list(decoder_stack(model).layers)
    if scope == "llm":
        return [decoder_stack(model)]
    return [decoder_stack(model), image_encoder(model), model.projector]


def check_choice(what: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise CompileOptionError(f"{what} {value!r} is not one of {', '.join(allowed)}")


def inductor_options(mode: str, flags: Sequence[str] = ()) -> Tuple[Optional[str], Optional[Dict[str, bool]]]:
    """(mode, options) for torch.compile, which refuses both at once: with extra boolean inductor
    flags (e.g. `coordinate_descent_tuning`) the mode's own options are merged under them."""
    check_choice("compile mode", mode, COMPILE_MODES)
    if not flags:
        return mode, None
    from torch._inductor import config, list_mode_options

    known = config.get_config_copy()
    for flag in flags:
        if not isinstance(known.get(flag), bool):
            raise CompileOptionError(f"inductor flag {flag!r} is not a boolean torch._inductor.config option")
    base = list_mode_options(mode) if mode != "default" else {}
    return None, {**base, **{flag: True for flag in flags}}


def uses_cudagraphs(mode: str, flags: Sequence[str] = ()) -> bool:
    """Whether compiled graphs replay as CUDA graphs (a training loop must then mark each step)."""
    return mode in ("reduce-overhead", "max-autotune") or "triton.cudagraphs" in flags


def compile_model(model: nn.Module, scope: str, mode: str = "default", flags: Sequence[str] = ()) -> List[str]:
    """Compile the modules of `scope` in place; returns their qualified names (empty for `none`).

    Compilation itself happens lazily, at the first forward (and the first backward)."""
    modules = modules_for_scope(model, scope)
    compile_mode, options = inductor_options(mode, flags)
    if modules:
        # The training forward never reads a KV cache, but HF's decoder builds one unless told not to
        # (config.use_cache), and passes it to every layer: dynamo then guards on each cache layer's
        # state and compiles every decoder layer anew, up to its recompile limit (8), then runs the
        # rest eagerly. MultimodalLLM.forward passes use_cache=False itself; this covers any other
        # caller of the compiled decoder. generate() passes use_cache=True, so generation keeps its cache.
        causal_lm(model).config.use_cache = False
    names = {id(m): name for name, m in model.named_modules()}
    for module in modules:
        module.compile(mode=compile_mode, options=options)
    return [names[id(m)] for m in modules]


def uncompile_model(model: nn.Module) -> int:
    """Undo `compile_model` (e.g. before generation, whose growing KV cache would recompile the
    decoder); returns how many modules were compiled."""
    undone = 0
    for module in model.modules():
        # nn.Module.compile stores the compiled call here; there is no public way to drop it
        if getattr(module, "_compiled_call_impl", None) is not None:
            module._compiled_call_impl = None
            undone += 1
    return undone


def compile_stats() -> Dict[str, int]:
    """Dynamo's counters since the last `torch._dynamo.utils.counters.clear()`: graphs compiled,
    graph breaks, and (reduce-overhead) graphs that skipped CUDA graphs."""
    from torch._dynamo.utils import counters

    return {"unique_graphs": int(counters["stats"].get("unique_graphs", 0)),
            "graph_breaks": int(sum(counters["graph_break"].values())),
            "cudagraph_skips": int(counters["inductor"].get("cudagraph_skips", 0))}

