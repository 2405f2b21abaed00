"""Visual instruction tuning (LLaVA-style conversations); evaluated by short-answer accuracy."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

from tqdm import tqdm

from mmrag.common.jsonl import write_json, write_jsonl
from mmrag.common.registry import DATASETS, TASKS
from mmrag.datasets.multimodal_dataset import collate_indices
from mmrag.metrics.answers import first_line, normalize_answer
from mmrag.tasks.base import Task


def short_answer_accuracy(predictions: Sequence[str], golds: Sequence[str], max_words: int) -> Dict[str, Any]:
    """Accuracy on the records whose gold answer has at most `max_words` words: the first line of
    the prediction, normalised (`mmrag.metrics.answers.normalize_answer`), equals the normalised gold."""
    short = [i for i, g in enumerate(golds) if len(g.split()) <= max_words]
    correct = [normalize_answer(first_line(predictions[i])) == normalize_answer(first_line(golds[i])) for i in short]
    return {"short_answer_accuracy": sum(correct) / max(1, len(correct)), "n_short": len(short), "n": len(golds)}


def generate_answers(model, processor, dataset, batch_size: int, max_new_tokens: int,
                     desc: str = "generate") -> List[str]:
    """Greedy answers for every record of `dataset` (prompt = the conversation without its last answer)."""
    answers: List[str] = []
    model.eval()
    for start in tqdm(range(0, len(dataset), batch_size), desc=desc):
        idx = list(range(start, min(start + batch_size, len(dataset))))
        batch = collate_indices(processor, _PromptView(dataset), idx, "fail", generation=True)
        out = model.generate(batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
        answers += processor.decode(out)
    return answers


class _PromptView:
    """The dataset with each conversation cut before its last answer (what the model must produce)."""

    def __init__(self, dataset) -> None:
        self.dataset, self.name, self.records, self.unreadable = dataset, dataset.name, dataset.records, 0

    def __getitem__(self, i: int) -> Dict[str, Any]:
        sample = dict(self.dataset[i])
        turns = sample["conversations"]
        sample["conversations"] = turns[:-1] if turns and turns[-1]["from"] == "gpt" else turns
        sample.pop("target_ids", None)
        return sample


@TASKS.register("instruction_tuning")
class InstructionTuningTask(Task):
    DEFAULTS = {
        "run": {},
        "evaluation": {"split": "test", "batch_size": 16, "max_new_tokens": 12, "max_samples": 200,
                       "short_answer_words": 3},
    }

    def evaluate(self, model, cfg, out_dir) -> Dict[str, Any]:
        ev = cfg.evaluation
        results: Dict[str, Any] = {}
        processor = self.build_processor(cfg, model)
        for name, ds_cfg in cfg.datasets.items():
            ds_cfg = ds_cfg.copy()
            ds_cfg.max_samples = ev.max_samples
            dataset = DATASETS.get(ds_cfg.builder or name).build(ds_cfg, processor, split=ev.split, name=name)
            golds = [r["conversations"][-1]["value"] for r in dataset.records]
            preds = generate_answers(model, processor, dataset, ev.batch_size, ev.max_new_tokens, f"eval {name}")
            results[name] = short_answer_accuracy(preds, golds, ev.short_answer_words)
            write_jsonl(Path(out_dir) / f"predictions_{name}.jsonl",
                        [{"id": rec["id"], "prediction": pred, "answer": gold}
                         for rec, pred, gold in zip(dataset.records, preds, golds)])
        write_json(Path(out_dir) / "metrics.json", results)
        return results
