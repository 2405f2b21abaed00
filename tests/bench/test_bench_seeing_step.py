"""bench_seeing_step at toy shape on the CPU: one JSON line per configuration, the cached-feature path,
parameter counts against a hand count, target-only and full logits agreeing; the loader mode."""
import json
from pathlib import Path

import pytest
import torch

from bench import bench_seeing_step as bench
from bench.common import BenchError

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def one_thread():
    """Tiny matmuls on a shared CPU: one thread is faster than several contending ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_toy_grid_lines(tmp_path, capsys, one_thread):
    out = tmp_path / "lines.jsonl"
    results = bench.main(["--toy", "--configs", "full:targets:none:2,full:all:none:2,lora:targets:none:2",
                          "--out", str(out)])
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [json.loads(line) for line in out.read_text().splitlines()] == printed == results
    full_t, full_a, lora = results
    # hand count, TOY: 2 layers x (q 64x64 + k,v 64x32 + o 64x64 + MLP 3 x 64x128 + 2 norms of 64) + final norm
    assert full_t["params"]["llm_non_embedding"] == 2 * (4096 + 2 * 2048 + 4096 + 3 * 8192 + 128) + 64
    # LoRA r16 on q/k/v/o: A (r x in) + B (out x r) per module, plus the projector; full: every LLM weight too
    lora_params = 2 * 16 * ((64 + 64) + (64 + 32) * 2 + (64 + 64))
    assert lora["params"]["trainable"] == lora_params + lora["params"]["projector"]
    assert full_t["params"]["trainable"] == 74048 + 512 * 64 + full_t["params"]["projector"]
    for r in results:
        assert r["tokens_per_s"] > 0 and r["cache_misses_timed"] == 0  # every step read cached features
        tokens = r["micro_batch"] * r["seq_len"]
        assert r["mfu_6nd"] == pytest.approx(6 * 74048 * tokens / (r["step_ms_mean"] / 1e3 * 790e12), rel=1e-3)
    # same seed, same batches: the target-only head trains exactly as the full logits do
    assert full_t["final_loss"] == pytest.approx(full_a["final_loss"], rel=1e-3)


@pytest.mark.parametrize("text", ["half:targets:none:8", "full:some:none:8", "full:targets:everything:8",
                                  "full:targets:none:reduce-overhead:8", "full:targets:8"])
def test_bad_configs_are_refused(text):
    with pytest.raises(BenchError, match="--configs"):
        bench.parse_config(text)


def test_config_parse():
    assert bench.parse_config("lora:all:llm:reduce-overhead:128") == {
        "name": "lora:all:llm:reduce-overhead:128", "train": "lora", "logits": "all", "compile": "llm",
        "compile_mode": "reduce-overhead", "micro_batch": 128}


@pytest.mark.skipif(not (REPO_ROOT / "dataset/world_small/llava").is_dir()
                    or not (REPO_ROOT / "assets/smollm2-135m-instruct/tokenizer.json").is_file(),
                    reason="needs dataset/world_small and the SmolLM2 tokenizer")
def test_loader_mode_on_the_real_config(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    (result,) = bench.main(["--loader", "--workers", "0", "--loader-batch", "4", "--loader-batches", "3"])
    figures = result["workers"]["0"]
    assert figures["batches_per_s"] > 0 and figures["tokens_per_batch"] > 25 * 4  # an image is 25 tokens
    assert result["profile_ms_per_batch"]["images"] == 4
