"""Which names the chosen model calls present on a blank image, and how often each is a negative
of the split (run from the repository root over output/seeing_large_test, unpacked from answers.tgz)."""
import collections
import json

from mmrag.pipelines.analysis import object_name

for split in ("random", "popular", "adversarial"):
    rows = [json.loads(line) for line in open(f"output/seeing_large_test/pope_blank/answers_{split}.jsonl")]
    yes = collections.Counter(object_name(r["question"]) for r in rows if r["prediction"].lower().startswith("yes"))
    negatives = collections.Counter(object_name(r["question"]) for r in rows if r["answer"] == "no")
    print(split, "blank 'yes' names (count, times a negative in the split):",
          [(name, n, negatives[name]) for name, n in yes.most_common(5)])
