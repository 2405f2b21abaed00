"""camml_perceiver: 2Q context tokens for 1 and 3 shots, written over the <context> positions, no loss
on them, random-shot k in range (and equal to running on the first k shots)."""
import copy

import pytest
import torch

from mmrag.models.context_modules import CammlPerceiver, ContextInputs
from mmrag.processors import build_processor
from mmrag.processors.tokenization import CONTEXT_PLACEHOLDER_ID, IGNORE_INDEX
from tests.conftest import build_tiny_model

Q = 3
PERCEIVER = {"type": "camml_perceiver", "width": 32, "heads": 4, "layers": 2, "queries": Q}


@pytest.fixture(scope="module")
def model_and_processor(tiny_model_cfg):
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg["context_module"] = dict(PERCEIVER)
    model = build_tiny_model(cfg)
    return model, build_processor(model.cfg, model)


def _sample(processor, n_shots, seed):
    g = torch.Generator().manual_seed(seed)
    size = processor.image_processor.image_size
    return {"id": f"s{n_shots}", "conversations": [
        {"from": "human", "value": "Context: <context>\n<image>\nWhich one?"}, {"from": "gpt", "value": "ANSWER: B."}],
        "pixel_values": torch.randn(1, 3, size, size, generator=g),
        "context": {"pixel_values": torch.randn(n_shots, 3, size, size, generator=g),
                    "texts": [f"example {i} ANSWER: A." for i in range(n_shots)]}}


def test_token_count_and_placement_for_1_and_3_shots(model_and_processor):
    model, processor = model_and_processor
    batch = processor.collate([_sample(processor, 1, 0), _sample(processor, 3, 1)])
    assert model.context_module.num_tokens(1) == model.context_module.num_tokens(3) == 2 * Q
    assert (batch["input_ids"] == CONTEXT_PLACEHOLDER_ID).sum(dim=1).tolist() == [2 * Q, 2 * Q]
    with torch.no_grad():
        embeds = model.embed(batch["input_ids"], batch["pixel_values"], context=batch["context"])
        ctx = batch["context"]
        table = model.llm.get_input_embeddings()
        outs = model.context_module(ContextInputs(model.encode_images(ctx["pixel_values"]), [1, 3],
                                                  table(ctx["text_ids"]), ctx["text_mask"], [1, 3]))
    assert [tuple(o.shape) for o in outs] == [(2 * Q, 48), (2 * Q, 48)]  # 48: the tiny LLM's width
    for row, out in enumerate(outs):
        slots = batch["input_ids"][row] == CONTEXT_PLACEHOLDER_ID
        assert torch.allclose(embeds[row][slots], out, atol=1e-5)


def test_context_positions_carry_no_loss(model_and_processor):
    model, processor = model_and_processor
    batch = processor.collate([_sample(processor, 2, 2)])
    slots = batch["input_ids"] == CONTEXT_PLACEHOLDER_ID
    assert bool((batch["labels"][slots] == IGNORE_INDEX).all())
    # targets: exactly the answer's tokens and EOS (hand count from the tokenizer, not from the labels code)
    answer = processor.tokenizer(" ANSWER: B.", add_special_tokens=False)["input_ids"]
    assert int((batch["labels"] != IGNORE_INDEX).sum()) == len(answer) + 1
    model.train()
    out = model(batch)
    out["loss_sum"].backward()
    assert model.context_module.vision_queries.grad is not None  # the context reaches the loss through the answer
    model.zero_grad()
    model.eval()


def _inputs(counts, width=16, nv=4, length=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = sum(counts)
    mask = torch.ones(n, length, dtype=torch.long)
    mask[:, -1] = 0
    return ContextInputs(torch.randn(n, nv, width, generator=g), counts, torch.randn(n, length, width, generator=g),
                         mask, counts)


def _first_k(inputs, k):
    idx, start = [], 0
    for n in inputs.image_counts:
        idx += list(range(start, start + k))
        start += n
    ks = [k] * len(inputs.image_counts)
    return ContextInputs(inputs.image_tokens[idx], ks, inputs.text_embeds[idx], inputs.text_mask[idx], ks)


def test_random_shots_k_in_range_and_first_k_used():
    torch.manual_seed(0)
    module = CammlPerceiver({**PERCEIVER, "width": 16, "heads": 2, "seed": 7}, 4, 16)
    inputs = _inputs([3, 3])
    module.eval()
    full = module(inputs)
    assert module.last_k is None  # no draw outside training
    drawn = []
    module.train()
    for _ in range(60):
        out = module(inputs)
        k = module.last_k
        drawn.append(k)
        module.eval()
        expected = module(_first_k(inputs, k))
        module.train()
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(out, expected))
    assert set(drawn) == {1, 2, 3}
    assert any(not torch.allclose(a, b) for a, b in zip(module(_first_k(inputs, 1)), full))  # shots matter
    module(_inputs([3, 1]))
    assert module.last_k == 1  # bounded by the sample with the fewest shots


def test_context_tokens_at_the_scale_of_the_shot_text_embeddings():
    torch.manual_seed(0)
    module = CammlPerceiver({**PERCEIVER, "width": 16, "heads": 2}, 4, 16).eval()
    inputs = _inputs([2, 1], seed=3)
    inputs.text_embeds.mul_(torch.tensor([0.1, 0.1, 5.0]).view(3, 1, 1))  # sample 0's texts small, sample 1's large
    outs = module(inputs)
    rms = lambda x: float(x.pow(2).mean().sqrt())  # noqa: E731
    words0 = inputs.text_embeds[:2][inputs.text_mask[:2].bool()]
    words1 = inputs.text_embeds[2:][inputs.text_mask[2:].bool()]
    assert rms(outs[0]) == pytest.approx(rms(words0), rel=1e-4)   # each token at that RMS (gain 1 at init)
    assert rms(outs[1]) == pytest.approx(rms(words1), rel=1e-4)
    plain = CammlPerceiver({**PERCEIVER, "width": 16, "heads": 2, "match_embedding_scale": False}, 4, 16).eval()
    assert rms(plain(inputs)[0]) > 5 * rms(words0)  # without it: the perceiver's own scale


def _cast_parts(model, dtypes):
    for part, dtype in dtypes.items():
        getattr(model, part).to(dtype)
    return model


@pytest.mark.parametrize("dtypes", [
    # the 7B bench on the GPU: tower, projector and perceiver built in bf16, the LLM at its float32 default
    {"vision_tower": torch.bfloat16, "projector": torch.bfloat16, "context_module": torch.bfloat16},
    # the other way round: a bf16 LLM (its text embeddings bf16) and a float32 perceiver
    {"llm": torch.bfloat16, "context_module": torch.float32},
], ids=["bf16_perceiver_fp32_llm", "fp32_perceiver_bf16_llm"])
def test_context_path_with_the_perceiver_and_the_llm_in_different_dtypes(tiny_model_cfg, dtypes):
    """The context module reads its inputs in its own dtype, whatever the LLM's: the mixed-dtype model runs,
    and equals the same weights run all in float32 (the plain path) within bf16 rounding."""
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg["context_module"] = {**PERCEIVER, "random_shots": False}
    mixed = _cast_parts(build_tiny_model(cfg), dtypes)
    plain = copy.deepcopy(mixed).float()  # the same (bf16-rounded) weights, computed in float32
    processor = build_processor(mixed.cfg, mixed)
    batch = processor.collate([_sample(processor, 1, 0), _sample(processor, 3, 1)])
    slots = batch["input_ids"] == CONTEXT_PLACEHOLDER_ID
    with torch.no_grad():
        got = mixed.embed(batch["input_ids"], batch["pixel_values"], context=batch["context"])[slots].float()
        want = plain.embed(batch["input_ids"], batch["pixel_values"], context=batch["context"])[slots]
        loss_mixed, loss_plain = mixed(batch)["loss_sum"], plain(batch)["loss_sum"]
    scale = float(want.pow(2).mean().sqrt())
    assert float((got - want).abs().max()) < 0.05 * scale  # bf16 keeps ~3 significant digits per operation
    assert float((want[: 2 * Q] - want[2 * Q:]).abs().max()) > 0.2 * scale  # the two samples differ: the bound bites
    assert float(loss_mixed) == pytest.approx(float(loss_plain), rel=1e-3)
