"""An nn.LSTMCell unrolled over the glimpses for training: one autograd node per glimpse, and the
weight gradients of all T glimpses computed in a single matmul when the backward pass ends.

Autograd on nn.LSTMCell records about fifteen nodes per glimpse, and its backward computes a
(4H, in) weight gradient from only B rows at every glimpse and adds it into .grad: T small,
memory-bound matmuls per weight. Here each glimpse stores its input, hidden state and gate
gradients, and the root node (which autograd runs after every glimpse's node, since they all
read the weights through it) forms dW = dG^T [X] once with K = T*B. Same numbers as the cell,
up to floating-point summation order; `tests/test_lstm.py` checks values and gradients.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.autograd import Function
from torch.autograd.function import once_differentiable


class _Tape:
    """What the glimpses of one forward leave for the weight gradients, by glimpse index."""

    def __init__(self) -> None:
        self.inputs: dict[int, torch.Tensor] = {}
        self.hidden: dict[int, torch.Tensor] = {}
        self.gate_grads: dict[int, torch.Tensor] = {}


class _Weights(Function):
    """Identity on (W_ih, W_hh, b); its backward turns the tape into the three gradients."""

    @staticmethod
    def forward(ctx: Any, tape: _Tape, w_ih: torch.Tensor, w_hh: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ctx.tape = tape
        return w_ih.view_as(w_ih), w_hh.view_as(w_hh), bias.view_as(bias)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *unused: Any) -> tuple[Any, ...]:
        tape: _Tape = ctx.tape
        steps = sorted(tape.gate_grads)
        if not steps:
            return None, None, None, None
        grads = torch.cat([tape.gate_grads[t] for t in steps])  # (T*B, 4H)
        tape.gate_grads.clear()  # a second backward (retain_graph) refills it
        inputs = torch.cat([tape.inputs[t] for t in steps])  # (T*B, in)
        hidden = torch.cat([tape.hidden[t] for t in steps])  # (T*B, H)
        grads_t = grads.t()
        return None, grads_t @ inputs, grads_t @ hidden, grads.sum(dim=0)


class _Step(Function):
    """One LSTM step, gates in PyTorch's order (i, f, g, o); the backward by hand."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_ih: torch.Tensor,
                w_hh: torch.Tensor, bias: torch.Tensor, tape: _Tape, t: int) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        gates = torch.addmm(bias, x, w_ih.t()).addmm_(h, w_hh.t())
        i, f, g, o = gates.chunk(4, dim=1)
        i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
        c_next = torch.addcmul(f * c, i, g)
        tanh_c = c_next.tanh()
        ctx.save_for_backward(c, i, f, g, o, tanh_c, w_ih, w_hh)
        ctx.tape, ctx.t = tape, t
        tape.inputs[t], tape.hidden[t] = x, h
        return o * tanh_c, c_next

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_h: torch.Tensor, grad_c: torch.Tensor) -> tuple[Any, ...]:
        c, i, f, g, o, tanh_c, w_ih, w_hh = ctx.saved_tensors
        grad_c = torch.addcmul(grad_c, grad_h * o, 1 - tanh_c * tanh_c)  # through h = o tanh(c)
        gate_grads = torch.cat([
            grad_c * g * i * (1 - i),
            grad_c * c * f * (1 - f),
            grad_c * i * (1 - g * g),
            grad_h * tanh_c * o * (1 - o),
        ], dim=1)  # fmt: skip
        ctx.tape.gate_grads[ctx.t] = gate_grads
        needs = ctx.needs_input_grad  # the first glimpse's zero state needs no gradient
        return (gate_grads @ w_ih if needs[0] else None, gate_grads @ w_hh if needs[1] else None,
                grad_c * f if needs[2] else None, None, None, None, None, None)


class UnrolledLSTM:
    """Calls like `cell(x, (h, c))`, for one forward pass of up to T glimpses; make a new one per pass."""

    def __init__(self, cell: nn.LSTMCell) -> None:
        if cell.bias_ih is None or cell.bias_hh is None:
            raise ValueError("UnrolledLSTM needs an LSTMCell with biases")
        self.tape = _Tape()
        # The two biases always appear summed; autograd hands each the same gradient.
        self.w_ih, self.w_hh, self.bias = _Weights.apply(self.tape, cell.weight_ih, cell.weight_hh, cell.bias_ih + cell.bias_hh)
        self.t = 0

    def __call__(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, in), state (h, c) each (B, H) -> (h', c')."""
        h, c = state
        self.t += 1
        return _Step.apply(x, h, c, self.w_ih, self.w_hh, self.bias, self.tape, self.t)
