"""bench_camml at toy shape on the CPU in bf16, as the GPU runs it: the CaMML step runs with the LLM,
tower, projector and perceiver all in bf16 (the 2026-11-30 7B run stopped at the perceiver's first
layer on float32 inputs, and its LLM had been cast back to float32)."""
import argparse

import torch

from bench import bench_camml as bench


def _args(dtype):
    return argparse.Namespace(toy=True, dtype=dtype, full_llm=False, batch=2, shots=3, prompt_tokens=12,
                              target_tokens=4, shot_text_tokens=8, warmup=0, steps=1, peak_tflops=989.0)


def test_camml_step_in_bf16_keeps_the_llm_in_bf16():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls on a shared CPU
    try:
        result = bench.run_variant(_args("bfloat16"), True, torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    assert result["llm_dtype"] == "bfloat16"  # as asked on the command line, not the LLM config's float32 default
    queries = bench.SHAPES["toy"]["perceiver"]["queries"]
    assert result["context_tokens"] == 2 * queries  # CaMML's two query sets, however many shots
    # [BOS] + context + one image's tokens (tower 32 px / 16 px patches: 4, mlp2x projector keeps them) + prompt + answer
    assert result["seq_len"] == 1 + 2 * queries + 4 + 12 + 4
    assert result["step_s"] > 0 and result["flops_per_step"] > 0
