"""A picture of a few generated images with their boxes and one knowledge question (for the README).

    python -m mmrag.datasets.world.preview --world dataset/world_small --out docs/world_examples.png

Without an existing --world folder a `tiny` world is generated into a temporary folder first.
"""
from __future__ import annotations

import argparse
import tempfile
import textwrap
from pathlib import Path
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on the training machines
import matplotlib.patches as patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from mmrag.datasets import formats  # noqa: E402


def pick_examples(instances: Dict, questions: Sequence[Dict], n_images: int) -> List[int]:
    """Ids of `n_images` images with at least two objects; the first one has a knowledge question."""
    counts: Dict[int, int] = {}
    for ann in instances["annotations"]:
        counts[ann["image_id"]] = counts.get(ann["image_id"], 0) + 1
    by_name = {im["file_name"][:-4]: im["id"] for im in instances["images"]}
    asked = [by_name[q["image"]] for q in questions if counts.get(by_name[q["image"]], 0) >= 3]
    first = asked[0] if asked else min(counts)
    rest = [i for i in sorted(counts) if counts[i] >= 2 and i != first]
    return [first] + rest[: n_images - 1]


def _draw_panel(ax, world: Path, image: Dict, annotations: List[Dict], names: Dict[int, str],
                supers: Dict[int, str]) -> None:
    ax.imshow(Image.open(world / "images" / image["file_name"]), interpolation="nearest")
    for ann in annotations:
        x, y, w, h = ann["bbox"]
        ax.add_patch(patches.Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor="lime", linewidth=1.5))
        label = names[ann["category_id"]]
        label += "" if supers[ann["category_id"]] == "object" else f" ({supers[ann['category_id']]})"
        ax.text(x, y - 1, label, color="black", fontsize=7, va="bottom",
                bbox={"facecolor": "white", "alpha": 0.8, "pad": 1, "edgecolor": "none"})
    ax.set_title(image["file_name"], fontsize=7)
    ax.axis("off")


def render_preview(world: Path, out_png: Path, n_images: int = 4) -> Path:
    """Draw `n_images` test images of `world` with their boxes and one question, answer and gold passage."""
    instances = formats.read_coco_instances(world / "annotations" / "instances_test.json")
    questions = formats.read_knowledge_questions(world / "knowledge" / "test.json")
    passages = dict(formats.read_corpus_csv(world / "corpus.csv"))
    names = {c["id"]: c["name"] for c in instances["categories"]}
    supers = {c["id"]: c.get("supercategory", "") for c in instances["categories"]}
    images = {im["id"]: im for im in instances["images"]}
    chosen = pick_examples(instances, questions, n_images)
    fig, axes = plt.subplots(1, len(chosen), figsize=(3.2 * len(chosen), 4.6))
    for ax, image_id in zip(list(getattr(axes, "flat", [axes])), chosen):
        anns = [a for a in instances["annotations"] if a["image_id"] == image_id]
        _draw_panel(ax, world, images[image_id], anns, names, supers)
    first = images[chosen[0]]["file_name"][:-4]
    q = next((q for q in questions if q["image"] == first), None)
    if q is not None:
        gold = passages[q["gold_passage_ids"][0]]
        text = (f"Left image. Question: {q['question']}   Answer (from the corpus): {', '.join(q['output'])}\n"
                f"Caption (never names the entity): {q['caption']}\n"
                + textwrap.fill(f"Gold passage {q['gold_passage_ids'][0]}: {gold}", 150))
        fig.text(0.01, 0.02, text, fontsize=8, va="bottom", family="monospace")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.95, bottom=0.27, wspace=0.05)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=Path("dataset/world_small"))
    parser.add_argument("--out", type=Path, default=Path("docs/world_examples.png"))
    parser.add_argument("--images", type=int, default=4)
    args = parser.parse_args()
    if (args.world / "world.json").is_file():
        print(render_preview(args.world, args.out, args.images))
        return
    from mmrag.datasets.world.generator import generate_world  # only when a world must be made
    with tempfile.TemporaryDirectory() as tmp:
        generate_world("tiny", 0, Path(tmp) / "world_tiny", progress=False)
        print(render_preview(Path(tmp) / "world_tiny", args.out, args.images))


if __name__ == "__main__":
    main()
