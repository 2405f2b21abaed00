"""Tiny stand-ins for the GeMKR seeing table, laid out where its configs look (relative to a root):

- dataset/world_small: the `tiny` world (60 images, 74 / 25 train / test questions);
- assets/smollm2-135m-instruct: a random 1-layer LLaMA saved as an HF folder with a byte-level BPE
  tokenizer trained on that world's text (SmolLM2's kind of tokenizer, a few hundred pieces);
- output/clip_world_small/final: a random open_clip ViT in clip_pretrain's format;
- train.py, eval.py, train_configs, eval_configs, data_process: links to the repository's.

    python -m tests.helpers.tiny_gemkr_seeing ROOT     # builds them (gpu/gemkr_seeing.sh SMOKE=1)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from mmrag.common.cli import REPO_ROOT

LINKED = ("train.py", "eval.py", "train_configs", "eval_configs", "data_process")
# every training / evaluation of the table at the stand-ins' size (CPU, fp32, a few steps and questions)
SMOKE_OVERRIDES = ["run.max_steps=2", "run.batch_size=2", "run.num_workers=0", "run.warmup_steps=0",
                   "run.device=cpu", "model.llm.dtype=float32", "run.amp='no'", "evaluation.max_samples=6",
                   "evaluation.batch_size=6", "evaluation.dense.steps=2", "evaluation.num_beams=2",
                   "evaluation.num_beam_groups=2", "evaluation.num_return_sequences=2"]


def byte_level_bpe(texts, folder: Path, vocab_size: int = 400):
    """A byte-level BPE tokenizer (SmolLM2's kind: 'Ġ' marks a leading space) saved as an HF folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    fast.save_pretrained(folder)
    return fast


def tiny_llm(folder: Path, texts) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = byte_level_bpe(texts, folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)


def tiny_open_clip(folder: Path) -> None:
    """A random open_clip ViT (32 px, 8-px patches, 2 blocks of width 32) as clip_pretrain saves it."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    arch = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16},
            "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}
    torch.manual_seed(0)
    model = open_clip.CLIP(**arch)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": arch}))


def make_standins(root: Path) -> Path:
    from mmrag.datasets.formats import read_corpus_csv
    from mmrag.datasets.world.generator import generate_world

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        if not (root / name).exists():
            (root / name).symlink_to(REPO_ROOT / name)
    world = root / "dataset/world_small"
    if not (world / "world.json").is_file():
        generate_world("tiny", 0, world, progress=False)
    llm = root / "assets/smollm2-135m-instruct"
    if not (llm / "config.json").is_file():
        questions = json.loads((world / "knowledge/train.json").read_text())
        tiny_llm(llm, [t for _, t in read_corpus_csv(world / "corpus.csv")] + [q["input"] for q in questions])
    clip = root / "output/clip_world_small/final"
    if not (clip / "open_clip_model.safetensors").is_file():
        tiny_open_clip(clip)
    return root


if __name__ == "__main__":
    make_standins(Path(sys.argv[1]))
    print(" ".join(SMOKE_OVERRIDES))
