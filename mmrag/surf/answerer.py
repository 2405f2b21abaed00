"""The model seen by data construction and RAG inference: anything with `answer(batch) -> answers`.

A request is {"prompt": str, "images": [path, ...], "system": str (optional)} where `prompt` is the
human turn with one `<image>` per image, in order (or {"conversation": ...} for a full LLaVA turn
list). The real multimodal LLM plugs in through `load_answerer("package.module:factory", **kwargs)`.
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, List, Protocol, Sequence, runtime_checkable

AnswerRequest = Dict[str, Any]


@runtime_checkable
class Answerer(Protocol):
    def answer(self, batch: Sequence[AnswerRequest]) -> List[str]:
        """One answer string per request, in order."""
        ...


def load_answerer(target: str, **kwargs: Any) -> Answerer:
    """Import `module:callable` and call it with kwargs; the result must have an `answer` method."""
    if ":" not in target:
        raise ValueError(f"answerer target {target!r}: expected 'package.module:factory'")
    module_name, attr = target.split(":", 1)
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"answerer target {target!r} cannot be imported: {err}") from err
    answerer = factory(**kwargs)
    if not isinstance(answerer, Answerer):
        raise ValueError(f"answerer target {target!r} returned {type(answerer).__name__}, which has no answer(batch) method")
    return answerer
