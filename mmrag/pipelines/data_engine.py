"""The MLLM-DataEngine loop: evaluate -> per-type error rates -> Adaptive Bad-case Sampling ->
targeted generation -> oracle check -> retrain, round after round, as a resumable stage pipeline.

Stages (run by `mmrag.pipelines.stages.run_stages`; a stage whose outputs exist is skipped):

    benchmark              the world's typed benchmark (world/dataengine/, `write_typed_benchmark`)
    round_0_train / _eval  the base model (`model_config`, `base_steps`) and its val + test evaluation
    <arm>_r<r>_generate    `budget` requests: a type drawn with probability proportional to its val
                           error rate (adaptive) or uniformly; `in_context` bad cases of that type;
                           half the images (`neighbour_fraction`) near a bad case's image through a
                           Retriever, the rest random train images; images with more than `max_boxes`
                           objects skipped; the generator's replies parsed and oracle-checked; the
                           type definitions refined (IADS) where most of a type's items failed
    <arm>_r<r>_train       fine-tune from the previous round on the model's mixture plus the arm's
                           engine data so far (dataset `engine`, `sample_ratio`)
    <arm>_r<r>_eval        val + test; per-type accuracy and error rates
    report                 the per-round table, the per-type plot, targeted-vs-control intervals

Arms (ARMS): `targeted` (adaptive types, bad cases in context), `uniform` (types uniform, bad cases
in context: only the type distribution differs), `no_icl` (adaptive types, no bad cases: no steering,
random images). Every file is written atomically; generation is planned up front (plan.json) and
written in chunks, so a run stopped mid-round (an endpoint that keeps failing raises `RoundStopped`
after the client's retries) resumes at the next chunk with the same result.
"""
from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from mmrag.common.errors import ConfigError, UserError
from mmrag.common.jsonl import read_jsonl, write_json
from mmrag.common.tool_config import register_tool
from mmrag.datasets import dataengine_items as de
from mmrag.datasets.world import typed_benchmark as tb
from mmrag.pipelines import data_engine_generators as gens
from mmrag.pipelines.stages import Stage, run_stages, stage_report
from mmrag.retrievers.base import Hit, Hits, Query, as_query, build_retriever, check_exclude

ARMS = {"targeted": {"sampling": "adaptive", "in_context": True},
        "uniform": {"sampling": "uniform", "in_context": True},
        "no_icl": {"sampling": "adaptive", "in_context": False}}

DEFAULTS = register_tool("data_engine", {
    "world": "dataset/world_small",        # a world folder (mmrag-make-world); its typed benchmark is written first
    "out": "output/dataengine_small",
    "seed": 0,
    "model_config": "train_configs/dataengine_small_model.yaml",   # the model + its base mixture
    "eval_config": "eval_configs/dataengine_small_eval.yaml",      # vqa_eval of one view
    "overrides": [],                       # key=value for every training and evaluation (e.g. model.checkpoint)
    "base_steps": 300,                     # round 0: training steps of the base model (0: use model.checkpoint as is)
    "round_steps": 150,                    # fine-tuning steps per round
    "round_lr": 1.0e-3,                    # init_lr of the fine-tuning rounds
    "rounds": 2,
    "budget": 1000,                        # generation requests per round (kept items are fewer)
    "sample_ratio": 0.3,                   # the engine data's weight in the runner's mixture
    "views": ["mc_shuffled", "direct"],    # views of the engine items trained on
    "eval_view": "mc_shuffled",            # the benchmark view evaluated (error rates, bad cases, report)
    "eval_splits": ["val", "test"],        # val: error rates and bad cases; test: the report
    "eval_max_samples": 0,                 # first questions per split (0: all)
    "eval_max_new_tokens": 0,              # 0: 2 for the lettered views, 8 for direct answers
    "in_context": 2,                       # bad cases shown per request (arms with in-context examples)
    "neighbour_fraction": 0.5,             # share of requests whose image is a neighbour of a bad case's image
    "neighbours": {"retriever": "scene", "k": 8, "database": None, "embedder": {}},  # scene | image_database
    "max_boxes": 10,                       # images with more objects are skipped
    "arms": ["targeted", "uniform", "no_icl"],
    "generator": {"type": "oracle", "steer": 0.8, "max_tokens": 160, "temperature": 0.0, "chunk": 64,
                  "backend": {}},
    "refine": {"threshold": 0.5, "min_requests": 5},
    "in_process": True,                    # train / evaluate in this process (else python train.py / eval.py)
}, choices={"eval_view": de.VIEWS, "neighbours.retriever": ("scene", "image_database"),
            "generator.type": gens.GENERATORS}, open_keys=("generator.backend", "neighbours.embedder"))


class RoundStopped(UserError, RuntimeError):
    """A round stopped cleanly (its finished chunks are kept); rerunning resumes it."""


# ----------------------------------------------------------------------------- sampling
def type_probabilities(error_rates: Dict[str, float], sampling: str) -> Dict[str, float]:
    """adaptive: p(type) = error rate / sum of error rates (uniform when every rate is 0); uniform: 1/n."""
    types = sorted(error_rates)
    total = sum(max(0.0, error_rates[t]) for t in types)
    if sampling == "uniform" or total <= 0:
        return {t: 1.0 / len(types) for t in types}
    if sampling != "adaptive":
        raise ConfigError(f"sampling={sampling!r}: expected adaptive or uniform")
    return {t: max(0.0, error_rates[t]) / total for t in types}


def sample_types(probabilities: Dict[str, float], n: int, rng: random.Random) -> List[str]:
    types = sorted(probabilities)
    return rng.choices(types, weights=[probabilities[t] for t in types], k=n)


class SceneNeighbours:
    """A Retriever over scene graphs: images whose objects (kind, colour, pattern) overlap most
    (Jaccard), for worlds without a CLIP image database. Hits are `pool` images, absolute paths."""

    def __init__(self, graphs: Sequence[tb.SceneGraph], pool: Sequence[tb.SceneGraph], root: Path) -> None:
        self.root = Path(root)
        self.features = {g.image_id: self._features(g) for g in graphs}
        self.pool = [(g.image_id, self.features.get(g.image_id) or self._features(g), g.image) for g in pool]

    @staticmethod
    def _features(g: tb.SceneGraph) -> frozenset:
        out = set()
        for o in g.scene.objects:
            out.add(o.word)
            if o.entity is not None:
                out |= {f"{o.word}:{o.entity.signature.colour}", f"{o.word}:{o.entity.signature.pattern}", o.label}
        return frozenset(out)

    def retrieve(self, queries, k: int, exclude: str = "self") -> List[Hits]:
        check_exclude(exclude)
        out = []
        for q in map(as_query, queries):
            qid = q.id or Path(str(q.image)).stem
            feats = self.features.get(Path(str(q.image)).stem, frozenset())
            scored = sorted(((len(feats & f) / max(1, len(feats | f)), iid, image) for iid, f, image in self.pool
                             if not (exclude == "self" and iid == qid)), key=lambda s: (-s[0], s[1]))
            out.append(Hits([Hit(iid, score, str(self.root / image)) for score, iid, image in scored[:k]]))
        return out


def build_neighbours(cfg: Dict[str, Any], graphs, pool, root: Path):
    if cfg["retriever"] == "scene":
        return SceneNeighbours(graphs, pool, root)
    return build_retriever("image_database", {"database": cfg["database"], "embedder": cfg.get("embedder") or {}})


def plan_requests(error_rates: Dict[str, float], bad_cases: Dict[str, List[de.Item]], pool: Sequence[tb.SceneGraph],
                  neighbours, arm: Dict[str, Any], cfg: Dict[str, Any], seed: int, id_prefix: str,
                  root: Path) -> List[Dict[str, Any]]:
    """The round's requests (qtype, image, bad-case ids, item id, seed, neighbour?), planned from a seed."""
    rng = random.Random(seed)
    usable = [g for g in pool if len(g.scene.objects) <= cfg["max_boxes"]]
    if not usable:
        raise ConfigError(f"max_boxes={cfg['max_boxes']}: every candidate image has more objects")
    by_image = {g.image_id: g for g in usable}
    types = sample_types(type_probabilities(error_rates, arm["sampling"]), cfg["budget"], rng)
    plan = []
    for n, qtype in enumerate(types):
        cases = bad_cases.get(qtype, []) if arm["in_context"] else []
        shown = rng.sample(cases, min(cfg["in_context"], len(cases))) if cases else []
        image, near = None, False
        if shown and rng.random() < cfg["neighbour_fraction"]:
            anchor = rng.choice(shown)
            hits = neighbours.retrieve([Query(id=Path(anchor["image"]).stem, image=str(root / anchor["image"]))],
                                       cfg["neighbours"]["k"])[0]
            candidates = [Path(h.image).stem for h in hits if h.image and Path(h.image).stem in by_image]
            if candidates:
                image, near = rng.choice(candidates), True
        if image is None:
            image = rng.choice(usable).image_id
        plan.append({"qtype": qtype, "image": image, "bad_cases": [b["id"] for b in shown], "near_bad_case": near,
                     "item_id": f"{id_prefix}_{n:06d}", "seed": rng.randrange(2 ** 31)})
    return plan


# ----------------------------------------------------------------------------- evaluation read-back
def per_type_metrics(eval_dir: Path, question_file: Path, split: str) -> Dict[str, Any]:
    """Overall and per-qtype accuracy of one split from vqa_eval's answers file (qtype from the question file)."""
    qtype = {r["question_id"]: r["qtype"] for r in read_jsonl(question_file)}
    rows = read_jsonl(eval_dir / f"answers_{split}.jsonl")
    by_type: Dict[str, List[float]] = defaultdict(list)
    for row in rows:
        by_type[qtype[row["question_id"]]].append(float(row["correct"]))
    types = {t: {"accuracy": sum(v) / len(v), "error_rate": 1 - sum(v) / len(v), "n": len(v)} for t, v in sorted(by_type.items())}
    return {"accuracy": sum(float(r["correct"]) for r in rows) / max(1, len(rows)), "n": len(rows), "by_qtype": types,
            "correct": {r["question_id"]: float(r["correct"]) for r in rows}}


def bad_cases_of(eval_dir: Path, items: Sequence[de.Item], split: str = "val") -> Dict[str, List[de.Item]]:
    """qtype -> the split's items the model answered wrongly (with its prediction)."""
    wrong = {r["question_id"]: r["prediction"] for r in read_jsonl(eval_dir / f"answers_{split}.jsonl") if not r["correct"]}
    out: Dict[str, List[de.Item]] = defaultdict(list)
    for item in items:
        if item["id"] in wrong:
            out[item["qtype"]].append({**item, "prediction": wrong[item["id"]]})
    return dict(out)


# ----------------------------------------------------------------------------- the engine
@dataclass
class RoundPaths:
    root: Path

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def data(self) -> Path:
        return self.root / "data"


class DataEngine:
    """The loop's stages and the work each one does; see the module doc."""

    def __init__(self, cfg: Dict[str, Any], repo_root: Path = Path("."), generator_backend=None) -> None:
        self.cfg, self.repo = cfg, Path(repo_root)
        self.world = self._abs(cfg["world"])
        self.out = self._abs(cfg["out"])
        self.backend = generator_backend   # a ChatBackend given by the caller (tests); else built from the config
        backend = cfg["generator"].get("backend") or {}
        for key in ("path", "cache_dir"):   # local model folder and reply cache: relative to the repository
            if backend.get(key):
                backend[key] = str(self._abs(backend[key]))
        unknown = [a for a in cfg["arms"] if a not in ARMS]
        if unknown:
            raise ConfigError(f"data_engine: arms {unknown} unknown; known: {', '.join(ARMS)}")
        self._graphs: Optional[Dict[str, tb.SceneGraph]] = None

    def _abs(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self.repo / p

    # -- paths
    def round_dir(self, arm: Optional[str], r: int) -> RoundPaths:
        return RoundPaths(self.out / "round_0" if r == 0 else self.out / arm / f"round_{r}")

    def bench_file(self, kind: str, split: str, view: Optional[str] = None) -> Path:
        name = f"items_{split}.json" if kind == "items" else f"eval_{view}_{split}.jsonl"
        return self.world / tb.SUBDIR / name

    # -- world
    def graphs(self) -> Dict[str, tb.SceneGraph]:
        if self._graphs is None:
            loaded = tb.load_scene_graphs(self.world)
            self._graphs = {g.image_id: g for split in loaded.values() for g in split}
        return self._graphs

    def train_pool(self) -> List[tb.SceneGraph]:
        items, _ = de.read_items(self.bench_file("items", "train"), tb.QTYPES)
        ids = sorted({Path(it["image"]).stem for it in items})
        return [self.graphs()[i] for i in ids]

    # -- stages
    def stages(self) -> List[Stage]:
        out = self.out
        rel = lambda p: str(p)  # noqa: E731  (outputs are absolute; run_stages joins them onto the root)
        stages = [Stage("benchmark", [rel(self.world / tb.SUBDIR / "counts.json")], ["write_typed_benchmark", str(self.world)],
                        run=lambda: tb.write_typed_benchmark(self.world, self.cfg["seed"]))]
        base = self.round_dir(None, 0)
        stages += [Stage("round_0_train", [rel(base.model / "final" / "trainable.safetensors")], ["train", "round_0"],
                         run=lambda: self.train(None, 0)),
                   Stage("round_0_eval", [rel(base.eval / "metrics.json")], ["eval", "round_0"], run=lambda: self.evaluate(None, 0))]
        if self.cfg["base_steps"] == 0:
            stages[1] = Stage("round_0_train", [rel(base.model / "base.json")], ["link", "model.checkpoint"],
                              run=lambda: self.link_base())
        for arm in self.cfg["arms"]:
            for r in range(1, self.cfg["rounds"] + 1):
                paths = self.round_dir(arm, r)
                stages += [
                    Stage(f"{arm}_r{r}_generate", [rel(paths.data / "counts.json")], ["generate", arm, str(r)],
                          run=lambda a=arm, k=r: self.generate(a, k)),
                    Stage(f"{arm}_r{r}_train", [rel(paths.model / "final" / "trainable.safetensors")], ["train", arm, str(r)],
                          run=lambda a=arm, k=r: self.train(a, k)),
                    Stage(f"{arm}_r{r}_eval", [rel(paths.eval / "metrics.json")], ["eval", arm, str(r)],
                          run=lambda a=arm, k=r: self.evaluate(a, k))]
        return stages

    def run(self, force: Sequence[str] = (), only: Optional[Sequence[str]] = None) -> Dict[str, Any]:
        from mmrag.pipelines import data_engine_report

        stages = self.stages()
        run_stages(stages, Path("/"), self.out, force=force, only=only)
        result = data_engine_report.report(self)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "report.md").write_text(result["table"] + "\n" + "\n".join(stage_report(stages, self.out)) + "\n")
        return result

    # -- training and evaluation
    def previous_model(self, arm: Optional[str], r: int) -> Optional[Path]:
        if r == 0:
            return None
        prev = self.round_dir(arm if r > 1 else None, r - 1).model
        if r == 1 and self.cfg["base_steps"] == 0:
            return Path(json.loads((prev / "base.json").read_text())["checkpoint"])
        return prev / "final"

    def link_base(self) -> None:
        from mmrag.common.config import build_config

        cfg = build_config(str(self._abs(self.cfg["model_config"])), list(self.cfg["overrides"]))
        if not cfg.model.get("checkpoint"):
            raise ConfigError("data_engine: base_steps=0 needs model.checkpoint (the model to engine) in the model config "
                              "or the overrides")
        write_json(self.round_dir(None, 0).model / "base.json", {"checkpoint": str(self._abs(cfg.model.checkpoint))})

    def train_options(self, arm: Optional[str], r: int) -> List[str]:
        paths = self.round_dir(arm, r)
        seed = 1000 * int(self.cfg["seed"]) + r   # the same training seed for every arm of a round
        opts = [f"run.output_dir={paths.model}", f"run.seed={seed}", "run.resume=auto", "run.evaluate=false",
                "run.progress=false", *self.cfg["overrides"]]
        if r == 0:
            return opts + [f"run.max_steps={self.cfg['base_steps']}"]
        engine = paths.data / "engine_llava.json"
        opts += [f"model.checkpoint={self.previous_model(arm, r)}", f"run.max_steps={self.cfg['round_steps']}",
                 f"run.init_lr={self.cfg['round_lr']}", "run.warmup_steps=0"]
        if not json.loads((paths.data / "counts.json").read_text())["engine_items_so_far"]:
            return opts   # nothing kept yet (e.g. a weak LLM generator): the round trains on the base mixture
        return opts + ["datasets.engine.builder=llava_instruct", f"datasets.engine.data_path={engine}",
                       f"datasets.engine.image_root={self.world}", f"datasets.engine.sample_ratio={self.cfg['sample_ratio']}"]

    def train(self, arm: Optional[str], r: int) -> None:
        from mmrag.pipelines.seeing import train_stage

        self._run_or_spawn(train_stage, "train.py", self.cfg["model_config"], self.train_options(arm, r))

    def evaluate(self, arm: Optional[str], r: int) -> None:
        from mmrag.pipelines.seeing import eval_stage

        paths, view = self.round_dir(arm, r), self.cfg["eval_view"]
        model = self.previous_model(None, 1) if (r == 0 and self.cfg["base_steps"] == 0) else paths.model / "final"
        scorer = "exact_match" if view == "direct" else "multiple_choice"
        opts = [f"model.checkpoint={model}", f"run.output_dir={paths.eval}",
                f"evaluation.question_file={self.world / tb.SUBDIR}/eval_{view}_{{split}}.jsonl",
                f"evaluation.image_root={self.world}", f"evaluation.splits=[{','.join(self.cfg['eval_splits'])}]",
                f"evaluation.scorer={scorer}", f"evaluation.max_samples={self.cfg['eval_max_samples'] or 'null'}",
                f"evaluation.max_new_tokens={self.cfg['eval_max_new_tokens'] or (8 if view == 'direct' else 2)}",
                *self.cfg["overrides"]]
        self._run_or_spawn(eval_stage, "eval.py", self.cfg["eval_config"], opts)
        metrics = {split: per_type_metrics(paths.eval, self.bench_file("eval", split, view), split)
                   for split in self.cfg["eval_splits"]}
        write_json(paths.eval / "metrics.json", metrics)

    def _run_or_spawn(self, runner, script: str, cfg_path: str, options: List[str]) -> None:
        if self.cfg["in_process"]:
            runner(self.repo, cfg_path, options)
            return
        import subprocess
        import sys

        code = subprocess.run([sys.executable, script, "--cfg-path", cfg_path, *options], cwd=self.repo).returncode
        if code:
            raise RoundStopped(f"{script} --cfg-path {cfg_path} exited with {code}; rerun to resume")

    # -- generation
    def generate(self, arm: str, r: int) -> None:
        """Plan, generate in chunks (resumable), oracle-check, refine definitions, write the round's data."""
        cfg, paths = self.cfg, self.round_dir(arm, r)
        prev_eval = self.round_dir(arm if r > 1 else None, r - 1).eval
        metrics = json.loads((prev_eval / "metrics.json").read_text())["val"]
        val_items, report = de.read_items(self.bench_file("items", "val"), tb.QTYPES)
        error_rates = {t: metrics["by_qtype"].get(t, {"error_rate": 1.0})["error_rate"] for t in tb.QTYPES}
        bad = bad_cases_of(prev_eval, val_items)
        plan_file = paths.data / "plan.json"
        if not plan_file.is_file():
            pool = self.train_pool()
            neighbours = build_neighbours(cfg["neighbours"], list(self.graphs().values()), pool, self.world)
            seed = round_seed(cfg["seed"], r)
            plan = plan_requests(error_rates, bad, pool, neighbours, ARMS[arm], cfg, seed, f"engine_{arm}_r{r}", self.world)
            write_json(plan_file, {"error_rates": error_rates, "probabilities":
                                   type_probabilities(error_rates, ARMS[arm]["sampling"]), "requests": plan})
        plan = json.loads(plan_file.read_text())["requests"]
        definitions = self.definitions(arm, r)
        generator = gens.build_generator(cfg["generator"], tb.entity_names_by_category(list(self.graphs().values())),
                                         definitions, self.backend)
        bad_by_id = {b["id"]: b for cases in bad.values() for b in cases}
        chunk = int(cfg["generator"]["chunk"])
        for start in range(0, len(plan), chunk):
            path = paths.data / "chunks" / f"{start // chunk:05d}.json"
            if path.is_file():
                continue
            requests = [gens.Request(p["qtype"], self.graphs()[p["image"]], [bad_by_id[b] for b in p["bad_cases"]],
                                     p["item_id"], p["seed"]) for p in plan[start:start + chunk]]
            try:
                results = gens.oracle_checked(generator.generate(requests), requests)
            except gens.EndpointFailed as err:
                raise RoundStopped(f"{arm} round {r}: generation stopped at request {start} of {len(plan)}: {err}; "
                                   f"finished chunks are kept, rerun to resume") from err
            write_json(path, [{"item": g.item, "reason": g.reason, "qtype": q.qtype, "reply": g.reply}
                              for g, q in zip(results, requests)])
        self.finish_round(arm, r, plan, definitions, report)

    def definitions(self, arm: str, r: int) -> gens.TypeDefinitions:
        if r > 1:
            state = json.loads((self.round_dir(arm, r - 1).data / "definitions.json").read_text())
            return gens.TypeDefinitions.from_state(state)
        return gens.TypeDefinitions.load(tb.QTYPES)

    def finish_round(self, arm: str, r: int, plan, definitions: gens.TypeDefinitions, report) -> None:
        paths = self.round_dir(arm, r)
        rows = [row for f in sorted((paths.data / "chunks").glob("*.json")) for row in json.loads(f.read_text())]
        kept = [row["item"] for row in rows if row["item"] is not None]
        reasons: Dict[str, Counter] = defaultdict(Counter)
        for row in rows:
            reasons[row["qtype"]][row["reason"]] += 1
        revisions = [rev for t in tb.QTYPES if (rev := definitions.refine(
            t, reasons[t], sum(reasons[t].values()), r, self.cfg["refine"]["threshold"], self.cfg["refine"]["min_requests"]))]
        so_far = list(kept)
        if r > 1:
            so_far = json.loads((self.round_dir(arm, r - 1).data / "engine_items.json").read_text()) + kept
        write_json(paths.data / "items.json", kept)
        write_json(paths.data / "engine_items.json", so_far)
        write_json(paths.data / "engine_llava.json", de.llava_records(so_far, self.cfg["views"], self.cfg["seed"]))
        write_json(paths.data / "definitions.json", definitions.state())
        counts = {"requests": len(plan), "kept": len(kept), "engine_items_so_far": len(so_far),
                  "near_bad_case": sum(p["near_bad_case"] for p in plan),
                  "requested_by_qtype": dict(Counter(p["qtype"] for p in plan)),
                  "kept_by_qtype": dict(Counter(it["qtype"] for it in kept)),
                  "rejected_by_reason": dict(Counter(row["reason"] for row in rows if row["item"] is None)),
                  "benchmark_rows_skipped": report.lines(), "revisions": revisions}
        write_json(paths.data / "counts.json", counts)   # last: its presence marks the round's data complete


def round_seed(seed: int, r: int) -> int:
    """The plan seed of round r, the same for every arm (their designs, not their draws, differ)."""
    return int(seed) * 7919 + r


def load_engine(cfg_file: Optional[str], overrides: Sequence[str] = (), repo_root: Path = Path("."),
                generator_backend=None) -> DataEngine:
    from mmrag.common.tool_config import load_tool_config

    return DataEngine(load_tool_config("data_engine", cfg_file, overrides), repo_root, generator_backend)
