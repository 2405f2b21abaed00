"""The DataEngine loop: Adaptive Bad-case Sampling matches the error-rate distribution (seeded
chi-square test), image selection (neighbours of bad cases, too-many-boxes skipped), and a 2-round
loop on a tiny world that stops mid-round on a failing endpoint and resumes to the same result."""
from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest
from scipy import stats

import mmrag  # noqa: F401
from mmrag.common.tool_config import load_tool_config
from mmrag.datasets.world import generate_world
from mmrag.datasets.world import typed_benchmark as tb
from mmrag.pipelines import data_engine as engine_mod
from mmrag.pipelines import data_engine_generators as gens
from tests.datasets.world.test_typed_benchmark import hand_scene

REPO = Path(__file__).resolve().parents[2]


def test_adaptive_probabilities_are_the_error_rate_distribution():
    rates = {"count": 0.6, "existence": 0.3, "spatial": 0.1, "identity": 0.0}
    probs = engine_mod.type_probabilities(rates, "adaptive")
    assert probs == pytest.approx({"count": 0.6, "existence": 0.3, "spatial": 0.1, "identity": 0.0})
    assert engine_mod.type_probabilities(rates, "uniform") == {t: 0.25 for t in rates}
    assert engine_mod.type_probabilities({t: 0.0 for t in rates}, "adaptive") == {t: 0.25 for t in rates}
    n = 20000
    drawn = Counter(engine_mod.sample_types(probs, n, random.Random(123)))
    assert drawn["identity"] == 0
    kept = ["count", "existence", "spatial"]
    _, p = stats.chisquare([drawn[t] for t in kept], [probs[t] * n for t in kept])
    assert p > 0.001, (drawn, p)
    # a skewed sampler (the rates squared, renormalised) is rejected by the same test
    skew = {t: rates[t] ** 2 / sum(r ** 2 for r in rates.values()) for t in kept}
    wrong = Counter(engine_mod.sample_types(skew, n, random.Random(123)))
    assert stats.chisquare([wrong[t] for t in kept], [probs[t] * n for t in kept])[1] < 1e-6


def graph(index, objects):
    g = hand_scene()
    scene = type(g.scene)(index, "train", objects, (0, 0, 0), (0, 0, 0), 0.0)
    return tb.SceneGraph(scene, f"images/img{index}.jpg", 96, [])


def test_plan_uses_neighbours_for_half_the_requests_and_skips_crowded_images(tmp_path):
    base = hand_scene().scene.objects
    crowded = graph(9, base * 4)                  # 12 objects: more than max_boxes
    pool = [graph(i, base[: 1 + i % 3]) for i in range(8)] + [crowded]
    bad = {"count": [{"id": "v1", "image": "images/img0.jpg", "qtype": "count"},
                     {"id": "v2", "image": "images/img1.jpg", "qtype": "count"}]}
    neighbours = engine_mod.SceneNeighbours(pool, pool, tmp_path)
    cfg = {"max_boxes": 10, "budget": 2000, "in_context": 2, "neighbour_fraction": 0.5, "neighbours": {"k": 3}}
    plan = engine_mod.plan_requests({"count": 1.0, "existence": 0.0}, bad, pool, neighbours,
                                    engine_mod.ARMS["targeted"], cfg, 7, "t", tmp_path)
    assert {p["qtype"] for p in plan} == {"count"} and all(len(p["bad_cases"]) == 2 for p in plan)
    assert "img9" not in {p["image"] for p in plan}
    near = sum(p["near_bad_case"] for p in plan)
    assert stats.binomtest(near, len(plan), 0.5).pvalue > 0.001
    # neighbours of img0 / img1 (1 and 2 objects) are the images with the same objects: i % 3 in (0, 1)
    assert all(int(p["image"][3:]) % 3 in (0, 1) for p in plan if p["near_bad_case"])
    no_icl = engine_mod.plan_requests({"count": 1.0, "existence": 0.0}, bad, pool, neighbours,
                                      engine_mod.ARMS["no_icl"], cfg, 7, "t", tmp_path)
    assert not any(p["bad_cases"] or p["near_bad_case"] for p in no_icl)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("de_world") / "world_tiny"
    generate_world("tiny", 0, out, progress=False)
    return out


def engine_cfg(world, out):
    overrides = [f"datasets.llava_instruct.data_path={world}/llava/instruct_{{split}}.json",
                 f"datasets.llava_instruct.image_root={world}",
                 f"datasets.typed_mc.data_path={world}/dataengine/llava_mc_shuffled_{{split}}.json",
                 f"datasets.typed_mc.image_root={world}",
                 f"datasets.typed_direct.data_path={world}/dataengine/llava_direct_{{split}}.json",
                 f"datasets.typed_direct.image_root={world}", "run.batch_size=2", "evaluation.batch_size=64",
                 "evaluation.max_samples=30"]
    cfg = load_tool_config("data_engine", REPO / "train_configs" / "dataengine_tiny_loop.yaml",
                           [f"world={world}", f"out={out}", "arms=[targeted]", "budget=12", "base_steps=2",
                            "round_steps=2", "generator.chunk=4"])
    cfg["overrides"] = overrides
    return cfg


class FailingOnce:
    """The oracle generator whose backend fails for the second chunk of round 2 (first call only)."""

    calls = 0

    def __init__(self, inner):
        self.inner = inner

    def generate(self, requests):
        if "_r2_" in requests[0].item_id and requests[0].item_id.endswith("04") and FailingOnce.calls == 0:
            FailingOnce.calls += 1
            raise gens.EndpointFailed("HTTP 503 after 5 retries")
        return self.inner.generate(requests)


def outputs(out: Path):
    files = {}
    for path in sorted(out.rglob("*")):
        if path.suffix in (".json", ".jsonl") and "/model/" not in str(path) and path.name not in ("report.json", "stages.jsonl"):
            files[str(path.relative_to(out))] = path.read_text()
    return files


def test_two_rounds_resume_after_an_interruption_with_the_same_result(world, tmp_path, monkeypatch):
    reference = engine_mod.DataEngine(engine_cfg(world, tmp_path / "a"), REPO)
    reference.run()
    original = gens.build_generator
    monkeypatch.setattr(gens, "build_generator", lambda *a, **k: FailingOnce(original(*a, **k)))
    shutil.copytree(tmp_path / "a" / "round_0", tmp_path / "b" / "round_0")   # the base model is shared: skipped
    interrupted = engine_mod.DataEngine(engine_cfg(world, tmp_path / "b"), REPO)
    with pytest.raises(engine_mod.RoundStopped, match="rerun to resume"):
        interrupted.run()
    data = tmp_path / "b" / "targeted" / "round_2" / "data"
    assert (data / "plan.json").is_file() and len(list((data / "chunks").glob("*.json"))) == 1
    assert not (data / "counts.json").exists() and not (data / "engine_llava.json").exists()   # nothing half-written
    interrupted.run()
    a, b = outputs(tmp_path / "a"), outputs(tmp_path / "b")
    assert a.keys() == b.keys() and a == b
    counts = json.loads((data / "counts.json").read_text())
    assert counts["requests"] == 12 and counts["kept"] + sum(counts["rejected_by_reason"].values()) == 12
    assert counts["engine_items_so_far"] == counts["kept"] + json.loads(
        (tmp_path / "b" / "targeted" / "round_1" / "data" / "counts.json").read_text())["kept"]
    metrics = json.loads((tmp_path / "b" / "targeted" / "round_2" / "eval" / "metrics.json").read_text())
    assert set(metrics) == {"val", "test"} and metrics["test"]["n"] == 30 == sum(v["n"] for v in metrics["test"]["by_qtype"].values())
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert len(report["weakest"]) == 2 and (tmp_path / "b" / "report.png").is_file()


def test_a_round_with_nothing_kept_trains_on_the_base_mixture(world, tmp_path):
    engine = engine_mod.DataEngine(engine_cfg(world, tmp_path / "c"), REPO)
    data = engine.round_dir("targeted", 1).data
    data.mkdir(parents=True)
    (data / "counts.json").write_text(json.dumps({"engine_items_so_far": 0}))
    options = engine.train_options("targeted", 1)
    assert not any(o.startswith("datasets.engine") for o in options)
    assert f"model.checkpoint={tmp_path / 'c' / 'round_0' / 'model' / 'final'}" in options
    (data / "counts.json").write_text(json.dumps({"engine_items_so_far": 3}))
    assert "datasets.engine.sample_ratio=0.4" in engine.train_options("targeted", 1)
