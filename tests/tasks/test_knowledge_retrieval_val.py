"""eval.py on the val split: the questions come from the training file, on the val images only."""
import json
from pathlib import Path

import eval as eval_entry
from mmrag.common.assets import llama_tokenizer_dir

ROOT = Path(__file__).resolve().parents[2]
CFG = "train_configs/gemkr_tiny_world.yaml"
PASSAGES = ["zebra savanna grass", "banana fruit yellow", "lighthouse ship night"]
TRAIN = [{"question_id": "q1", "input": "zebra grass", "output": ["savanna"], "image": "i1"},
         {"question_id": "q2", "input": "banana", "output": ["yellow"], "image": "i2"},
         {"question_id": "q3", "input": "ship", "output": ["night"], "image": "i2"},
         {"question_id": "q4", "input": "zebra", "output": ["grass"], "image": "i3"}]


def test_bm25_on_the_val_split_reads_only_the_val_images_questions(tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from mmrag.retrieval.corpus_index import CorpusIndex

    tokenizer = AutoTokenizer.from_pretrained(str(llama_tokenizer_dir()))
    CorpusIndex.build([(f"p{i}", t) for i, t in enumerate(PASSAGES)], tokenizer, tmp_path / "corpus", progress=False)
    (tmp_path / "train.json").write_text(json.dumps(TRAIN))
    (tmp_path / "val_images.json").write_text(json.dumps({"images": ["i2"]}))
    monkeypatch.chdir(ROOT)
    eval_entry.main(["--cfg-path", CFG, f"run.output_dir={tmp_path / 'out'}", "evaluation.method=bm25",
                     f"datasets.gemkr_knowledge.data_path={tmp_path}/{{split}}.json",
                     f"datasets.gemkr_knowledge.image_root={tmp_path}",
                     f"datasets.gemkr_knowledge.index_path={tmp_path / 'corpus'}",
                     f"datasets.gemkr_knowledge.val_images={tmp_path / 'val_images.json'}",
                     "evaluation.split=val", "evaluation.top_k=1", "evaluation.ks=[1]"])
    per_query = json.loads((tmp_path / "out" / "retrieval_per_query.json").read_text())
    # i2's two questions, in file order; each one's only matching passage holds its answer
    assert [q["query_id"] for q in per_query] == ["q2", "q3"]
    assert [q["retrieved"] for q in per_query] == [["p1"], ["p2"]]
