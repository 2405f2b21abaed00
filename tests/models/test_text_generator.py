"""LocalChatModel on the SmolLM2-135M-Instruct asset, and build_chat_backend's config handling."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmrag.common.chat_client import ChatBackend, OpenAIChatClient
from mmrag.common.errors import ConfigError, MissingPathError, UnknownNameError
from mmrag.models.text_generator import LocalChatModel, build_chat_backend
from tests.conftest import REPO_ROOT

SMOLLM = REPO_ROOT / "assets" / "smollm2-135m-instruct"
needs_smollm = pytest.mark.skipif(not (SMOLLM / "config.json").is_file(),
                                  reason="assets/smollm2-135m-instruct absent: run `mmrag-prepare-assets smollm2`")


@pytest.fixture(scope="module")
def smollm():
    return LocalChatModel(SMOLLM, batch_size=4)


def user(text):
    return [{"role": "user", "content": text}]


@needs_smollm
def test_chat_template_renders_roles(smollm):
    text = smollm.prompt_text([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    # SmolLM2's ChatML template, written out by hand
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"


@needs_smollm
def test_batched_left_padded_generation_matches_one_at_a_time(smollm, tmp_path):
    prompts = [user("What is the capital of France?"), user("Say hello."), user("Name a colour.")]
    batched = smollm.complete(prompts, max_tokens=6)
    single = [smollm.complete([p], max_tokens=6)[0] for p in prompts]
    assert [r.text for r in batched] == [r.text for r in single]       # padding changes nothing
    assert "Paris" in batched[0].text
    assert all(r.ok and not r.cached for r in batched)


@needs_smollm
def test_local_cache_makes_a_rerun_free(tmp_path):
    model = LocalChatModel(SMOLLM, cache_dir=str(tmp_path))
    first = model.complete([user("Say hello.")], max_tokens=4)
    calls = []
    model._generate = lambda convs, *a: calls.append(convs)   # a second generation would be recorded here
    again = model.complete([user("Say hello.")], max_tokens=4)
    assert again[0].text == first[0].text and again[0].cached and calls == []


def test_missing_folder_names_the_key_and_folder(tmp_path):
    with pytest.raises(MissingPathError, match=r"judge\.backend\.path.*nope"):
        build_chat_backend({"type": "local", "path": str(tmp_path / "nope")}, where="judge.backend")


def test_unknown_backend_type_and_key():
    with pytest.raises(UnknownNameError, match="openai"):
        build_chat_backend({"type": "opnai", "url": "http://x/v1", "model": "m"})
    with pytest.raises(ConfigError, match="concurency"):
        build_chat_backend({"type": "openai", "url": "http://x/v1", "model": "m", "concurency": 3})
    with pytest.raises(ConfigError, match="model"):
        build_chat_backend({"type": "openai", "url": "http://x/v1"})


def test_openai_backend_from_config(tmp_path):
    backend = build_chat_backend({"type": "openai", "url": "http://127.0.0.1:1/v1", "model": "m", "concurrency": 3,
                                  "cache_dir": str(tmp_path / "c")})
    assert isinstance(backend, OpenAIChatClient) and isinstance(backend, ChatBackend)
    assert backend.config.concurrency == 3 and Path(backend.config.cache_dir).exists()


@needs_smollm
def test_prefilled_reply_is_continued(smollm):
    text = smollm.prompt_text([{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                               {"role": "assistant", "content": "Score: "}])
    assert text == ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
                    "Score: ")


@needs_smollm
def test_zero_to_ten_distribution_matches_unpadded_full_forwards(smollm):
    import torch

    convs = [[{"role": "user", "content": "Rate this from 0 to 10: a sunny day."},
              {"role": "assistant", "content": "Rating: "}],
             [{"role": "user", "content": "Rate it."}, {"role": "assistant", "content": "Rating: "}]]
    got = smollm.zero_to_ten_distribution(convs)       # one left-padded batch, KV cache for the "1" step
    tok, model = smollm.tokenizer, smollm.model
    digits = [tok.convert_tokens_to_ids(str(d)) for d in range(10)]
    for conv, out in zip(convs, got):
        ids = tok(smollm.prompt_text(conv), return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            p = model(ids).logits[0, -1].softmax(-1)
            after_one = model(torch.cat([ids, torch.tensor([[digits[1]]])], dim=1)).logits[0, -1].softmax(-1)
        mass = float(p[digits].sum())
        ten = float(p[digits[1]] * after_one[digits[0]])
        assert out["mass"] == pytest.approx(mass, abs=1e-4)
        assert out["probs"][10] == pytest.approx(ten / mass, abs=1e-4)
        assert out["probs"][7] == pytest.approx(float(p[digits[7]]) / mass, abs=1e-4)
        assert sum(out["probs"]) == pytest.approx(1.0)
