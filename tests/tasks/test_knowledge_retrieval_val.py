"""eval.py on the val split: the questions come from the training file, on the val images only."""
import json

from tests.helpers.knowledge_bm25 import bm25_eval

PASSAGES = ["zebra savanna grass", "banana fruit yellow", "lighthouse ship night"]
TRAIN = [{"question_id": "q1", "input": "zebra grass", "output": ["savanna"], "image": "i1"},
         {"question_id": "q2", "input": "banana", "output": ["yellow"], "image": "i2"},
         {"question_id": "q3", "input": "ship", "output": ["night"], "image": "i2"},
         {"question_id": "q4", "input": "zebra", "output": ["grass"], "image": "i3"}]


def test_bm25_on_the_val_split_reads_only_the_val_images_questions(tmp_path, monkeypatch):
    (tmp_path / "val_images.json").write_text(json.dumps({"images": ["i2"]}))
    _, per_query = bm25_eval(tmp_path, monkeypatch, PASSAGES, {"train": TRAIN},
                             [f"datasets.gemkr_knowledge.val_images={tmp_path / 'val_images.json'}",
                              "evaluation.split=val", "evaluation.top_k=1", "evaluation.ks=[1]"])
    # i2's two questions, in file order; each one's only matching passage holds its answer
    assert [q["query_id"] for q in per_query] == ["q2", "q3"]
    assert [q["retrieved"] for q in per_query] == [["p1"], ["p2"]]
