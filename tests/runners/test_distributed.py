"""Wrapping for several processes: FSDP2 with frozen weights replicated trains as one process does, and
leaves the frozen weights whole; DDP broadcasts no constant buffers; a HostBatch passes the wrappers'
input copying untouched. The 2-process checks run on 2 gloo processes (torch.multiprocessing), against
one process training the unwrapped model on the whole batch."""
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from mmrag.processors.tokenization import IGNORE_INDEX, IMAGE_PLACEHOLDER_ID
from mmrag.runners.distributed import (HostBatch, Ranks, buffers_change_in_training, full_trainable_state, wrap_ddp,
                                       wrap_fsdp)
from mmrag.runners.train_step import TrainStep, build_optimizer
from tests.conftest import TINY_LLM, TINY_TOWER, build_tiny_model

MODEL_CFG = {"arch": "mm_llm", "vision_tower": {"type": "hf_clip", "config": dict(TINY_TOWER), "select_layer": -1},
             "llm": {"config": dict(TINY_LLM)}, "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0}}
ROWS, SEQ, STEPS, LR = 4, 16, 2, 1e-2


def _batches(model):
    """STEPS whole batches of ROWS rows; row i has 2 + i target tokens (the halves differ in targets, so
    the loss must be normalised over the global batch, not per process)."""
    out = []
    for step in range(STEPS):
        g = torch.Generator().manual_seed(step)
        ids = torch.randint(3, model.token_ids.vocab_size, (ROWS, SEQ), generator=g)
        ids[:, 1:1 + model.num_visual_tokens] = IMAGE_PLACEHOLDER_ID
        labels = torch.full_like(ids, IGNORE_INDEX)
        for i in range(ROWS):
            labels[i, -(2 + i):] = ids[i, -(2 + i):]
        size = TINY_TOWER["image_size"]
        out.append({"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids),
                    "pixel_values": torch.randn(ROWS, 3, size, size, generator=g)})
    return out


def _half(batch, rank, world):
    share = ROWS // world
    return {k: v[rank * share:(rank + 1) * share] for k, v in batch.items()}


def _train(wrapped, model, rank, world):
    """STEPS steps on this process's share; returns the global losses (summed over processes)."""
    step_fn = TrainStep(wrapped, build_optimizer(wrapped, lr=LR), world=world, max_grad_norm=1.0)
    losses = []
    for batch in _batches(model):
        units = float(model.loss_units(batch))  # the whole batch's target tokens
        loss = step_fn([_half(batch, rank, world)], units) / units
        if world > 1:
            dist.all_reduce(loss)
        losses.append(float(loss))
    return losses


def _layout(model):
    from torch.distributed.tensor import DTensor

    return {name: ("DTensor", tuple(p.to_local().shape)) if isinstance(p, DTensor) else ("Tensor", tuple(p.shape))
            for name, p in model.named_parameters()}


def _worker(rank: int, world: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    ranks = Ranks(rank, rank, world, torch.device("cpu"), "gloo")
    result = {}
    for frozen in ("replicate", "shard"):
        model = build_tiny_model(MODEL_CFG).train()
        wrapped = wrap_fsdp(model, ranks, frozen=frozen)
        result[frozen] = {"layout": _layout(model)}
        if frozen == "replicate":
            result[frozen]["losses"] = _train(wrapped, model, rank, world)
            result[frozen]["weights"] = full_trainable_state(wrapped)
    model = build_tiny_model(MODEL_CFG).train()
    wrapped = wrap_ddp(model, ranks)
    result["ddp"] = {"broadcast_buffers": wrapped.broadcast_buffers, "losses": _train(wrapped, model, rank, world),
                     "weights": full_trainable_state(wrapped)}
    torch.save(result, Path(out) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("fsdp2")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # forked: the children start with torch, transformers and mmrag already imported (seconds each)
    mp.start_processes(_worker, args=(2, str(out / "store"), str(out)), nprocs=2, join=True, start_method="fork")
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


@pytest.fixture(scope="module")
def one_process():
    """The oracle: the unwrapped model, one process, the whole batch."""
    model = build_tiny_model(MODEL_CFG).train()
    losses = _train(model, model, 0, 1)
    return model, losses, full_trainable_state(model)


def _assert_same_training(got, oracle):
    model, losses, weights = oracle
    assert got["losses"] == pytest.approx(losses, rel=1e-5)
    assert got["weights"].keys() == weights.keys()
    for name, w in weights.items():
        torch.testing.assert_close(got["weights"][name], w, atol=1e-5, rtol=1e-4)
    first = build_tiny_model(MODEL_CFG)
    assert any(not torch.equal(first.state_dict()[n], w) for n, w in weights.items())  # the steps did update


def test_fsdp_replicating_frozen_weights_trains_as_one_process(two_processes, one_process):
    for rank in range(2):
        _assert_same_training(two_processes[rank]["replicate"], one_process)


def test_fsdp_replicate_leaves_frozen_weights_whole_and_shards_the_trained(two_processes, one_process):
    model = one_process[0]
    full = {n: (p.requires_grad, tuple(p.shape)) for n, p in model.named_parameters()}
    for rank in range(2):
        replicate, shard = two_processes[rank]["replicate"]["layout"], two_processes[rank]["shard"]["layout"]
        assert replicate.keys() == full.keys()
        for name, (trained, shape) in full.items():
            rows = -(-shape[0] // 2)  # dim 0 in 2 chunks: rank 0 the first ceil(n/2) rows
            shard_shape = (rows if rank == 0 else shape[0] - rows, *shape[1:])
            assert replicate[name] == (("DTensor", shard_shape) if trained else ("Tensor", shape)), name
            assert shard[name] == ("DTensor", shard_shape), name  # run.fsdp_frozen=shard: frozen ones too
    assert sum(trained for trained, _ in full.values()) < len(full) // 2  # mostly frozen: the check means something


def test_ddp_trains_as_one_process_without_broadcasting_constant_buffers(two_processes, one_process):
    for rank in range(2):
        assert two_processes[rank]["ddp"]["broadcast_buffers"] is False
        _assert_same_training(two_processes[rank]["ddp"], one_process)


def test_buffers_change_in_training_only_for_running_statistics_in_training_mode():
    class FrozenTower(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm1d(4)

        def train(self, mode=True):
            return super().train(False)  # as a frozen vision tower: eval whatever the runner asks

    assert buffers_change_in_training(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).eval())
    assert not buffers_change_in_training(nn.Sequential(nn.Linear(4, 4), FrozenTower()))
    assert not buffers_change_in_training(nn.Sequential(nn.BatchNorm1d(4, track_running_stats=False)))
    assert not buffers_change_in_training(build_tiny_model(MODEL_CFG))  # rotary frequencies, position ids
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).eval()
    buffers_change_in_training(model)
    assert not any(m.training for m in model.modules())  # the modes are left as they were


def test_host_batch_passes_the_wrappers_input_copy_untouched():
    """What DDP (given device_ids) and FSDP2's root unit call on the forward's arguments: a dict's tensors
    are copied to the device, a HostBatch is handed on as it is; it reads and writes as the dict."""
    from torch.distributed.utils import _to_kwargs

    batch = {"input_ids": torch.arange(6).reshape(2, 3), "context": {"text_ids": torch.zeros(2)}}
    moved, _ = _to_kwargs((batch,), {}, torch.device("meta"), False)
    assert moved[0][0]["input_ids"].device.type == "meta"  # the plain dict: copied
    host = HostBatch(batch)
    passed, _ = _to_kwargs((host,), {}, torch.device("meta"), False)
    assert passed[0][0] is host and host["input_ids"].device.type == "cpu"
    assert dict(host) == batch and host.get("labels") is None and "context" in host and len(host) == 2
    host["labels"] = torch.ones(2)
    assert "labels" in batch
