"""CLIP embedder: normalised float32 rows, reproducible random init, worker loading = in-process
loading, config errors that name the key, a local HF CLIP folder (training the database's CLIP:
tests/tasks/test_clip_pretrain.py), the tensor decode path (the GPU path run with the CPU as device)
giving the PIL path's pixels and vectors, batched + lagged pipelines equal to one image at a time,
bf16 image weights (asked for on the CPU; the CUDA default) and the compiled image model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mmrag.common.errors import ImageReadError
from mmrag.processors.image_processing import open_rgb
from mmrag.retrieval.image_pipeline import ImageBytes, decode_images, preprocess_tensors
from mmrag.retrieval.clip_embedder import (
    ClipEmbedder,
    EmbedderConfigError,
    recall_at_k,
    retrieval_recall,  # noqa: F401  (its training test moved to tests/tasks/test_clip_pretrain.py)
)

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30),
           "black": (10, 10, 10), "white": (245, 245, 245), "purple": (140, 30, 160), "orange": (250, 140, 20)}


def colour_images(folder, noise_seed=0):
    """One noisy image per colour, captioned with the colour name."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(noise_seed)
    pairs = []
    for name, rgb in COLOURS.items():
        pixels = np.clip(np.array(rgb) + rng.normal(0, 12, size=(48, 48, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{name}.jpg"
        Image.fromarray(pixels).save(path)
        pairs.append((path, f"a photo of the colour {name}"))
    return pairs


def test_image_and_text_vectors_are_normalised_and_reproducible(tmp_path):
    pairs = colour_images(tmp_path)
    paths = [p for p, _ in pairs]
    a = ClipEmbedder({"num_workers": 0, "batch_size": 3}).encode_images(paths)
    b = ClipEmbedder({"num_workers": 0, "batch_size": 3}).encode_images(paths)
    t = ClipEmbedder({"num_workers": 0}).encode_texts([c for _, c in pairs])
    assert a.dtype == np.float32 and a.shape == (8, 64) and t.shape == (8, 64)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(a, b)  # seeded random init: same config, same vectors
    assert not np.allclose(a, ClipEmbedder({"num_workers": 0, "seed": 5}).encode_images(paths))


def test_dataloader_workers_give_the_same_vectors(tmp_path):
    paths = [p for p, _ in colour_images(tmp_path)]
    embedder = ClipEmbedder({"batch_size": 4})
    np.testing.assert_allclose(embedder.encode_images(paths, num_workers=2), embedder.encode_images(paths, num_workers=0), atol=1e-6)


def test_config_errors_name_the_key_and_path(tmp_path):
    with pytest.raises(EmbedderConfigError, match=r"'pretrained' = .*nope.bin is not an existing file"):
        ClipEmbedder({"pretrained": str(tmp_path / "nope.bin")})
    with pytest.raises(EmbedderConfigError, match=r"'path' = .*no_clip is not an existing folder"):
        ClipEmbedder({"type": "hf_clip", "path": str(tmp_path / "no_clip")})
    with pytest.raises(EmbedderConfigError, match="unknown key 'batchsize'"):
        ClipEmbedder({"batchsize": 4})
    with pytest.raises(EmbedderConfigError, match="not an open_clip architecture"):
        ClipEmbedder({"model_name": "ViT-Q-99"})


def test_unreadable_image_is_named(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        ClipEmbedder({"num_workers": 0}).encode_images([bad])


def _tiny_hf_clip(folder):
    """A random tiny HF CLIPModel with a character-level CLIP tokenizer, saved locally."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder.mkdir()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=32, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=16)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)


def test_hf_clip_folder(tmp_path):
    _tiny_hf_clip(tmp_path / "hf")
    paths = [p for p, _ in colour_images(tmp_path / "img")][:3]
    embedder = ClipEmbedder({"type": "hf_clip", "path": str(tmp_path / "hf"), "num_workers": 0})
    img, txt = embedder.encode_images(paths), embedder.encode_texts(["red", "a blue sky"])
    assert img.shape == (3, 16) and txt.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)


def test_recall_at_k_counts_rank_of_the_diagonal():
    scores = np.array([[0.9, 0.1, 0.0], [0.5, 0.4, 0.1], [0.3, 0.2, 0.1]])
    assert recall_at_k(scores, ks=(1, 2)) == {"R@1": pytest.approx(1 / 3), "R@2": pytest.approx(2 / 3)}


# ----------------------------------------------------------------------------- tensor (GPU) decode path
def smooth_images(folder, count=6, seed=0):
    """Photos-like (smooth) images of different sizes: JPEGs, one greyscale JPEG, one RGBA PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        height, width = (int(v) for v in rng.integers(40, 160, 2))
        img = Image.fromarray((rng.random((6, 6, 4)) * 255).astype(np.uint8), "RGBA").resize((width, height), Image.BILINEAR)
        if i == count - 1:
            path = folder / f"img_{i}.png"
            img.save(path)
        else:
            path = folder / f"img_{i}.jpg"
            (img.convert("L") if i == 1 else img.convert("RGB")).save(path, quality=90)
        paths.append(path)
    return paths


def _tensor_pixels(embedder, paths, device="cpu"):
    from torchvision.io import read_file

    blobs = [read_file(str(p)) for p in paths]
    return preprocess_tensors(decode_images(blobs, [str(p) for p in paths], device), embedder.backend.pixel_spec())


def _pil_pixels(embedder, paths):
    return torch.stack([embedder.backend.preprocess(open_rgb(p)) for p in paths])


@pytest.mark.parametrize("model_name", [None, "ViT-B-32"])
def test_tensor_preprocess_matches_the_pil_preprocess(tmp_path, model_name):
    paths = smooth_images(tmp_path)
    embedder = ClipEmbedder({"num_workers": 0, "model_name": model_name})
    ours, pil = _tensor_pixels(embedder, paths), _pil_pixels(embedder, paths)
    assert ours.shape == pil.shape and ours.dtype == torch.float32
    # normalised units (pixel std ~ 1/0.27 per 255 levels): under one 8-bit level on average
    assert (ours - pil).abs().mean() < 0.01 and (ours - pil).abs().max() < 0.1


def test_tensor_decode_gives_the_pil_embeddings(tmp_path):
    """Same image -> (near) the same vector, far closer than to any other image's vector (a random CLIP maps
    all images close together, so a bare cosine > 0.99 would also hold for different images)."""
    paths = smooth_images(tmp_path)
    embedder = ClipEmbedder({"num_workers": 0, "batch_size": 4})
    pil = embedder.encode_images(paths)
    ours = embedder.encode_images(paths, decode="torchvision_cpu")
    cos = ours @ pil.T
    own = 1 - np.diag(cos)
    others = 1 - np.where(np.eye(len(paths), dtype=bool), -np.inf, cos).max(axis=1)
    assert ours.shape == pil.shape and np.all(np.diag(cos) > 0.99)
    assert np.all(own < 0.1 * others)
    # the config key selects the same path, with DataLoader workers reading the bytes
    via_cfg = ClipEmbedder({"num_workers": 2, "batch_size": 4, "decode": "torchvision_cpu"}).encode_images(paths)
    np.testing.assert_allclose(via_cfg, ours, atol=1e-6)


def test_tensor_decode_of_hf_clip_matches_pil(tmp_path):
    _tiny_hf_clip(tmp_path / "hf")
    paths = smooth_images(tmp_path / "img")
    embedder = ClipEmbedder({"type": "hf_clip", "path": str(tmp_path / "hf"), "num_workers": 0})
    ours, pil = _tensor_pixels(embedder, paths), _pil_pixels(embedder, paths)
    assert ours.shape == pil.shape == (len(paths), 3, 32, 32)
    assert (ours - pil).abs().mean() < 0.01


def test_tensor_decode_names_a_bad_file_in_a_batch(tmp_path):
    paths = smooth_images(tmp_path)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(bytes([0xFF, 0xD8, 0xFF]) + b"truncated")  # JPEG magic, no image
    with pytest.raises(ImageReadError, match="broken.jpg"):
        ClipEmbedder({"num_workers": 0}).encode_images([*paths[:2], bad], decode="torchvision_cpu")
    with pytest.raises(ImageReadError, match="missing.jpg"):
        ClipEmbedder({"num_workers": 0}).encode_images([tmp_path / "missing.jpg"], decode="torchvision_cpu")


def test_decode_config_is_checked():
    with pytest.raises(EmbedderConfigError, match="'decode' = 'nvjpeg'; expected one of"):
        ClipEmbedder({"decode": "nvjpeg"})
    if not torch.cuda.is_available():
        with pytest.raises(EmbedderConfigError, match="'decode' = 'gpu' needs a CUDA device"):
            ClipEmbedder({"decode": "gpu"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG decode needs a CUDA device")
def test_gpu_decode_matches_cpu_decode(tmp_path):
    paths = smooth_images(tmp_path)
    embedder = ClipEmbedder({"num_workers": 0, "bf16": False})
    gpu, cpu = _tensor_pixels(embedder, paths, "cuda"), _tensor_pixels(embedder, paths, "cpu")
    assert (gpu.cpu() - cpu).abs().mean() < 0.03  # nvJPEG's IDCT/upsampling differ slightly from libjpeg's
    vectors = embedder.encode_images(paths, decode="gpu")
    np.testing.assert_allclose(np.diag(vectors @ embedder.encode_images(paths).T), 1.0, atol=1e-2)


@pytest.mark.parametrize("share,expected", [(0.0, []), (0.5, [1, 3, 5]), (1 / 3, [2, 5]), (1.0, list(range(7)))])
def test_cpu_decode_share_spreads_evenly(tmp_path, share, expected):
    files = ImageBytes([tmp_path / f"{i}.jpg" for i in range(7)], preprocess=lambda img: img, cpu_share=share)
    assert [i for i in range(7) if files.decoded_in_worker(i)] == expected


def test_cpu_decode_share_gives_each_image_its_own_path_s_pixels_in_order(tmp_path):
    """Half the images decoded by PIL in the workers, half by the tensor path: each row equals what its
    own path gives for that image, in path order, across batches (7 images, batches of 3)."""
    paths = smooth_images(tmp_path, count=7)
    embedder = ClipEmbedder({"device": "cpu", "num_workers": 2, "batch_size": 3, "cpu_decode_share": 0.5})
    mixed = torch.cat(list(embedder.pixel_batches(paths, decode="torchvision_cpu")))
    files = ImageBytes(paths, embedder.backend.preprocess, 0.5)
    for i, path in enumerate(paths):
        own = _pil_pixels(embedder, [path]) if files.decoded_in_worker(i) else _tensor_pixels(embedder, [path])
        torch.testing.assert_close(mixed[i:i + 1], own, rtol=0, atol=1e-6)
    vectors = embedder.encode_images(paths, decode="torchvision_cpu")
    np.testing.assert_allclose(vectors, _oracle_vectors(embedder, mixed), atol=1e-5)
    for bad in (-0.1, 1.5, "half", True):
        with pytest.raises(EmbedderConfigError, match="'cpu_decode_share'"):
            ClipEmbedder({"cpu_decode_share": bad})


# ----------------------------------------------------------------------------- batching, precision, compile
def _oracle_vectors(embedder, pixels):
    """One image at a time, fp32, straight through the backend: what the batched, lagged pipeline must give."""
    with torch.inference_mode():
        rows = [embedder.backend.encode_image(p[None].to(embedder.image_dtype)).float() for p in pixels]
    return torch.nn.functional.normalize(torch.cat(rows), dim=-1).numpy()


@pytest.mark.parametrize("decode", ["cpu", "torchvision_cpu"])
def test_batched_pipeline_equals_one_image_at_a_time(tmp_path, decode):
    paths = smooth_images(tmp_path, count=7)  # mixed sizes, a greyscale JPEG and a PNG; batches of 3, 3, 1
    embedder = ClipEmbedder({"device": "cpu", "num_workers": 2, "batch_size": 3})
    pixels = _pil_pixels(embedder, paths) if decode == "cpu" else torch.cat([_tensor_pixels(embedder, [p]) for p in paths])
    vectors = embedder.encode_images(paths, decode=decode)
    assert vectors.dtype == np.float32 and vectors.shape == (7, 64)
    np.testing.assert_allclose(vectors, _oracle_vectors(embedder, pixels), atol=1e-5)
    blocks = list(embedder.image_batches(paths, num_workers=0, decode=decode))
    assert [len(b) for b in blocks] == [3, 3, 1]


def test_cpu_keeps_float32_weights_and_bf16_image_weights_can_be_asked_for(tmp_path):
    paths = smooth_images(tmp_path)
    fp32 = ClipEmbedder({"device": "cpu", "num_workers": 0})
    bf16 = ClipEmbedder({"device": "cpu", "num_workers": 0, "image_weights": "bfloat16"})
    assert fp32.image_dtype == torch.float32 and not fp32._image_autocast_on
    assert {p.dtype for p in bf16.backend.model.visual.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in bf16.backend.model.transformer.parameters()} == {torch.float32}  # text tower untouched
    a, b = fp32.encode_images(paths), bf16.encode_images(paths)
    assert b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cos = b @ a.T
    others = np.where(np.eye(len(paths), dtype=bool), -np.inf, cos).max(axis=1)
    assert np.all(np.diag(cos) > 0.99) and np.all(1 - np.diag(cos) < 0.1 * (1 - others))
    np.testing.assert_allclose(bf16.encode_texts(["red"]), fp32.encode_texts(["red"]), atol=1e-6)


def test_bf16_image_weights_of_hf_clip(tmp_path):
    _tiny_hf_clip(tmp_path / "hf")
    paths = smooth_images(tmp_path / "img")[:3]
    cfg = {"type": "hf_clip", "path": str(tmp_path / "hf"), "num_workers": 0}
    a = ClipEmbedder(cfg).encode_images(paths)
    b = ClipEmbedder({**cfg, "image_weights": "bfloat16"}).encode_images(paths)
    assert b.dtype == np.float32 and np.all(np.sum(a * b, axis=1) > 0.99)


def test_new_config_keys_are_checked():
    with pytest.raises(EmbedderConfigError, match="'image_weights' = 'fp16'; expected one of"):
        ClipEmbedder({"image_weights": "fp16"})
    with pytest.raises(EmbedderConfigError, match="'compile' = 'yes'; expected true or false"):
        ClipEmbedder({"compile": "yes"})


def test_compiled_image_model_equals_eager_with_one_graph(tmp_path):
    """torch.compile (inductor, on the CPU here): same vectors; the short last batch is padded, not recompiled."""
    paths = smooth_images(tmp_path, count=5)
    eager = ClipEmbedder({"device": "cpu", "num_workers": 0, "batch_size": 3})
    compiled = ClipEmbedder({"device": "cpu", "num_workers": 0, "batch_size": 3, "compile": True})
    torch._dynamo.reset()
    with torch._dynamo.config.patch(error_on_recompile=True):
        vectors = compiled.encode_images(paths, decode="torchvision_cpu")  # batches of 3 and 2
        single = compiled.encode_pil([open_rgb(paths[0])])
    np.testing.assert_allclose(vectors, eager.encode_images(paths, decode="torchvision_cpu"), atol=1e-4)
    np.testing.assert_allclose(single, eager.encode_pil([open_rgb(paths[0])]), atol=1e-4)  # one row, padded to 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 image weights are the CUDA default only")
def test_cuda_bf16_image_weights_match_fp32_autocast(tmp_path):
    paths = smooth_images(tmp_path)
    cast_once = ClipEmbedder({"num_workers": 0, "model_name": "ViT-B-32"})
    autocast = ClipEmbedder({"num_workers": 0, "model_name": "ViT-B-32", "image_weights": "float32"})
    assert cast_once.image_dtype == torch.bfloat16 and autocast._image_autocast_on
    a, b = cast_once.encode_images(paths, decode="gpu"), autocast.encode_images(paths, decode="gpu")
    assert a.dtype == np.float32 and np.all(np.sum(a * b, axis=1) > 0.99)
