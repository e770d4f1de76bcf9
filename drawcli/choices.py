"""The allowed values of every multiple-choice setting, one home for each list.

Kept free of torch, so the command line builds its option types (and `--help`) without
importing it; the modules that use a list import it from here.
"""

from __future__ import annotations

from drawcli.kinds import KINDS

BINARIZE_MODES = ("stochastic", "threshold", "fixed")  # data.binarize; fixed: a binarized data set's own bits
AMP_MODES = ("off", "bf16")  # training precision of the LSTM matmuls (TrainSettings.amp)
COMPILE_CHOICES = ("auto", "on", "off")  # whether the training unit is compiled (TrainSettings.compile)
COMPILE_MODES = ("default", "reduce-overhead")  # torch.compile modes of compile_glimpses (compiled.py)
CUDA_GRAPHS = ("auto", "on", "off")  # whether the whole training step is one CUDA graph (training/graphed.py)
DEVICES = ("auto", "cpu", "cuda")  # devices.pick_device
CANVAS_STARTS = ("zero", "learned")  # DrawConfig.canvas: c_0 = 0, or a learned per-pixel logit
LR_SCHEDULES = ("constant", "cosine")  # TrainSettings.lr_at
MODEL_KINDS = tuple(KINDS)  # a config's kind: each declared in kinds.py
