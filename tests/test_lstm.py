"""The unrolled LSTM equals nn.LSTMCell: outputs and every gradient, over several glimpses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from drawcli.lstm import UnrolledLSTM


def _run(cell: nn.LSTMCell, xs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], unrolled: bool) -> torch.Tensor:
    step = UnrolledLSTM(cell) if unrolled else cell
    outs = []
    for x in xs:
        state = step(x, state)
        outs.append(torch.cat(state, dim=1))
    return torch.stack(outs)


@pytest.mark.parametrize("zero_state", [True, False])
def test_unrolled_matches_lstm_cell(zero_state: bool) -> None:
    torch.manual_seed(0)
    cell = nn.LSTMCell(7, 5).double()
    xs = torch.randn(4, 3, 7, dtype=torch.float64, requires_grad=True)
    if zero_state:  # DRAW's first glimpse: a state that needs no gradient
        h0, c0 = torch.zeros(3, 5, dtype=torch.float64), torch.zeros(3, 5, dtype=torch.float64)
    else:
        h0 = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
        c0 = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(4, 3, 10, dtype=torch.float64)  # a loss that reads every h and c
    results = []
    for unrolled in (False, True):
        cell.zero_grad()
        leaves = [xs] + ([] if zero_state else [h0, c0])
        for leaf in leaves:
            leaf.grad = None
        out = _run(cell, xs, (h0, c0), unrolled)
        (out * weights).sum().backward()
        results.append([out.detach()] + [leaf.grad for leaf in leaves] + [p.grad for p in cell.parameters()])
    for plain, fast in zip(*results):
        torch.testing.assert_close(fast, plain, rtol=1e-12, atol=1e-12)


def test_weight_gradient_of_one_step_by_hand() -> None:
    # One step from a zero state with x = e_1: dL/dW_ih is the outer product dG^T x, so only
    # its first column is non-zero and it equals the bias gradient.
    cell = nn.LSTMCell(3, 2).double()
    x = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    zero = torch.zeros(1, 2, dtype=torch.float64)
    h, c = UnrolledLSTM(cell)(x, (zero, zero))
    (h.sum() + c.sum()).backward()
    assert torch.equal(cell.weight_ih.grad[:, 1:], torch.zeros(8, 2, dtype=torch.float64))
    torch.testing.assert_close(cell.weight_ih.grad[:, 0], cell.bias_ih.grad)
    torch.testing.assert_close(cell.bias_hh.grad, cell.bias_ih.grad)
    assert torch.equal(cell.weight_hh.grad, torch.zeros(8, 2, dtype=torch.float64))  # h_0 = 0


def test_retain_graph_backward_twice_doubles_the_gradient() -> None:
    torch.manual_seed(1)
    cell = nn.LSTMCell(4, 3).double()
    xs = torch.randn(3, 2, 4, dtype=torch.float64)
    zero = torch.zeros(2, 3, dtype=torch.float64)
    loss = _run(cell, xs, (zero, zero), unrolled=True).sum()
    loss.backward(retain_graph=True)
    once = cell.weight_hh.grad.clone()
    loss.backward()
    torch.testing.assert_close(cell.weight_hh.grad, 2 * once)


def test_needs_biases() -> None:
    with pytest.raises(ValueError, match="needs an LSTMCell with biases"):
        UnrolledLSTM(nn.LSTMCell(3, 2, bias=False))
