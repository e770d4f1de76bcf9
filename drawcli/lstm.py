"""DRAW's LSTM cell: nn.LSTMCell's parameters and checkpoint names, with a low-precision fast path for training.

In low precision the four gates come from one bf16 matmul over [x, h_prev] with a bf16 copy of
[W_ih, W_hh] made once per training step by the caller (not once per glimpse, as autocast
would), while the float32 weights stay the optimizer's masters. [x, h_prev] enters as two bf16
parts, hi + lo, stacked into that one matmul: rounding the activations to bf16's 8 bits, not
the weights, is what moved a trained model's gradient (docs/performance.md). The split is a
custom op, so that torch.compile keeps it. Each glimpse's weight gradient
is returned in float32, so autograd sums the glimpses in float32, and the cell state, the
gates' nonlinearities and everything after them stay float32.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


@torch.library.custom_op("drawcli::split_low_precision", mutates_args=())
def split_low_precision(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """x (float32) -> (hi, lo) in `dtype` with hi + lo = x to about twice `dtype`'s mantissa bits.

    An opaque op, because torch.compile folds `x - x.to(bf16).float()` to zero.
    """
    hi = x.to(dtype)
    return hi, (x - hi.float()).to(dtype)


@split_low_precision.register_fake
def _(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty_like(x, dtype=dtype), torch.empty_like(x, dtype=dtype)


class _LowPrecisionGates(torch.autograd.Function):
    """gates (B, 4H) = [x, h] W^T + b, the matmul in the dtype of `weight_lp` (4H, I + H).

    [x, h] = hi + lo, each in that dtype (about 16 mantissa bits together); one matmul over
    both (2B rows), its halves summed in float32, though each half's product is still rounded
    to the dtype. The backward uses hi alone.
    """

    @staticmethod
    def forward(ctx: Any, xh: torch.Tensor, weight_lp: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
                bias: torch.Tensor) -> torch.Tensor:  # fmt: skip
        ctx.split = weight_ih.shape[1]
        if weight_lp.dtype == xh.dtype:  # a full-precision copy: nothing to split
            ctx.save_for_backward(xh, weight_lp)
            return torch.mm(xh, weight_lp.t()) + bias
        hi, lo = split_low_precision(xh, weight_lp.dtype)
        ctx.save_for_backward(hi, weight_lp)
        both = torch.mm(torch.cat([hi, lo]), weight_lp.t()).float()
        return both[: len(xh)] + both[len(xh) :] + bias

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        xh_lp, weight_lp = ctx.saved_tensors
        grad_lp = grad.to(weight_lp.dtype)
        grad_xh = torch.mm(grad_lp, weight_lp).float()
        grad_w = torch.mm(grad_lp.t(), xh_lp).float()  # float32 into the float32 masters' accumulation
        return grad_xh, None, grad_w[:, : ctx.split], grad_w[:, ctx.split :], grad.sum(dim=0)


class LSTMCell(nn.LSTMCell):
    """nn.LSTMCell; `forward(x, state, weight_lp)` with a `low_precision_weight` copy takes the fast path."""

    def low_precision_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """[W_ih, W_hh] (4H, I + H) in `dtype`, detached: make it once per step and pass it to every glimpse."""
        return torch.cat([self.weight_ih, self.weight_hh], dim=1).detach().to(dtype)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None,
                weight_lp: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """x (B, I), state (h, c) each (B, H) -> (h, c); float32 in and out."""
        if weight_lp is None or state is None:
            return super().forward(x, state)
        h, c = state
        bias = self.bias_ih + self.bias_hh
        gates = _LowPrecisionGates.apply(torch.cat([x, h], dim=1), weight_lp, self.weight_ih, self.weight_hh, bias)
        return update(gates, c)


def update(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """gates (B, 4H) in PyTorch's order (i, f, g, o), cell state c (B, H) -> the new (h, c)."""
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c
