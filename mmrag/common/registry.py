"""A small, explicit registry: classes register under a short name and lookups fail loudly.

Every pluggable piece of mmrag (models, vision towers, projectors, dataset builders, tasks,
runners, lr schedules, clue scorers, ...) lives in one `Registry` instance below. Packages fill
them by explicit import in `mmrag/__init__.py`; nothing is discovered by `import *`.
"""
from __future__ import annotations

import difflib
from typing import Callable, Dict, Iterable, Iterator, Optional, TypeVar

from mmrag.common.errors import UnknownNameError

T = TypeVar("T")


def closest(name: str, choices: Iterable[str]) -> Optional[str]:
    """The most similar choice: a close spelling, else one sharing the first letters, else None."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if close:
        return close[0]
    sharing = [c for c in choices if c and (name.startswith(c) or c.startswith(name[:3]))]
    return max(sharing, key=len) if sharing else None


class Registry:
    """Maps short snake_case names to classes or factory functions of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: Dict[str, object] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@MODELS.register("gemkr")`. A name may be registered once only."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(
                    f"{self.kind} '{name}' is already registered by {self._entries[name]!r}; "
                    f"pick another name for {obj!r}"
                )
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str):
        """Return the entry for `name`, or raise UnknownNameError naming the known entries and the closest one."""
        if name in self._entries:
            return self._entries[name]
        known = sorted(self._entries)
        close = closest(str(name), known)
        hint = f"; did you mean '{close}'?" if close else ""
        raise UnknownNameError(f"unknown {self.kind} '{name}'{hint} known: {', '.join(known) or '(none)'}")

    def names(self) -> list:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


MODELS = Registry("model")
VISION_TOWERS = Registry("vision tower")
PROJECTORS = Registry("projector")
CONTEXT_MODULES = Registry("context module")
LLMS = Registry("llm")
DATASETS = Registry("dataset builder")
PROCESSORS = Registry("processor")
TASKS = Registry("task")
RUNNERS = Registry("runner")
LR_SCHEDULES = Registry("lr schedule")
CLUE_SCORERS = Registry("clue scorer")
RETRIEVERS = Registry("retriever")
SCORERS = Registry("answer scorer")
