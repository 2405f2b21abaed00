"""The shuffled control against a perfect seer, on answers already written (no model is run).

    PYTHONPATH=. python docs/measurements/shuffled_oracle_2026-12-01/measure.py /tmp/large_answers
(the second argument: docs/measurements/seeing_large_smollm2_2026-11-30b/answers.tgz extracted there).
Writes <this folder>/<run>.json and prints the tables, then the perfect seer's accuracy on the test
splits under the shuffles of seeds 0-99 (seeds.json): how much of its distance from 50% is seed 0's. Small runs: the shuffled run's own saved config
gives the questions, image root and seed (seeing.shuffled_oracle_splits); the large run's answers came
without their config, so its eval config (eval_configs/seeing_large_pope.yaml, seed: vqa_eval's default
0, as lease_a.sh set none) gives them, and the images each answer recorded are checked either way.
"""
import json
import sys
from pathlib import Path

from mmrag.pipelines.seeing import SPLITS, shuffled_oracle_splits
from mmrag.datasets.formats import read_pope_jsonl
from mmrag.metrics.pope import pope_metrics
from mmrag.pipelines.shuffled_oracle import (holds, shown_images, shuffled_oracle_by_split, shuffled_oracle_table,
                                             world_objects)

HERE, WORLD = Path(__file__).parent, Path("dataset/world_small")
large = Path(sys.argv[1])
objects = world_objects(WORLD)
runs = {name: shuffled_oracle_splits(Path("."), WORLD, Path(folder), SPLITS) for name, folder in (
    ("small_grounded", "output/seeing_small_grounded"),
    ("small_MBFG10_first_w1_1200", "output/match_bias_test/MBFG10_first_w1_1200"))}
runs["large_smollm2_r16qkvo"] = shuffled_oracle_by_split(
    Path("."), objects, "dataset/world_small/pope/{split}.jsonl", "dataset/world_small/images", 0,
    large / "eval_r16qkvo_test_shuffled", large / "eval_r16qkvo_test_none", SPLITS)
runs["large_smollm2_r16qkvo_val"] = shuffled_oracle_by_split(
    Path("."), objects, "dataset/world_small/pope_val/{split}.jsonl", "dataset/world_small/images", 0,
    large / "eval_r16qkvo_val_shuffled", large / "eval_r16qkvo_val", ["all"])
for name, by_split in runs.items():
    assert by_split and all(r["recorded_images_checked"] for r in by_split.values()), name
    (HERE / f"{name}.json").write_text(json.dumps(by_split, indent=2) + "\n")
    print(f"\n{name}\n" + "\n".join(shuffled_oracle_table(by_split)))

seeds = {}
for split in SPLITS:
    rows = read_pope_jsonl(WORLD / "pope" / f"{split}.jsonl")
    labels = [q["label"] for q in rows]
    seeds[split] = [pope_metrics(["yes" if holds(objects, p, q) else "no" for q, p in
                                  zip(rows, shown_images(rows, "dataset/world_small/images", seed))], labels)["accuracy"]
                    for seed in range(100)]
    acc = sorted(seeds[split])
    print(f"perfect seer, {split}, seeds 0-99: seed 0 {100 * seeds[split][0]:.1f}, min {100 * acc[0]:.1f}, "
          f"median {100 * (acc[49] + acc[50]) / 2:.1f}, max {100 * acc[-1]:.1f}")
(HERE / "seeds.json").write_text(json.dumps(seeds) + "\n")
