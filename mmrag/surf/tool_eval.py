"""Tool evaluation of answers: does an answer agree with the ground truth?

- Multiple-choice and short answers: `mmrag.metrics.answers.exact_match` (option letters agree;
  the normalised answer equals the ground truth or contains it as whole words).
- Open-ended answers: a similarity score to the ground truth from a pluggable scorer. Scorers, in
  order of preference: BERTScore-F1 with a configured local model, the all-MiniLM-L6-v2 sentence
  encoder (cosine of mean-pooled, normalised embeddings), token F1. The scorer's name is recorded.
"""
from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol, Sequence

from mmrag.metrics.answers import normalize_answer


# ----------------------------------------------------------------------------- similarity scorers
class SimilarityScorer(Protocol):
    name: str

    def score(self, predictions: Sequence[str], references: Sequence[str]) -> List[float]:
        """One similarity per (prediction, reference) pair; higher = closer."""
        ...


class TokenF1Scorer:
    """SQuAD-style token F1 on normalised text."""

    name = "token_f1"

    def score(self, predictions: Sequence[str], references: Sequence[str]) -> List[float]:
        return [self._f1(p, r) for p, r in zip(predictions, references)]

    @staticmethod
    def _f1(prediction: str, reference: str) -> float:
        pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
        common = sum((Counter(pred) & Counter(ref)).values())
        if common == 0:
            return float(pred == ref)
        precision, recall = common / len(pred), common / len(ref)
        return 2 * precision * recall / (precision + recall)


class _EncoderScorer:
    """Shared loading/encoding for scorers built on a local transformers encoder."""

    def __init__(self, model_dir: str | Path, batch_size: int = 32) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()
        self.batch_size = batch_size

    def _hidden(self, texts: Sequence[str], layer: Optional[int]):
        """(last or chosen layer) token states and the attention mask, for one batch."""
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=256, return_tensors="pt")
        with self.torch.inference_mode():
            out = self.model(**tokens, output_hidden_states=layer is not None)
        states = out.last_hidden_state if layer is None else out.hidden_states[layer]
        return states, tokens["attention_mask"]


class MiniLMScorer(_EncoderScorer):
    """Cosine similarity of mean-pooled, L2-normalised sentence embeddings (all-MiniLM-L6-v2)."""

    name = "minilm"

    def embed(self, texts: Sequence[str]):
        blocks = []
        for start in range(0, len(texts), self.batch_size):
            states, mask = self._hidden(texts[start:start + self.batch_size], None)
            mask = mask.unsqueeze(-1).float()
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            blocks.append(self.torch.nn.functional.normalize(pooled, dim=-1))
        return self.torch.cat(blocks)

    def score(self, predictions: Sequence[str], references: Sequence[str]) -> List[float]:
        if not predictions:
            return []
        return (self.embed(predictions) * self.embed(references)).sum(-1).tolist()


class BertScoreScorer(_EncoderScorer):
    """BERTScore F1 (greedy cosine matching of contextual token embeddings; no idf, no rescaling)."""

    name = "bertscore"

    def __init__(self, model_dir: str | Path, layer: Optional[int] = None, batch_size: int = 32) -> None:
        super().__init__(model_dir, batch_size)
        self.layer = layer

    def _token_vectors(self, texts: Sequence[str]) -> list:
        """Per text, its normalised token vectors without the [CLS]/[SEP]-style special tokens."""
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start:start + self.batch_size])
            states, mask = self._hidden(batch, self.layer)
            special = self.tokenizer(batch, padding=True, truncation=True, max_length=256, return_special_tokens_mask=True)["special_tokens_mask"]
            for row, (m, s) in enumerate(zip(mask.tolist(), special)):
                keep = [i for i, (a, sp) in enumerate(zip(m, s)) if a and not sp]
                out.append(self.torch.nn.functional.normalize(states[row, keep], dim=-1))
        return out

    def score(self, predictions: Sequence[str], references: Sequence[str]) -> List[float]:
        scores = []
        for pred, ref in zip(self._token_vectors(predictions), self._token_vectors(references)):
            if len(pred) == 0 or len(ref) == 0:
                scores.append(0.0)
                continue
            sim = pred @ ref.T
            precision, recall = sim.max(1).values.mean(), sim.max(0).values.mean()
            scores.append(float(2 * precision * recall / (precision + recall)))
        return scores


def build_similarity_scorer(cfg: Optional[Dict[str, Any]] = None) -> SimilarityScorer:
    """BERTScore when `bertscore_model` is set (must exist), else MiniLM unless `use_minilm` is false
    or its package is missing, else token F1."""
    cfg = {"bertscore_model": None, "bertscore_layer": None, "use_minilm": True, **(cfg or {})}
    if cfg["bertscore_model"]:
        path = Path(cfg["bertscore_model"])
        if not path.is_dir():
            raise FileNotFoundError(f"similarity config: 'bertscore_model' = {path} is not a folder")
        return BertScoreScorer(path, cfg["bertscore_layer"])
    if cfg["use_minilm"]:
        from mmrag.common.assets import minilm_dir

        try:
            return MiniLMScorer(minilm_dir())
        except RuntimeError as err:  # the wheel is not installed: say so, then use the last resort
            warnings.warn(f"MiniLM scorer unavailable ({err}); open-ended answers use token F1")
    return TokenF1Scorer()
