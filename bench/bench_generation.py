"""Benchmark: batched generation throughput of the project's local-LLM text generators, items/s:
the DataEngine LLM generator (mmrag.pipelines.data_engine_generators.LLMGenerator), the LRV LLM
instruction writer (mmrag.datasets.world.lrv_llm.LlmGenerator) and the GAVIE judge
(mmrag.metrics.gavie.LLMJudge, mode `free` = generated grades, mode `expected` = one forward pass
reading the 0-10 digit probabilities), all through `LocalChatModel` (HF generate, left-padded batches).
Prints one JSON line.

    python -m bench.bench_generation --toy          # CPU: tiny random Llama, a tokenizer made on the spot
    python -m bench.bench_generation --model-dir assets/smollm2-135m-instruct --random-weights \
        --batch-size 64 --items 256                 # GPU: SmolLM2-135M's shape and tokenizer, random weights

Prompts come from a tiny world written to a temporary folder (`generate_world("tiny")`): real prompt
lengths of each system. `--random-weights` builds the model from the folder's config with random
weights (speed does not depend on them; a random model rarely stops early, so each reply runs to
`max_tokens`, the worst case); without it the folder's weights are used. Without a model folder (or
with --toy) a small byte-level BPE tokenizer with a chat template is trained on the world's prompts
and the model has the `--shape` (smollm2_135m | toy) with that vocabulary. Per system:
`items`, `seconds`, `items_per_s`, `new_tokens_per_s` (generated tokens other than padding, counted
on the generate calls' outputs), `generate_calls`, `prompt_tokens_padded`, and max_tokens used.
One warm-up batch (CUDA context, kernels) runs before the timing.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

SHAPES = {
    # SmolLM2-135M: 30 layers of width 576, 9 heads / 3 KV heads, MLP 1536, tied embeddings
    "smollm2_135m": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                     "num_key_value_heads": 3, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
                     "tie_word_embeddings": True, "rope_theta": 100000.0},
    "toy": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "max_position_embeddings": 4096, "tie_word_embeddings": True},
}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
                   "generation_config.json")
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def made_tokenizer(texts: List[str], vocab: int) -> Any:
    """A byte-level BPE tokenizer trained on `texts` with ChatML specials and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token="<|im_start|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def model_folder(args: argparse.Namespace, texts: List[str], out: Path) -> Dict[str, Any]:
    """Write the model folder LocalChatModel loads; what it holds."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    source = Path(args.model_dir) if args.model_dir else None
    if source is not None and not args.toy and (source / "config.json").is_file():
        if not args.random_weights:
            return {"path": str(source), "weights": "folder", "tokenizer": "folder"}
        tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
        config = LlamaConfig.from_pretrained(str(source), local_files_only=True)
        tokenizer_from = "folder"
    else:
        tokenizer = made_tokenizer(texts, args.made_vocab)
        shape = SHAPES["toy" if args.toy else args.shape]
        config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **shape)
        tokenizer_from = "made"
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    if tokenizer_from == "folder":
        for name in TOKENIZER_FILES:
            if (source / name).is_file() and not (out / name).is_file():
                shutil.copy(source / name, out / name)
    params = sum(p.numel() for p in model.parameters())
    return {"path": str(out), "weights": "random", "tokenizer": tokenizer_from, "vocab_size": config.vocab_size,
            "layers": config.num_hidden_layers, "hidden_size": config.hidden_size, "parameters": params}


class TokenCounter:
    """Wraps the backend model's `generate`: counts the new tokens of every row up to its end (tokens
    other than padding), the generate calls, and the prompt tokens of those calls (padding included)."""

    def __init__(self, backend) -> None:
        self.generate, self.pad = backend.model.generate, backend.tokenizer.pad_token_id
        self.new_tokens = self.calls = self.prompt_tokens = 0
        backend.model.generate = self

    def __call__(self, input_ids, **kwargs):
        out = self.generate(input_ids=input_ids, **kwargs)
        new = out[:, input_ids.shape[1]:]
        self.new_tokens += int((new != self.pad).sum()) if self.pad is not None else new.numel()
        self.calls += 1
        self.prompt_tokens += input_ids.numel()
        return out


def timed(name: str, run: Callable[[], Any], items: int, backend, counter: TokenCounter,
          extra: Dict[str, Any]) -> Dict[str, Any]:
    sync = torch.cuda.synchronize if backend.device.type == "cuda" else (lambda: None)
    sync()
    before = (counter.new_tokens, counter.calls, counter.prompt_tokens)
    start = time.perf_counter()
    run()
    sync()
    seconds = time.perf_counter() - start
    tokens, calls, prompt = (a - b for a, b in zip((counter.new_tokens, counter.calls, counter.prompt_tokens), before))
    fig = {"items": items, "seconds": round(seconds, 3), "items_per_s": round(items / seconds, 2),
           "generate_calls": calls, "new_tokens": tokens, "new_tokens_per_s": round(tokens / seconds, 1),
           "prompt_tokens_padded": prompt, **extra}
    print(f"{name}: {fig}", flush=True)
    return fig


def world_inputs(world: Path, items: int, seed: int) -> Dict[str, Any]:
    """Requests, scenes and judge items of the tiny world, `items` of each (cycled)."""
    from mmrag.datasets.lrv_formats import read_vg_region_descriptions
    from mmrag.datasets.world import typed_benchmark as tb
    from mmrag.datasets.world.gavie import annotation_text
    from mmrag.datasets.world.lrv_instructions import load_scene_graphs
    from mmrag.pipelines import data_engine_generators as gens

    rng = random.Random(seed)
    graphs = tb.load_scene_graphs(world, ("train",))["train"]
    requests = [gens.Request(tb.QTYPES[i % len(tb.QTYPES)], rng.choice(graphs), [], f"g{i}", i) for i in range(items)]
    scenes, entities = load_scene_graphs(world, seed)
    regions = read_vg_region_descriptions(world / "regions" / "region_descriptions.json")
    scenes = [scenes[i % len(scenes)] for i in range(items)]
    judge_items = [{"question_id": f"j{i}", "question": f"Describe what is at the left of the image {g.image_id}.",
                    "annotations": annotation_text(g, regions.get(g.image_id, []))} for i, g in enumerate(scenes)]
    answers = [[f"There is a {rng.choice(entities).name} next to a table, and the light comes from the left."]
               for _ in range(items)]
    return {"requests": requests, "scenes": scenes, "entities": entities, "judge_items": judge_items,
            "answers": answers}


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true", help="CPU: tiny random Llama, made tokenizer, 4 items, short replies")
    ap.add_argument("--model-dir", default="assets/smollm2-135m-instruct", help="HF causal-LM folder (tokenizer, config)")
    ap.add_argument("--random-weights", action="store_true", help="random weights from the folder's config")
    ap.add_argument("--shape", default="smollm2_135m", choices=sorted(SHAPES), help="model shape without a folder")
    ap.add_argument("--made-vocab", type=int, default=2048, help="vocabulary of the made tokenizer")
    ap.add_argument("--device", default=None, help="default: cuda when present")
    ap.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on the CPU")
    ap.add_argument("--batch-size", type=int, default=64, help="conversations per generate() call")
    ap.add_argument("--items", type=int, default=256, help="requests / judged answers per system")
    ap.add_argument("--lrv-items", type=int, default=None, help="LRV scenes (default: --items / 4)")
    ap.add_argument("--systems", default="data_engine,lrv,gavie_free,gavie_expected")
    ap.add_argument("--data-engine-max-tokens", type=int, default=160)
    ap.add_argument("--lrv-max-tokens", type=int, default=384)
    ap.add_argument("--gavie-max-tokens", type=int, default=160)
    args = ap.parse_args(argv)
    if args.toy:  # toy sizes for the flags left at their defaults
        toy = {"items": 4, "batch_size": 4, "made_vocab": 400, "data_engine_max_tokens": 8, "lrv_max_tokens": 8,
               "gavie_max_tokens": 8}
        for key, value in toy.items():
            if getattr(args, key) == ap.get_default(key):
                setattr(args, key, value)
    return args


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    from mmrag.datasets.world import generate_world
    from mmrag.datasets.world import typed_benchmark as tb
    from mmrag.datasets.world.lrv_llm import LlmGenerator
    from mmrag.metrics.gavie import LLMJudge, judge_messages
    from mmrag.models.text_generator import LocalChatModel
    from mmrag.pipelines import data_engine_generators as gens

    args = parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() and not args.toy else "cpu")
    dtype = args.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    result: Dict[str, Any] = {"bench": "generation", "toy": args.toy, "device": device, "dtype": dtype,
                              "batch_size": args.batch_size, "systems": {}}
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        generate_world("tiny", 0, world, progress=False)
        inputs = world_inputs(world, args.items, 0)
        definitions = gens.TypeDefinitions.load(tb.QTYPES)
        system_prompt = gens.load_prompt("system")
        texts = [m["content"] for r in inputs["requests"][:64]
                 for m in gens.build_messages(r, definitions.definitions[r.qtype], system_prompt)]
        texts += [m["content"] for it, a in zip(inputs["judge_items"][:32], inputs["answers"])
                  for m in judge_messages(it["annotations"], it["question"], a)]
        start = time.perf_counter()
        result["model"] = model_folder(args, texts, Path(tmp) / "model")
        backend = LocalChatModel(result["model"]["path"], batch_size=args.batch_size, device=device, dtype=dtype)
        result["model_load_s"] = round(time.perf_counter() - start, 2)
        backend.complete([[{"role": "user", "content": t}] for t in texts[:args.batch_size]], max_tokens=4)  # warm-up
        counter = TokenCounter(backend)
        n = args.items
        if "data_engine" in systems:
            generator = gens.LLMGenerator(backend, definitions, system_prompt, max_tokens=args.data_engine_max_tokens)
            requests = inputs["requests"]
            result["systems"]["data_engine"] = timed(
                "data_engine", lambda: generator.generate(requests), n, backend, counter,
                {"max_tokens": args.data_engine_max_tokens})
        if "lrv" in systems:
            lrv_n = args.lrv_items or max(1, n // 4)
            lrv = LlmGenerator(backend, world, inputs["entities"], max_tokens=args.lrv_max_tokens)
            scenes = inputs["scenes"][:lrv_n]

            result["systems"]["lrv"] = timed("lrv", lambda: lrv.generate_all(scenes, 0), lrv_n, backend, counter, {"max_tokens": args.lrv_max_tokens,
                                                                               "items_are": "scenes (one reply each)"})
        for mode in ("free", "expected"):
            if f"gavie_{mode}" not in systems:
                continue
            judge = LLMJudge(backend, max_tokens=args.gavie_max_tokens, mode=mode)
            result["systems"][f"gavie_{mode}"] = timed(
                f"gavie_{mode}", lambda: judge.judge(inputs["judge_items"], inputs["answers"]), n, backend, counter,
                                                        {"max_tokens": args.gavie_max_tokens if mode == "free" else 0})
    result["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    result["cpus"] = os.cpu_count()
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
