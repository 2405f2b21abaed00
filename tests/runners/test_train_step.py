"""The optimizer builder and the training step against hand-written references: AdamW (fused and
foreach) equals the textbook update with decoupled weight decay, none on biases and norms."""

import pytest
import torch
from torch import nn

from mmrag.runners.train_step import TrainStep, build_optimizer, cast_weights

LR, WD, BETAS, EPS = 0.05, 0.1, (0.9, 0.99), 1e-8


def _toy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2))
    model[2].weight.requires_grad_(False)  # frozen: the optimizer must not touch it
    return model


def _loss(model, step):
    """The toy's loss at `step`, its input made on the model's device (a CUDA model reads CUDA inputs)."""
    x = torch.linspace(-1, 1, 8).reshape(2, 4) * (step + 1)
    return model(x.to(next(model.parameters()).device)).square().sum()


def _reference_adamw(model, steps):
    """AdamW written out: m, v moments, bias correction, decay lr*wd*p on 2-d weights only."""
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    m = {n: torch.zeros_like(params[n]) for n in trained}
    v = {n: torch.zeros_like(params[n]) for n in trained}
    shadow = _toy()
    for t in range(1, steps + 1):
        shadow.load_state_dict(params)
        shadow.zero_grad()
        _loss(shadow, t - 1).backward()
        grads = {n: p.grad for n, p in shadow.named_parameters()}
        for n in trained:
            decay = WD if n in ("0.weight",) else 0.0  # 1-d: biases, the LayerNorm's weight and bias
            params[n] = params[n] * (1 - LR * decay)
            m[n] = BETAS[0] * m[n] + (1 - BETAS[0]) * grads[n]
            v[n] = BETAS[1] * v[n] + (1 - BETAS[1]) * grads[n] ** 2
            m_hat, v_hat = m[n] / (1 - BETAS[0] ** t), v[n] / (1 - BETAS[1] ** t)
            params[n] = params[n] - LR * m_hat / (v_hat.sqrt() + EPS)
    return params


def _train_and_compare(model, optimizer, steps=3, atol=1e-6):
    """`steps` updates of the toy `model` (on any device) equal the hand-written AdamW run on the CPU."""
    expected = _reference_adamw(_toy(), steps)  # the same seeded initial weights, on the CPU
    for t in range(steps):
        optimizer.zero_grad()
        _loss(model, t).backward()
        optimizer.step()
    for name, p in model.named_parameters():
        assert torch.allclose(p.detach().cpu(), expected[name], atol=atol), name
    assert torch.equal(model[2].weight.cpu(), _toy()[2].weight)  # frozen weight untouched


@pytest.mark.parametrize("fused", [False, True])
def test_adamw_matches_a_hand_written_reference(fused):
    model = _toy()
    optimizer = build_optimizer(model, "adamw", LR, WD, BETAS, fused=fused)
    assert optimizer.defaults["fused"] is (True if fused else None)
    _train_and_compare(model, optimizer)


def test_adamw_is_not_fused_by_default_on_the_cpu():
    model = _toy()
    optimizer = build_optimizer(model, "adamw", LR, WD, BETAS)
    assert optimizer.defaults["fused"] is None  # torch's foreach loop
    _train_and_compare(model, optimizer)


def test_step_over_micro_batches_equals_one_batch_and_returns_the_loss_sum():
    """Two micro-batches with the loss normalised by the global token count give the gradient (and so
    the update) of one batch holding both; the returned value is the summed loss, on the device."""

    class Summed(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 1)

        def forward(self, batch):
            return {"loss_sum": (self.lin(batch["x"]) - batch["y"]).square().sum()}

    torch.manual_seed(1)
    x, y = torch.randn(6, 3), torch.randn(6, 1)
    a, b = Summed(), Summed()
    b.load_state_dict(a.state_dict())
    step_a = TrainStep(a, build_optimizer(a, lr=0.1), max_grad_norm=0.0)
    step_b = TrainStep(b, build_optimizer(b, lr=0.1), max_grad_norm=0.0)
    with torch.no_grad():
        expected = float((a.lin(x) - y).square().sum())
    got = step_a([{"x": x[:2], "y": y[:2]}, {"x": x[2:], "y": y[2:]}], 6.0)
    step_b([{"x": x, "y": y}], 6.0)
    assert isinstance(got, torch.Tensor) and float(got) == pytest.approx(expected, rel=1e-6)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_cast_weights_bf16_with_fp32_trained_weights():
    model = _toy()
    cast_weights(model, "bfloat16", "float32")
    assert model[2].weight.dtype == torch.bfloat16  # frozen
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fused-by-default is for CUDA weights")
def test_fused_adamw_is_the_default_on_cuda():
    model = _toy().cuda()
    optimizer = build_optimizer(model, "adamw", LR, WD, BETAS)  # fused left to the builder
    assert optimizer.defaults["fused"] is True
    _train_and_compare(model, optimizer, atol=1e-5)  # CUDA kernels round differently from the CPU reference
