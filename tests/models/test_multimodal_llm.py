"""The multimodal LLM: image splicing, label masking, LoRA persistence, corrupt checkpoints, real-format folders."""
import copy

import pytest
import torch
from omegaconf import OmegaConf

import mmrag  # noqa: F401
from mmrag.common.paths import MissingPathError
from mmrag.models.multimodal_llm import MultimodalLLM
from mmrag.processors import build_processor, load_templates
from mmrag.processors.tokenization import IGNORE_INDEX, IMAGE_PLACEHOLDER_ID, ImageCountError, encode_segments


def build(model_cfg, **changes):
    cfg = copy.deepcopy(model_cfg)
    for key, value in changes.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    torch.manual_seed(0)
    return MultimodalLLM(OmegaConf.merge(MultimodalLLM.default_config(cfg), cfg))


@pytest.fixture(scope="module")
def model(tiny_model_cfg):
    return build(tiny_model_cfg)


@pytest.fixture(scope="module")
def processor(model):
    return build_processor(model.cfg, model)


def _sample(n_images, answer="It is a red square."):
    text = " ".join(["<image>"] * n_images) + " What is shown?"
    return {"conversations": [{"from": "human", "value": text}, {"from": "gpt", "value": answer}],
            "pixel_values": torch.randn(n_images, 3, 32, 32)}


@pytest.mark.parametrize("n_images", [0, 1, 3])
def test_image_tokens_spliced_in_order_and_masked(model, processor, n_images):
    sample = _sample(n_images)
    batch = processor.collate([sample])
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    n_vis = model.num_visual_tokens
    assert int((ids == IMAGE_PLACEHOLDER_ID).sum()) == n_images * n_vis
    assert torch.all(labels[ids == IMAGE_PLACEHOLDER_ID] == IGNORE_INDEX)
    tok = processor.tokenizer
    target = tok("It is a red square.", add_special_tokens=False)["input_ids"]
    assert labels[labels != IGNORE_INDEX].tolist()[-len(target) - 1:] == target + [tok.eos_token_id]
    # the spliced embeddings are exactly the projected features of each image, in order
    embeds = model.embed(ids[None], sample["pixel_values"])[0]
    if n_images:
        visual = model.encode_images(sample["pixel_values"]).reshape(-1, embeds.shape[-1])
        assert torch.allclose(embeds[ids == IMAGE_PLACEHOLDER_ID], visual, atol=1e-6)


def test_image_count_mismatch_is_reported(processor):
    sample = _sample(2)
    sample["pixel_values"] = sample["pixel_values"][:1]
    with pytest.raises(ImageCountError, match="2 '<image>' placeholder.*1 image"):
        processor.collate([sample])


@pytest.mark.parametrize("name", sorted(load_templates()))
def test_each_template_masks_everything_but_answers(processor, name):
    template, tok = load_templates()[name], processor.tokenizer
    turns = [{"from": "human", "value": "<image> first?"}, {"from": "gpt", "value": "one"},
             {"from": "human", "value": "second?"}, {"from": "gpt", "value": "two"}]
    enc = encode_segments(tok, template.segments(turns), processor.num_visual_tokens)
    targets = [t for t in enc.labels if t != IGNORE_INDEX]
    expected = []
    for text, is_target in template.segments(turns):
        if is_target:
            expected += tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert targets == expected
    assert "one" in tok.decode(targets) and "second" not in tok.decode(targets)


def test_loss_only_counts_target_tokens(model, processor):
    batch = processor.collate([_sample(1), _sample(0, answer="No.")])
    out = model(batch)
    assert int(out["n_tokens"]) == int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    # oracle: full-vocabulary logits at every position, cross-entropy summed over the targets
    embeds = model.embed(batch["input_ids"], batch["pixel_values"])
    logits = model.llm(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits[:, :-1]
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 batch["labels"][:, 1:].reshape(-1), reduction="sum")
    assert torch.allclose(out["loss_sum"], expected, rtol=1e-5)


def test_lora_adapter_save_load_gives_identical_outputs(tiny_model_cfg, processor, tmp_path):
    from peft import PeftModel

    a = build(tiny_model_cfg)
    with torch.no_grad():  # make adapters non-trivial (B starts at zero)
        for n, p in a.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    a.save_trainable(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "adapter" / "adapter_config.json").is_file()
    b = build(tiny_model_cfg, checkpoint=str(tmp_path / "ckpt"))
    batch = processor.collate([_sample(1)])
    a.eval(), b.eval()
    assert torch.allclose(a(batch)["loss_sum"], b(batch)["loss_sum"], atol=1e-5)
    # the adapter folder is peft's own format
    base = build(tiny_model_cfg, **{"lora.enabled": False}).llm
    peft_model = PeftModel.from_pretrained(base, str(tmp_path / "ckpt" / "adapter"))
    assert any("lora_A" in n for n, _ in peft_model.named_parameters())


def test_real_format_llama_and_clip_folders_load_via_config_keys(tiny_model_cfg, tmp_path):
    """A user with a 7B model sets model.llm.path / model.vision_tower.path: the same code loads tiny ones."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    from mmrag.common.assets import llama_tokenizer_dir

    llm_dir, clip_dir = tmp_path / "llama", tmp_path / "clip"
    LlamaForCausalLM(LlamaConfig(vocab_size=32000, **tiny_model_cfg["llm"]["config"])).save_pretrained(llm_dir)
    for f in llama_tokenizer_dir().iterdir():
        (llm_dir / f.name).write_bytes(f.read_bytes())
    CLIPVisionModel(CLIPVisionConfig(**tiny_model_cfg["vision_tower"]["config"])).save_pretrained(clip_dir)
    m = build(tiny_model_cfg, **{"llm.config": {}, "llm.path": str(llm_dir),
                                 "vision_tower.config": {}, "vision_tower.path": str(clip_dir)})
    assert m.llm.get_input_embeddings().weight.shape == (32000, 48)
    assert torch.isfinite(m(build_processor(m.cfg, m).collate([_sample(1)]))["loss_sum"])


def test_missing_paths_name_the_config_key(tiny_model_cfg, tmp_path):
    with pytest.raises(MissingPathError, match=r"model.llm.path.*nowhere"):
        build(tiny_model_cfg, **{"llm.config": {}, "llm.path": str(tmp_path / "nowhere")})
    with pytest.raises(MissingPathError, match=r"model.vision_tower.path"):
        build(tiny_model_cfg, **{"vision_tower.config": {}, "vision_tower.path": str(tmp_path / "clip")})


@pytest.mark.parametrize("damage", ["truncated", "garbage header"])
def test_corrupt_checkpoint_is_refused_naming_the_file(tiny_model_cfg, tmp_path, damage):
    from mmrag.common.errors import UserError
    from mmrag.models.persistence import CorruptWeightsError

    build(tiny_model_cfg).save_trainable(tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "trainable.safetensors"
    data = weights.read_bytes()
    # a header length of ~2**62 bytes is what made safetensors say "header too large"
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\xff" * 8 + data[8:])
    with pytest.raises(CorruptWeightsError) as err:
        build(tiny_model_cfg, checkpoint=str(tmp_path / "ckpt"))
    assert isinstance(err.value, UserError)
    message = str(err.value)
    assert "\n" not in message and str(weights) in message


def test_checkpoint_loaded_under_other_lora_keys_is_refused_naming_them(tiny_model_cfg, tmp_path):
    """A fully fine-tuned checkpoint evaluated with the LoRA config (or the reverse) is refused with the keys to set."""
    from mmrag.common.errors import ConfigError

    build(tiny_model_cfg, **{"lora.enabled": False, "llm.freeze": False}).save_trainable(tmp_path / "full")
    with pytest.raises(ConfigError, match=r"model.lora.enabled=false model.llm.freeze=false") as err:
        build(tiny_model_cfg, **{"lora.enabled": True, "llm.freeze": True}, checkpoint=str(tmp_path / "full"))
    assert "\n" not in str(err.value) and str(tmp_path / "full") in str(err.value)
    build(tiny_model_cfg, **{"lora.enabled": False, "llm.freeze": False}, checkpoint=str(tmp_path / "full"))
