"""The `Answerer` protocol on a `MultimodalLLM` + its processor: batched greedy answers to SURf / RAG requests.

A request is {"prompt": str, "images": [path, ...], "system": str (optional)} (see
`mmrag.surf.answerer`); `prompt` is one human turn holding one `<image>` per image, in order, or
{"conversation": [{"from", "value"}, ...], "images": [...]} for a whole LLaVA turn list that ends
with a human turn. A request with a `system` text is rendered with the processor's conversation
template whose system prompt is replaced by that text (e.g. the `vicuna_v1_retrieval` template's
system prompt for RAG prompts, see `template_system`), passed to `processor.collate(...,
template=...)`; requests without one use the processor's own template. Data construction loads it by name:

    answerer.target=mmrag.pipelines.answerers:model_answerer
    answerer.kwargs.cfg_path=train_configs/llava_tiny_world.yaml
    answerer.kwargs.checkpoint=output/llava_tiny_world/final
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from tqdm import tqdm

from mmrag.processors import ConversationTemplate, get_template
from mmrag.surf.answerer import AnswerRequest
from mmrag.common.errors import DataFormatError


class AnswerRequestError(DataFormatError):
    """A malformed answer request: names its position in the batch and what was expected."""


def template_system(name: str) -> str:
    """The system prompt of a named conversation template (e.g. 'vicuna_v1_retrieval')."""
    return get_template(name).system


def with_system(template: ConversationTemplate, system: str) -> ConversationTemplate:
    """`template` with its system prompt replaced: a text ending in whitespace as it is (a chat format's
    newline, as the YAML templates have it), else with one trailing space."""
    system = system if system[-1:].isspace() else system.rstrip() + " "
    return dataclasses.replace(template, name=f"{template.name}+system", system=system)


def request_turns(request: AnswerRequest, position: int) -> List[Dict[str, str]]:
    """The LLaVA turn list of one request (a single human turn for a `prompt` request)."""
    if "conversation" in request:
        turns = list(request["conversation"])
    elif "prompt" in request:
        turns = [{"from": "human", "value": str(request["prompt"])}]
    else:
        raise AnswerRequestError(f"answer request {position}: needs 'prompt' or 'conversation', got keys {sorted(request)}")
    if not turns or turns[-1].get("from") != "human":
        raise AnswerRequestError(f"answer request {position}: the conversation must end with a human turn")
    return turns


class ModelAnswerer:
    """Greedy answers of a MultimodalLLM, `batch_size` requests per generate call; `processor` (a
    MultimodalProcessor) renders, tokenises and decodes."""

    def __init__(self, model, processor, batch_size: int = 16, max_new_tokens: int = 16,
                 image_root: Optional[str | Path] = None, progress: bool = False) -> None:
        self.model, self.processor = model, processor
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.image_root = Path(image_root) if image_root else None
        self.progress = progress

    def _pixels(self, images: Sequence[str]) -> torch.Tensor:
        paths = [self.image_root / p if self.image_root else Path(p) for p in images]
        if not paths:
            return torch.zeros(0, 3, 1, 1)
        return torch.stack([self.processor.image_processor(p) for p in paths])

    def _sample(self, request: AnswerRequest, position: int) -> Dict[str, Any]:
        return {"id": f"request {position}", "conversations": request_turns(request, position),
                "pixel_values": self._pixels(list(request.get("images") or []))}

    def _generate(self, samples: List[Dict[str, Any]], template: ConversationTemplate, max_new_tokens: int) -> List[str]:
        batch = self.processor.collate(samples, generation=True, template=template)
        out = self.model.generate(batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
        return [text.strip() for text in self.processor.decode(out)]

    def answer(self, batch: Sequence[AnswerRequest], max_new_tokens: Optional[int] = None) -> List[str]:
        """One answer per request, in order. Requests are batched per system prompt. `max_new_tokens`
        overrides the answerer's own limit for this call (e.g. a description before short answers)."""
        answers: List[Optional[str]] = [None] * len(batch)
        by_system: Dict[Optional[str], List[int]] = {}
        for position, request in enumerate(batch):
            by_system.setdefault(request.get("system"), []).append(position)
        self.model.eval()
        bar = tqdm(total=len(batch), desc="answer", disable=not self.progress)
        for system, positions in by_system.items():
            own = self.processor.template
            template = own if system is None else with_system(own, system)
            for start in range(0, len(positions), self.batch_size):
                chunk = positions[start:start + self.batch_size]
                texts = self._generate([self._sample(batch[p], p) for p in chunk], template,
                                       max_new_tokens or self.max_new_tokens)
                for p, text in zip(chunk, texts):
                    answers[p] = text
                bar.update(len(chunk))
        bar.close()
        return [a for a in answers if a is not None]

