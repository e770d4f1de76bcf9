"""DRAW's LSTM cell: the fast path computes nn.LSTMCell's function, and in bf16 keeps float32 masters and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from drawcli.lstm import LSTMCell
from drawcli.model import DRAW


def test_the_fused_gate_path_is_nn_lstmcell_in_float32() -> None:
    """With a float32 'low-precision' copy the one-matmul path must equal PyTorch's cell: gate order, bias, split."""
    torch.manual_seed(0)
    cell = LSTMCell(5, 7)
    reference = nn.LSTMCell(5, 7)
    reference.load_state_dict(cell.state_dict())
    x, h, c = torch.randn(3, 5), torch.randn(3, 7), torch.randn(3, 7)
    h1, c1 = cell(x, (h, c), cell.low_precision_weight(torch.float32))
    h2, c2 = reference(x, (h, c))
    torch.testing.assert_close((h1, c1), (h2, c2), rtol=1e-6, atol=1e-6)
    (h1.sum() + c1.square().sum()).backward()
    (h2.sum() + c2.square().sum()).backward()
    for (name, p), q in zip(cell.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_evaluation_stays_float32_under_bf16_training(tiny_config) -> None:
    torch.manual_seed(0)
    model = DRAW(tiny_config(glimpses=4)).eval()
    x = (torch.rand(4, *model.config.image_shape) > 0.5).float()
    noise = model.noise(4)
    exact = model(x, noise=noise).loss
    model.low_precision(torch.bfloat16)
    assert torch.equal(model(x, noise=noise).loss, exact)
    model.train()
    assert not torch.equal(model(x, noise=noise).loss, exact)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_bf16_gates_keep_the_activations_bits_that_bf16_drops(compiled: bool) -> None:
    """[1 + 3u, 1 + u] . [1, -1] with u = 2^-12 is 2u; bf16 rounds both inputs to 1 (spacing 2^-7), giving 0.

    The gates take [x, h] as hi + lo in two bf16 parts, so the difference survives, compiled too
    (torch.compile folds a plain x - x.to(bf16).float() to zero).
    """
    from drawcli.lstm import _LowPrecisionGates

    u = 2.0**-12
    xh = torch.tensor([[1 + 3 * u, 1 + u]])
    weight = torch.tensor([[1.0, -1.0]])
    assert torch.equal(xh.bfloat16().float() @ weight.t(), torch.zeros(1, 1))  # what rounding the inputs would give
    gates = _LowPrecisionGates.apply
    if compiled:
        torch._dynamo.reset()
        gates = torch.compile(lambda *args: _LowPrecisionGates.apply(*args), fullgraph=True)
    out = gates(xh, weight.bfloat16(), weight[:, :1], weight[:, 1:], torch.zeros(1))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([[2 * u]]), rtol=1e-2, atol=0.0)


def test_the_split_op_passes_torch_librarys_checks() -> None:
    """Schema, fake tensors (shapes, dtypes, strides) and compile-ability, contiguous and transposed."""
    from drawcli.lstm import split_low_precision

    for x in (torch.randn(3, 5), torch.randn(5, 3).t()):
        torch.library.opcheck(split_low_precision, (x, torch.bfloat16))
        hi, lo = split_low_precision(x, torch.bfloat16)
        assert (hi.float() + lo.float() - x).abs().max() <= 2.0**-15 * x.abs().max()


def test_compiled_bf16_training_forward_matches_eager(tiny_config) -> None:
    """The compiled glimpse keeps the bf16 path's numbers: same loss and gradients as eager bf16."""
    torch.manual_seed(0)
    model = DRAW(tiny_config(glimpses=3, enc_size=32, dec_size=32)).train()
    x = (torch.rand(8, *model.config.image_shape) > 0.5).float()
    noise = model.noise(8)
    model.low_precision(torch.bfloat16)
    runs = []
    for compiled in (False, True):
        if compiled:
            torch._dynamo.reset()
            model.compile_glimpses()
        model.zero_grad()
        loss = model(x, noise=noise).loss
        loss.sum().backward()
        runs.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    assert model.compile_failure is None
    (eager, eager_grads), (fast, fast_grads) = runs
    torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-4)
    for a, b in zip(fast_grads, eager_grads):
        assert torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0) > 0.99999
