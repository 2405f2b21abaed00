"""Image pipeline: the vectorised JPEG check equals the per-file one, mixed-size batches keep their order
and equal one-image-at-a-time preprocessing, the batch pipeline equals decode-then-preprocess of each
file, and device vectors reach the host in order (on CUDA one block late, through pinned memory)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from mmrag.retrieval.image_pipeline import (
    JPEG_MAGIC,
    PixelSpec,
    TensorPixelPipeline,
    collate_named_blobs,
    decode_images,
    jpeg_flags,
    lagged_host_copies,
    preprocess_tensors,
)

SPEC = PixelSpec(resize=(32,), crop=(32, 32), mean=(0.48, 0.46, 0.41), std=(0.27, 0.26, 0.28))


def _encoded(width: int, height: int, fmt: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray((rng.random((4, 4, 3)) * 255).astype(np.uint8)).resize((width, height), Image.BILINEAR)
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def _blobs():
    """Names and bytes: JPEGs of three sizes, a PNG, and files too short or almost JPEG."""
    files = {"a.jpg": _encoded(50, 40, "JPEG", 0), "b.png": _encoded(40, 50, "PNG", 1),
             "c.jpg": _encoded(50, 40, "JPEG", 2), "d.jpg": _encoded(70, 33, "JPEG", 3),
             "short": bytes(JPEG_MAGIC), "almost": bytes([0xFF, 0xD8, 0x00, 0x01]), "empty": b""}
    return list(files), [torch.frombuffer(bytearray(b), dtype=torch.uint8) if b else torch.zeros(0, dtype=torch.uint8)
                         for b in files.values()]


def test_jpeg_flags_equal_the_per_file_check():
    names, blobs = _blobs()
    _, flat, lengths = collate_named_blobs(list(zip(names, blobs)))
    expected = [b.numel() > 3 and b[:3].tolist() == JPEG_MAGIC for b in blobs]
    assert jpeg_flags(flat, lengths) == expected == [True, False, True, True, False, False, False]
    assert jpeg_flags(torch.zeros(0, dtype=torch.uint8), [0, 0]) == [False, False]


def test_mixed_sizes_keep_their_order_and_equal_one_at_a_time():
    names, blobs = _blobs()
    images = decode_images(blobs[:4], names[:4], "cpu")
    batch = preprocess_tensors(images, SPEC)
    one_by_one = torch.cat([preprocess_tensors([image], SPEC) for image in images])
    assert batch.shape == (4, 3, 32, 32) and batch.is_contiguous()
    torch.testing.assert_close(batch, one_by_one, atol=1e-6, rtol=0)
    assert not torch.equal(batch[0], batch[2])  # different images stay different (order is observable)


def test_pipeline_pixels_equal_decode_then_preprocess_of_each_file():
    names, blobs = _blobs()
    names, blobs = names[:4], blobs[:4]
    _, flat, lengths = collate_named_blobs(list(zip(names, blobs)))
    pixels = TensorPixelPipeline(SPEC, torch.device("cpu"), torch.device("cpu")).pixels(names, flat, lengths)
    oracle = torch.cat([preprocess_tensors(decode_images([b], [n], "cpu"), SPEC) for n, b in zip(names, blobs)])
    torch.testing.assert_close(pixels, oracle, atol=1e-6, rtol=0)


def _recorded(blocks):
    """A generator over `blocks` and the list of blocks it has handed out so far."""
    pulled = []

    def source():
        for block in blocks:
            pulled.append(block)
            yield block

    return source(), pulled


def test_lagged_host_copies_keep_order_and_cpu_blocks_come_at_once():
    source, pulled = _recorded([torch.full((2, 3), float(i)) for i in range(4)])
    out = lagged_host_copies(source)
    first = next(out)
    assert len(pulled) == 1 and isinstance(first, np.ndarray) and np.all(first == 0.0)
    rest = list(out)
    assert [float(b[0, 0]) for b in rest] == [1.0, 2.0, 3.0] and all(b.dtype == np.float32 for b in rest)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned copies, side streams and nvJPEG need a CUDA device")
def test_cuda_blocks_come_one_late_and_the_side_stream_pixels_match_the_cpu():
    source, pulled = _recorded([torch.full((2, 3), float(i), device="cuda") for i in range(3)])
    out = lagged_host_copies(source)
    assert float(next(out)[0, 0]) == 0.0 and len(pulled) == 2  # block 1 was queued before block 0 came out
    assert [float(b[0, 0]) for b in out] == [1.0, 2.0]
    names, blobs = _blobs()
    _, flat, lengths = collate_named_blobs(list(zip(names[:4], blobs[:4])))
    gpu = TensorPixelPipeline(SPEC, torch.device("cuda"), torch.device("cuda")).pixels(names[:4], flat.pin_memory(), lengths)
    cpu = TensorPixelPipeline(SPEC, torch.device("cpu"), torch.device("cpu")).pixels(names[:4], flat, lengths)
    assert (gpu.cpu() - cpu).abs().mean() < 0.03  # nvJPEG's IDCT/upsampling differ slightly from libjpeg's


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host-sync detection needs a CUDA device")
def test_gpu_preprocess_of_a_batch_never_waits_for_the_gpu():
    names, blobs = _blobs()
    jpegs = [0, 2, 3]  # mixed sizes: grouping, per-size resize, reordering and normalising all run
    images = decode_images([blobs[i] for i in jpegs], [names[i] for i in jpegs], "cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host<->device sync inside raises
    try:
        pixels = preprocess_tensors(images, SPEC)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert pixels.shape == (3, 3, 32, 32) and pixels.is_cuda


# ----------------------------------------------------------------------------- start_pixel_loader
_MARKS = {}


def _marking_preprocess(img):
    """A worker-side preprocess that leaves a file behind, so the test sees when decoding began."""
    from pathlib import Path
    Path(_MARKS["dir"], f"seen_{img.size[0]}x{img.size[1]}").touch()
    return torch.from_numpy(np.asarray(img.convert("RGB").resize((8, 8)), dtype=np.float32).copy()).permute(2, 0, 1)


def test_start_pixel_loader_starts_its_workers_at_the_call_and_keeps_the_order(tmp_path):
    """The overlap create_index and the embedding bench rely on: decoding begins before the first next()."""
    import time

    from mmrag.retrieval.image_pipeline import start_pixel_loader

    paths = []
    for i, (w, h) in enumerate([(20, 10), (30, 12), (40, 14)]):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((h, w, 3), 40 * i, dtype=np.uint8)).save(path)
        paths.append(path)
    _MARKS["dir"] = str(tmp_path)
    batches = start_pixel_loader(paths, _marking_preprocess, SPEC, None, torch.device("cpu"), batch_size=2, workers=1)
    deadline = time.time() + 30
    while not list(tmp_path.glob("seen_*")) and time.time() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob("seen_*")), "no image was decoded before the first next()"
    got = torch.cat(list(batches))
    want = torch.stack([_marking_preprocess(Image.open(p)) for p in paths])   # the oracle: one at a time, in order
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_start_pixel_loader_tensor_path_equals_decode_then_preprocess(tmp_path):
    from mmrag.retrieval.image_pipeline import start_pixel_loader

    names, blobs = _blobs()
    paths = []
    for name, blob in zip(names[:4], blobs[:4]):   # the four real images
        (tmp_path / name).write_bytes(blob.numpy().tobytes())
        paths.append(tmp_path / name)
    got = torch.cat(list(start_pixel_loader(paths, None, SPEC, torch.device("cpu"), torch.device("cpu"), batch_size=3,
                                            workers=0)))
    want = preprocess_tensors(decode_images(blobs[:4], names[:4], "cpu"), SPEC)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


# ----------------------------------------------------------------------------- which files PIL decodes
def test_worker_decoded_files_do_not_depend_on_how_the_files_are_split(tmp_path):
    """cpu_share 0.4 over 10 files, cut into shards of 2 that two ranks take round-robin (rank 0: shards
    0, 2, 4; rank 1: shards 1, 3), as create_index under torchrun does: the files the workers decode are
    the ones a single process over all 10 decodes, whatever dataset holds them."""
    from pathlib import Path

    from mmrag.retrieval.image_pipeline import ImageBytes

    paths = []
    for i in range(10):
        paths.append(tmp_path / f"{i}.jpg")
        Image.fromarray(np.full((8, 8, 3), 20 * i, dtype=np.uint8)).save(paths[-1])
    # the one-process choice by hand: file p goes to PIL when 0.4 * (p + 1) passes a whole number that
    # 0.4 * p had not (every 2.5th file): 0.8->1.2 at p=2, 1.6->2.0 at p=4, 2.8->3.2 at p=7, 3.6->4.0 at p=9
    oracle = [p for p in range(10) if int(0.4 * (p + 1)) > int(0.4 * p)]
    assert oracle == [2, 4, 7, 9]
    preprocess = lambda img: torch.zeros(3, 2, 2)  # noqa: E731 -- a float tensor marks a worker decode

    def decoded_by_workers(files):
        return sorted(int(Path(name).stem) for name, item in (files[j] for j in range(len(files)))
                      if item.dtype == torch.float32)

    assert decoded_by_workers(ImageBytes(paths, preprocess, 0.4)) == oracle
    ranks = {0: [0, 1, 4, 5, 8, 9], 1: [2, 3, 6, 7]}
    split = [p for at in ranks.values() for p in decoded_by_workers(ImageBytes([paths[i] for i in at], preprocess, 0.4, at))]
    assert sorted(split) == oracle
    # by a file's place in its own rank's list instead (no positions), the split would matter: places 2 and
    # 4 of rank 0's files are files 4 and 8, place 2 of rank 1's is file 6
    by_place = [p for at in ranks.values() for p in decoded_by_workers(ImageBytes([paths[i] for i in at], preprocess, 0.4))]
    assert sorted(by_place) == [4, 6, 8]
    with pytest.raises(ValueError, match="3 positions for 10 paths"):
        ImageBytes(paths, preprocess, 0.4, [0, 1, 2])
