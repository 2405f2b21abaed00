"""CaMML on a world (or any ScienceQA-layout folder): benchmark, context database, training, evaluation, report.

Stages (resumable: a stage whose outputs exist is skipped; `--force NAME` reruns one):

    benchmark        <world>/scienceqa/ (mmrag.datasets.world.scienceqa.write_scienceqa), unless present
    neighbours       the context database (<out>/db) and neighbours files <out>/neighbours/
                     retrieved_{train,val,test}.json (mmrag.retrievers.context_examples: training
                     problems never retrieve themselves) and random_{split}.json (seeded uniform
                     draws from the training problems, self excluded): the "random examples" baseline
    train_base       train_configs/camml_world_small_base.yaml      no context
    train_camml      train_configs/camml_world_small.yaml           camml_perceiver, random-shot k in [1, 3]
    train_text_icl   train_configs/camml_world_small_text_icl.yaml  the examples as prompt text + images
    eval_<name>      one evaluation of `EVALS` on `evaluation.split`: answers_<split>.jsonl (prediction,
                     correct, LLM tokens of the prompt) and results.json (accuracy, IMG / TXT / NO)
    report           <out>/report.md + report.json: the table, paired-bootstrap differences, image
                     controls, retrieval answer-hit rates, stage seconds

Image controls replace the QUERY image only (the retrieved examples keep theirs): blank (mid-grey),
shuffled (a seeded derangement of the evaluated problems' images), text_only (no query image).
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from mmrag.common.errors import ConfigError
from mmrag.common.jsonl import read_jsonl, write_json, write_jsonl
from mmrag.common.tool_config import register_tool
from mmrag.datasets.scienceqa import IMAGE_TOKEN, read_scienceqa
from mmrag.metrics.bootstrap import format_difference, paired_bootstrap
from mmrag.metrics.scienceqa import ScienceQAScorer
from mmrag.pipelines.stages import Stage, run_pipeline_stages, stage_report

WORLD_CLIP = {"type": "open_clip", "model_name": "local-dir:output/clip_world_small/final", "model_cfg": None,
              "pretrained": "output/clip_world_small/final/open_clip_model.safetensors", "device": "cpu",
              "num_workers": 0}
EVALS_ORDER = ("base", "camml", "camml_1shot", "camml_2shot", "camml_random", "text_icl")
DEFAULTS: Dict[str, Any] = register_tool("run_camml", {
    "world": "dataset/world_small",      # a world folder (its scienceqa/ is written when missing) ...
    "data_path": None,                   # ... or a ScienceQA-layout folder (real ScienceQA: no benchmark stage)
    "seed": 0,                           # the benchmark writer's and the random baseline's seed
    "out": "output/camml_world_small",
    "train_configs": {"base": "train_configs/camml_world_small_base.yaml",
                      "camml": "train_configs/camml_world_small.yaml",
                      "text_icl": "train_configs/camml_world_small_text_icl.yaml"},
    "overrides": [],                     # key=value for every training and evaluation config
    "retriever": {"rows": "image", "query": "image", "k_train": 10, "k_eval": 4, "prompt_format": "QCM-A",
                  "embedder": WORLD_CLIP},
    "evaluation": {"split": "test", "max_samples": 0, "every": 1, "batch_size": 32, "max_new_tokens": 8,
                   "controls": ["none", "blank", "shuffled", "text_only"], "icl_num": 3,
                   "runs": list(EVALS_ORDER)},   # which of EVALS to run (the report skips comparisons of absent ones)
}, open_keys=("retriever.embedder", "train_configs"))

# name -> (trained variant, context mode, neighbours kind, shots or None for evaluation.icl_num, controls?)
EVALS: Dict[str, tuple] = {
    "base": ("base", "none", None, 0, True),
    "camml": ("camml", "camml", "retrieved", None, True),
    "camml_1shot": ("camml", "camml", "retrieved", 1, False),
    "camml_2shot": ("camml", "camml", "retrieved", 2, False),
    "camml_random": ("camml", "camml", "random", None, False),
    "text_icl": ("text_icl", "text_icl", "retrieved", None, False),
}


# ----------------------------------------------------------------------------- neighbours
def random_neighbours(data_path: str, split: str, example_split: str, k: int, seed: int) -> Dict[str, Any]:
    """Uniform draws (seeded per problem id) of `k` training problems per problem, never itself."""
    pool = [it["id"] for it in read_scienceqa(data_path, example_split)]
    out = {}
    for it in read_scienceqa(data_path, split):
        candidates = [p for p in pool if p != it["id"]]
        out[it["id"]] = random.Random(f"{seed}:{it['id']}").sample(candidates, min(k, len(candidates)))
    return {"split": split, "k": k, "kind": "random", "seed": seed, "neighbours": out}


def write_all_neighbours(cfg: Dict[str, Any], root: Path) -> None:
    from mmrag.retrievers.context_examples import ContextExampleRetriever

    out, data = root / cfg["out"] / "neighbours", data_path_of(cfg, root)
    retriever = ContextExampleRetriever({**cfg["retriever"], "database": str(root / cfg["out"] / "db"),
                                         "data_path": str(data)})
    for split in ("train", "val", "test"):
        retriever.write_neighbours(split, out / f"retrieved_{split}.json")
        k = cfg["retriever"]["k_train" if split == "train" else "k_eval"]
        write_json(out / f"random_{split}.json", random_neighbours(str(data), split, "train", k, cfg["seed"]))


def data_path_of(cfg: Dict[str, Any], root: Path) -> Path:
    return root / (cfg["data_path"] or f"{cfg['world']}/scienceqa")


def _rel(path: Path, root: Path) -> str:
    """`path` relative to `root` when it lies under it (shorter commands), else absolute."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- training and evaluation
def train_variant(root: Path, cfg_path: str, options: Sequence[str]) -> None:
    """`python train.py --cfg-path <cfg_path> <options>` in this process."""
    from mmrag.common.config import build_config
    from mmrag.common.registry import RUNNERS, TASKS

    cfg = build_config(str(root / cfg_path), list(options))
    RUNNERS.get(cfg.run.runner)(cfg, TASKS.get(cfg.run.task)(cfg)).train()


def apply_control(records: List[Dict[str, Any]], control: str, seed: int, folder: Path) -> None:
    """Replace each record's query image (its last image) per `control`, in place."""
    from mmrag.tasks.vqa_eval import blank_image, derangement

    with_image = [r for r in records if r["item"]["has_image"]]
    if control == "none" or not with_image:
        return
    if control == "shuffled":
        mapping = derangement(sorted({r["images"][-1] for r in with_image}), seed)
    for rec in with_image:
        query = rec["images"][-1]
        if control == "blank":
            rec["images"][-1] = blank_image(query, folder)
        elif control == "shuffled":
            rec["images"][-1] = mapping[query]
        elif control == "text_only":
            rec["images"] = rec["images"][:-1]
            head, _, tail = rec["conversations"][0]["value"].rpartition(f"{IMAGE_TOKEN}\n")
            rec["conversations"] = [{**rec["conversations"][0], "value": head + tail}, *rec["conversations"][1:]]
        else:
            raise ConfigError(f"evaluation.controls: unknown image control {control!r}")


def subsample(dataset, every: int):
    """Every `every`-th problem of the split (all kinds keep their share), in place."""
    if every > 1:
        dataset.records = dataset.records[::every]
        if dataset.shots is not None:
            dataset.shots = dataset.shots[::every]
    return dataset


def prompt_tokens(processor, dataset, i: int) -> int:
    """LLM positions of record i's prompt (text, image tokens and context tokens)."""
    rec = dataset.records[i]
    shots = len(dataset.shots[i]) if dataset.shots is not None else 0
    enc = processor.encode_conversation(rec["conversations"][:-1], len(rec["images"]), rec["id"], generation=True,
                                        num_examples=shots)
    return len(enc.input_ids)


def evaluate(root: Path, cfg: Dict[str, Any], name: str, control: str, folder: Path) -> Dict[str, Any]:
    """One evaluation of EVALS[name] under `control`: answers_<split>.jsonl and results.json in `folder`."""
    import torch

    from mmrag.common.config import build_config
    from mmrag.common.registry import TASKS
    from mmrag.datasets.scienceqa import ScienceQABuilder
    from mmrag.tasks.instruction_tuning import generate_answers

    variant, context, kind, shots, _ = EVALS[name]
    ev, out = cfg["evaluation"], cfg["out"]
    model_cfg = build_config(str(root / cfg["train_configs"][variant]),
                             [*cfg["overrides"], f"model.checkpoint={out}/train_{variant}/final",
                              f"datasets.sqa.data_path={data_path_of(cfg, root)}"])
    torch.manual_seed(0)
    task = TASKS.get(model_cfg.run.task)(model_cfg)
    model = task.build_model(model_cfg).eval()
    processor = task.build_processor(model_cfg, model)
    ds_cfg = model_cfg.datasets.sqa.copy()
    ds_cfg.context, ds_cfg.max_samples = context, ev["max_samples"] or None
    ds_cfg.icl_num = shots if shots is not None else ev["icl_num"]
    ds_cfg.neighbours = f"{out}/neighbours/{kind}_{{split}}.json" if kind else None
    dataset = subsample(ScienceQABuilder.build(ds_cfg, processor, ev["split"], "sqa"), ev["every"])
    apply_control(dataset.records, control, cfg["seed"], folder / "image_control")
    predictions = generate_answers(model, processor, dataset, ev["batch_size"], ev["max_new_tokens"], f"eval {name}")
    items = [r["item"] for r in dataset.records]
    scores, metrics = ScienceQAScorer().score(predictions, items)
    tokens = [prompt_tokens(processor, dataset, i) for i in range(len(dataset))]
    metrics.update({"llm_tokens_per_sample": sum(tokens) / len(tokens), "shots": 0 if context == "none" else ds_cfg.icl_num,
                    "control": control, "name": name})
    write_jsonl(folder / f"answers_{ev['split']}.jsonl", [
        {"id": it["id"], "prediction": p, "answer": it["answer"], "correct": s, "llm_tokens": t,
         "has_image": it["has_image"], "has_text": it["has_text"]}
        for it, p, s, t in zip(items, predictions, scores, tokens)])
    write_json(folder / "results.json", metrics)
    return metrics


# ----------------------------------------------------------------------------- stages
def eval_runs(cfg: Dict[str, Any]) -> List[tuple]:
    """(folder name, eval name, control) of every evaluation."""
    runs = []
    unknown = sorted(set(cfg["evaluation"]["runs"]) - set(EVALS))
    if unknown:
        raise ConfigError(f"run_camml: evaluation.runs: unknown {unknown}; known: {', '.join(EVALS)}")
    for name in cfg["evaluation"]["runs"]:
        controls = EVALS[name][4]
        for control in (cfg["evaluation"]["controls"] if controls else ["none"]):
            runs.append((f"eval_{name}" + ("" if control == "none" else f"_{control}"), name, control))
    return runs


def build_stages(cfg: Dict[str, Any], root: Path) -> List[Stage]:
    from mmrag.datasets.world.scienceqa import write_scienceqa

    out, data = cfg["out"], data_path_of(cfg, root)
    stages = [] if cfg["data_path"] else [
        Stage("benchmark", [_rel(data / "problems.json", root)],
              [f"mmrag.datasets.world.scienceqa.write_scienceqa {cfg['world']} {cfg['seed']}"],
              run=lambda: write_scienceqa(root / cfg["world"], cfg["seed"]))]
    stages += [
        Stage("neighbours", [f"{out}/neighbours/{kind}_{s}.json" for kind in ("retrieved", "random")
                             for s in ("train", "val", "test")],
              ["mmrag.pipelines.camml.write_all_neighbours"], stale=[f"{out}/db"],
              run=lambda: write_all_neighbours(cfg, root)),
    ]
    for variant, cfg_path in cfg["train_configs"].items():
        options = [*cfg["overrides"], f"run.output_dir={out}/train_{variant}",
                   f"datasets.sqa.data_path={_rel(data, root)}"]
        if variant != "base":
            options.append(f"datasets.sqa.neighbours={out}/neighbours/retrieved_{{split}}.json")
        argv = ["python", "train.py", "--cfg-path", cfg_path, *options]
        stages.append(Stage(f"train_{variant}", [f"{out}/train_{variant}/final/trainable.safetensors"], argv,
                            stale=[f"{out}/train_{variant}"],
                            run=(lambda p=cfg_path, o=options: train_variant(root, p, o))))
    for folder, name, control in eval_runs(cfg):
        stages.append(Stage(folder, [f"{out}/{folder}/results.json"], [f"mmrag.pipelines.camml.evaluate {name} {control}"],
                            stale=[f"{out}/{folder}"],
                            run=(lambda n=name, c=control, f=folder: evaluate(root, cfg, n, c, root / out / f))))
    return stages


# ----------------------------------------------------------------------------- report
def _scores(folder: Path, split: str) -> Dict[str, float]:
    return {r["id"]: float(r["correct"]) for r in read_jsonl(folder / f"answers_{split}.jsonl")}


def _predictions(folder: Path, split: str) -> Dict[str, str]:
    return {r["id"]: r["prediction"] for r in read_jsonl(folder / f"answers_{split}.jsonl")}


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def answer_hit_rate(cfg: Dict[str, Any], root: Path, kind: str, k: int) -> Dict[str, float]:
    """Share of evaluated problems with a training example among their first `k` neighbours whose
    correct option text equals theirs, per skill: how useful the examples could be."""
    data, split = data_path_of(cfg, root), cfg["evaluation"]["split"]
    train = {it["id"]: it for it in read_scienceqa(data, "train")}
    skills = {pid: p.get("skill", "") for pid, p in json.loads((data / "problems.json").read_text()).items()}
    nbs = json.loads((root / cfg["out"] / "neighbours" / f"{kind}_{split}.json").read_text())["neighbours"]
    hits: Dict[str, List[bool]] = {}
    for it in read_scienceqa(data, split)[: cfg["evaluation"]["max_samples"] or None][:: cfg["evaluation"]["every"]]:
        gold = it["choices"][it["answer_index"]]
        ok = any(train[n]["choices"][train[n]["answer_index"]] == gold for n in nbs[it["id"]][:k])
        hits.setdefault(skills.get(it["id"], ""), []).append(ok)
    return {s: sum(v) / len(v) for s, v in sorted(hits.items())}


COMPARISONS = (("camml", "base", "CaMML vs no-context base"), ("camml", "text_icl", "CaMML vs raw-text ICL (3 shots)"),
               ("camml", "camml_random", "retrieved vs random examples (CaMML)"), ("text_icl", "base", "raw-text ICL vs base"))


def report(cfg: Dict[str, Any], root: Path, stages: Sequence[Stage]) -> Dict[str, Any]:
    out, split = root / cfg["out"], cfg["evaluation"]["split"]
    runs = {folder: json.loads((out / folder / "results.json").read_text()) for folder, _, _ in eval_runs(cfg)}
    lines = [f"Split {split}, {runs['eval_base']['num']} problems.", "",
             "| method | shots | LLM tokens / sample | accuracy | IMG | TXT | NO |", "|---|---|---|---|---|---|---|"]
    for name in [n for n in EVALS if f"eval_{n}" in runs]:
        r = runs[f"eval_{name}"]
        bc = r["by_context"]
        lines.append(f"| {name} | {r['shots']} | {r['llm_tokens_per_sample']:.0f} | {_pct(r['accuracy'])} | "
                     f"{_pct(bc['IMG']['accuracy'])} | {_pct(bc['TXT']['accuracy'])} | {_pct(bc['NO']['accuracy'])} |")
    diffs = {}
    lines += ["", "Differences (accuracy points, 95% paired bootstrap over the same problems):", "",
              "| comparison | difference |", "|---|---|"]
    for a, b, label in [c for c in COMPARISONS if f"eval_{c[0]}" in runs and f"eval_{c[1]}" in runs]:
        sa, sb = _scores(out / f"eval_{a}", split), _scores(out / f"eval_{b}", split)
        ids = sorted(sa)
        diffs[f"{a}-{b}"] = paired_bootstrap([sa[i] for i in ids], [sb[i] for i in ids])
        lines.append(f"| {label} | {format_difference(diffs[f'{a}-{b}'])} |")
    agree = {}
    for other in [n for n in ("camml_1shot", "camml_2shot", "camml_random") if f"eval_{n}" in runs and "eval_camml" in runs]:
        mine, theirs = (_predictions(out / f"eval_{n}", split) for n in ("camml", other))
        agree[other] = sum(mine[i] == theirs[i] for i in mine) / len(mine)
    if agree:
        lines += ["", "Does the context change CaMML's answers? Share of problems answered identically to `camml` "
                  "(3 retrieved shots): " + ", ".join(f"{k} {_pct(v)}%" for k, v in agree.items()) + "."]
    controls = [c for c in cfg["evaluation"]["controls"] if c != "none"]
    lines += ["", "Image controls (query image only; accuracy on the IMG problems; gain = none minus control):", "",
              "| model | " + " | ".join(["none", *controls]) + " | " + " | ".join(f"gain vs {c}" for c in controls) + " |",
              "|---|" + "---|" * (1 + 2 * len(controls))]
    for name in [n for n in ("base", "camml") if f"eval_{n}" in runs]:
        seen = {i: s for i, s in _scores(out / f"eval_{name}", split).items()}
        img = [r["id"] for r in read_jsonl(out / f"eval_{name}" / f"answers_{split}.jsonl") if r["has_image"]]
        accs, gains = [], []
        for control in ["none", *controls]:
            folder = f"eval_{name}" + ("" if control == "none" else f"_{control}")
            sc = _scores(out / folder, split)
            accs.append(_pct(sum(sc[i] for i in img) / max(1, len(img))))
            if control != "none":
                gains.append(format_difference(paired_bootstrap([seen[i] for i in img], [sc[i] for i in img])))
        lines.append(f"| {name} | " + " | ".join(accs) + " | " + " | ".join(gains) + " |")
    k = cfg["evaluation"]["icl_num"]
    hit = {kind: answer_hit_rate(cfg, root, kind, k) for kind in ("retrieved", "random")}
    lines += ["", f"Examples whose answer equals the problem's (share of problems with one among the first {k}):", "",
              "| neighbours | " + " | ".join(hit["retrieved"]) + " |", "|---|" + "---|" * len(hit["retrieved"])]
    for kind, rates in hit.items():
        lines.append(f"| {kind} | " + " | ".join(_pct(v) for v in rates.values()) + " |")
    lines += ["", *stage_report(stages, out)]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    write_json(out / "report.json", {"runs": runs, "differences": diffs, "answer_hit": hit, "agreement": agree})
    return {"runs": runs, "differences": diffs, "answer_hit": hit, "agreement": agree, "table": text}


def run_camml(cfg: Dict[str, Any], root: Path = Path("."), force: Sequence[str] = (),
              only: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    stages = build_stages(cfg, root)
    names = [s.name for s in stages]
    unknown = sorted(set(force or ()) | set(only or ()) - set(names) - {"report"})
    if unknown:
        raise ConfigError(f"run_camml: unknown stage(s) {unknown}; stages: {', '.join(names)}, report")
    run_pipeline_stages(stages, root, root / cfg["out"], force=force, only=only)
    result = report(cfg, root, stages)
    print(result["table"])
    return result
