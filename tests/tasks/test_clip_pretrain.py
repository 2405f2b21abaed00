"""clip_pretrain: losses against hand-computed values, the presence loss's balancing, training through
the runner on the tiny world lowers the loss, the saved open_clip folder loads in the vision tower and
the dense database's embedder with the trained module's embeddings, evaluation metrics by hand."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import mmrag  # noqa: F401
from mmrag.common.config import build_config
from mmrag.common.errors import ConfigError
from mmrag.datasets.image_text import ImageTextBuilder, presence_targets, presence_weights, square_box
from mmrag.models.contrastive_clip import infonce_loss_sum, presence_loss_sum, siglip_loss_sum
from mmrag.runners.runner import Runner
from mmrag.tasks.clip_pretrain import ClipPretrainTask, embedder_keys, recall_at_k, zero_shot_accuracy

TINY_ARCH = {"embed_dim": 32,
             "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
             "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


# ----------------------------------------------------------------------------- losses by hand
def test_siglip_loss_equals_the_hand_computed_sum_on_2x2_logits():
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    positives = torch.eye(2, dtype=torch.bool)
    # positives on the diagonal (z=+1), negatives off it (z=-1)
    hand = -(log_sigmoid(2.0) + log_sigmoid(1.0) + log_sigmoid(-0.5) + log_sigmoid(3.0))
    assert siglip_loss_sum(logits, positives).item() == pytest.approx(hand, rel=1e-6)
    # two rows with the same text: every pair is positive
    both = torch.ones(2, 2, dtype=torch.bool)
    hand_both = -(log_sigmoid(2.0) + log_sigmoid(-1.0) + log_sigmoid(0.5) + log_sigmoid(3.0))
    assert siglip_loss_sum(logits, both).item() == pytest.approx(hand_both, rel=1e-6)


def test_infonce_loss_equals_the_hand_computed_value_on_2x2_logits():
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    row0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(-1)))
    row1 = -math.log(math.exp(3) / (math.exp(0.5) + math.exp(3)))
    col0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(0.5)))
    col1 = -math.log(math.exp(3) / (math.exp(-1) + math.exp(3)))
    hand = (row0 + row1 + col0 + col1) / 2
    assert infonce_loss_sum(logits, torch.eye(2, dtype=torch.bool)).item() == pytest.approx(hand, rel=1e-6)


def test_presence_loss_weighs_positives_and_negatives_of_each_class_equally():
    # 3 labelled images (classes {0}, {0, 1}, {}) and one crop without labels; 2 classes
    labels = [(0,), (0, 1), None, ()]
    pos, neg = presence_weights(labels, 2)
    # p0 = 2/3 -> 0.5/p0 = 0.75, 0.5/(1-p0) = 1.5; p1 = 1/3 -> 1.5, 0.75
    assert pos.tolist() == pytest.approx([0.75, 1.5]) and neg.tolist() == pytest.approx([1.5, 0.75])
    batch = presence_targets(labels, pos, neg)
    t, w = batch["presence_targets"], batch["presence_weights"]
    assert t.tolist() == [[1, 0], [1, 1], [0, 0], [0, 0]]
    assert w[2].tolist() == [0, 0]  # the crop carries no presence loss
    for c in range(2):  # total positive weight == total negative weight, per class
        assert (w[:, c] * t[:, c]).sum().item() == pytest.approx((w[:, c] * (1 - t[:, c]))[[0, 1, 3]].sum().item())
    # all logits 0: every entry costs log 2; weights sum to 1.5 + 1.5 + 1.5 + 1.5, averaged over 2 classes
    assert presence_loss_sum(torch.zeros(4, 2), t, w).item() == pytest.approx(3 * math.log(2), rel=1e-6)


def test_square_box_keeps_the_centre_and_stays_inside_the_image():
    assert square_box([10, 20, 10, 20], 96, 96, 0.0) == (5, 20, 25, 40)     # tall box -> 20 x 20, same centre
    assert square_box([0, 0, 10, 10], 96, 96, 1.0) == (0, 0, 20, 20)        # shifted right/down, not shrunk
    assert square_box([90, 90, 6, 6], 96, 96, 1.0) == (84, 84, 96, 96)


# ----------------------------------------------------------------------------- evaluation by hand
def test_recall_at_k_counts_ties_against_and_accepts_any_relevant_item():
    scores = np.array([[0.9, 0.9, 0.1],   # tie between the right item 0 and wrong item 1: rank 1
                       [0.2, 0.5, 0.8],   # right items 0 and 1, best right 0.5 below one wrong: rank 1
                       [0.3, 0.2, 0.7]])  # right item 2 on top: rank 0
    relevant = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)
    out = recall_at_k(scores, relevant, ks=(1, 2))
    assert out == {"R@1": pytest.approx(1 / 3), "R@2": pytest.approx(1.0)}


def test_zero_shot_accuracy_by_hand():
    classes = np.array([[1.0, 0.0], [0.0, 1.0]])
    items = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])
    truth = np.array([0, 1, 1, 1])  # right, right, wrong, wrong
    out = zero_shot_accuracy(items, classes, truth)
    assert out["top1"] == pytest.approx(0.5)
    assert out["top1_class_mean"] == pytest.approx((1.0 + 1 / 3) / 2)
    assert out["chance"] == pytest.approx(0.5)


# ----------------------------------------------------------------------------- on the tiny world
@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from mmrag.datasets.world import generate_world

    out = tmp_path_factory.mktemp("world") / "world_tiny"
    generate_world("tiny", 0, out, progress=False)
    return out


def clip_config(tmp_path, world, out, **run):
    text = f"""
model:
  arch: contrastive_clip
  open_clip: {json.dumps(TINY_ARCH)}
datasets:
  pairs: {{builder: image_text, world: {world}, val_fraction: 0.2, presence_labels: true}}
run:
  task: clip_pretrain
  output_dir: {out}
  device: cpu
  batch_size: 32
  init_lr: 3.0e-3
  min_lr: 3.0e-3
  warmup_steps: 0
  lr_sched: linear_warmup_cosine
  log_every: 1
  progress: false
"""
    path = tmp_path / "clip.yaml"
    path.write_text(text)
    options = [f"run.{k}={v}" for k, v in run.items()] + ["model.presence_weight=0.5"]
    return build_config(path, options)


def test_builder_splits_are_disjoint_and_test_is_the_worlds_test_images(tiny_world):
    cfg = OmegaConf.merge(ImageTextBuilder.default_config({}), {"world": str(tiny_world), "val_fraction": 0.2})
    images = {s: {p["image"] for p in ImageTextBuilder.pairs(cfg, s)[0]} for s in ("train", "val", "test")}
    test_files = {im["file_name"] for im in json.loads((tiny_world / "annotations/instances_test.json").read_text())["images"]}
    assert {p.rsplit("/", 1)[1] for p in images["test"]} == test_files
    assert images["train"] and images["val"] and not images["train"] & images["val"]
    assert not (images["train"] | images["val"]) & images["test"]


def test_a_few_steps_lower_the_loss_and_evaluation_writes_results(tmp_path, tiny_world):
    out = tmp_path / "run"
    cfg = clip_config(tmp_path, tiny_world, out, max_steps=25, evaluate=True)
    torch.manual_seed(0)
    result = Runner(cfg, ClipPretrainTask(cfg)).train()
    losses = [r["loss"] for r in result["history"]]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    saved = json.loads((out / "results.json").read_text())
    n_boxes = len(json.loads((tiny_world / "annotations/instances_test.json").read_text())["annotations"])
    n_caps = len(json.loads((tiny_world / "annotations/captions_test.json").read_text())["annotations"])
    assert saved["zero_shot"]["n_items"] == n_boxes and saved["retrieval"]["n_captions"] == n_caps
    assert (out / "results.png").is_file() and (out / "final" / "presence_head.safetensors").is_file()


def test_presence_weight_without_labels_is_refused(tmp_path, tiny_world):
    cfg = clip_config(tmp_path, tiny_world, tmp_path / "x", max_steps=1)
    cfg.datasets.pairs.presence_labels = False
    with pytest.raises(ConfigError, match="presence_labels"):
        ClipPretrainTask(cfg).build_model(cfg)


def test_saved_folder_loads_in_the_tower_and_the_embedder_with_the_modules_embeddings(tmp_path, tiny_world):
    import open_clip

    from mmrag.common.registry import VISION_TOWERS
    from mmrag.processors.image_processing import open_rgb
    from mmrag.retrieval.clip_embedder import ClipEmbedder

    cfg = clip_config(tmp_path, tiny_world, tmp_path / "run", max_steps=3, evaluate=False)
    task = ClipPretrainTask(cfg)
    torch.manual_seed(0)
    Runner(cfg, task).train()
    folder = tmp_path / "run" / "final"
    # the trained module: rebuilt from the saved folder (model.checkpoint, as eval.py does)
    cfg.model.checkpoint = str(folder)
    module = task.build_model(cfg).eval()
    images = sorted((tiny_world / "images").glob("*.jpg"))[:4]
    processor = task.build_processor(cfg, module)
    pixels = torch.stack([processor.transform(open_rgb(p)) for p in images])
    with torch.no_grad():
        expected = module.encode_image(pixels).numpy()
        expected_tokens = module.clip.visual.forward_intermediates(pixels, intermediates_only=True,
                                                                   output_fmt="NLC")["image_intermediates"][-1]
    keys = embedder_keys(folder)
    embedder = ClipEmbedder({**keys, "device": "cpu", "num_workers": 0})
    np.testing.assert_allclose(embedder.encode_images(images, num_workers=0), expected, atol=1e-5)
    tower_cfg = {**VISION_TOWERS.get("open_clip").default_config(), "model_name": keys["model_name"],
                 "path": keys["pretrained"], "select_layer": -1}
    tower = VISION_TOWERS.get("open_clip")(tower_cfg)
    with torch.no_grad():
        np.testing.assert_allclose(torch.nn.functional.normalize(tower.visual(pixels), dim=-1).numpy(), expected, atol=1e-5)
        torch.testing.assert_close(tower(pixels), expected_tokens, atol=1e-5, rtol=1e-5)
    # open_clip's own factory loads the folder too; a fresh random model differs (the weights came from the file)
    direct = open_clip.create_model(keys["model_name"]).eval()
    with torch.no_grad():
        np.testing.assert_allclose(direct.encode_image(pixels, normalize=True).numpy(), expected, atol=1e-5)
    cfg.model.checkpoint = None
    fresh = task.build_model(cfg).eval()
    with torch.no_grad():
        assert not np.allclose(fresh.encode_image(pixels).numpy(), expected, atol=1e-3)


# ----------------------------------------------------------------------------- create_index's CLIP
def test_the_database_clip_trained_by_the_task_finds_images_from_their_captions(tmp_path):
    from mmrag.retrieval.clip_embedder import ClipEmbedder, TINY_CLIP_CFG, retrieval_recall
    from mmrag.tasks.clip_pretrain import database_clip_trainer
    from tests.retrieval.test_clip_embedder import colour_images

    pairs = colour_images(tmp_path / "img")  # 8 single-colour images captioned with their colour
    items = [{"id": p.stem, "image": p.name, "caption": c} for p, c in pairs]
    cfg = {"image_root": str(tmp_path / "img"), "embedder": {"model_cfg": TINY_CLIP_CFG, "seed": 0},
           "tiny_clip": {"steps": 30, "batch_size": 8, "lr": 2e-3}}
    paths, captions = [p for p, _ in pairs], [c for _, c in pairs]
    before = retrieval_recall(ClipEmbedder({"device": "cpu", "num_workers": 0}), paths, captions)
    keys = database_clip_trainer(cfg, items, tmp_path / "clip", progress=False)
    assert keys["model_name"] == f"local-dir:{(tmp_path / 'clip' / 'final').resolve()}"
    after = retrieval_recall(ClipEmbedder({**keys, "device": "cpu", "num_workers": 0}), paths, captions)
    assert after["text_to_image"]["R@1"] >= 0.75 > before["text_to_image"]["R@1"]
