"""eval.py's BM25 knowledge retrieval on a hand-made corpus and questions, for tests whose expected
rankings are worked out by hand."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

REPO_ROOT = Path(__file__).resolve().parents[2]
CFG = "train_configs/gemkr_tiny_world.yaml"


def bm25_eval(tmp_path: Path, monkeypatch, passages: Sequence[str], question_files: Dict[str, List[Dict[str, Any]]],
              overrides: Sequence[str]) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """Passages p0, p1, ... indexed with the LLaMA tokenizer, `question_files` ({split: questions}) written as
    <split>.json, then eval.py with evaluation.method=bm25 and `overrides` from the repository root.
    Returns eval's summary and its retrieval_per_query.json rows."""
    from transformers import AutoTokenizer

    import eval as eval_entry
    from mmrag.common.assets import llama_tokenizer_dir
    from mmrag.retrieval.corpus_index import CorpusIndex

    tokenizer = AutoTokenizer.from_pretrained(str(llama_tokenizer_dir()))
    CorpusIndex.build([(f"p{i}", t) for i, t in enumerate(passages)], tokenizer, tmp_path / "corpus", progress=False)
    for split, questions in question_files.items():
        (tmp_path / f"{split}.json").write_text(json.dumps(questions))
    monkeypatch.chdir(REPO_ROOT)
    out = eval_entry.main(["--cfg-path", CFG, f"run.output_dir={tmp_path / 'out'}", "evaluation.method=bm25",
                           f"datasets.gemkr_knowledge.data_path={tmp_path}/{{split}}.json",
                           f"datasets.gemkr_knowledge.image_root={tmp_path}",
                           f"datasets.gemkr_knowledge.index_path={tmp_path / 'corpus'}", *overrides])
    return out, json.loads((tmp_path / "out" / "retrieval_per_query.json").read_text())
