"""torch.compile of a model's training unit, with the eager fallback when the compiler fails.

A model names the method it hands to torch.compile (`compile_unit`: DRAW's one glimpse, the
classifier's whole glimpse loop). Training forwards call the compiled unit through `run_unit`;
a compiler error there, or in its backward (training/step.py asks `eager_rerun`), drops the
compiled unit, records why in `compile_failure`, and the step is computed eagerly instead.
Evaluation (model.eval()) always runs eagerly.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from typing import Any, Callable, Iterator

import torch

from drawcli.choices import COMPILE_MODES


class CompiledTraining:
    """Mixin for an nn.Module whose training forward can run `compile_unit` compiled."""

    compile_unit: str  # the name of the method torch.compile gets
    _compiled: Any = None
    _compile_mode: str | None = None
    compile_failure: str | None = None  # why torch.compile failed, after which training ran eagerly

    def compile_glimpses(self, mode: str = "default") -> None:
        """Use torch.compile for the unit of training forwards (fuses the model's many small ops).

        Static shapes (the fastest kernels): a new batch shape, such as the epoch's short last
        batch, compiles once more. mode "reduce-overhead" also replays the unit as a CUDA graph
        on a GPU (one launch instead of dozens); on the CPU it is the same as "default".
        """
        if mode not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {mode!r}; expected one of {', '.join(COMPILE_MODES)}")
        import_quietly("torch.utils.cpp_extension")
        self._compiled = torch.compile(self._eager_unit(), dynamic=False, mode=None if mode == "default" else mode)
        self._compile_mode = mode

    def start_step(self) -> None:
        """Call before each training step: under CUDA graphs (reduce-overhead) the previous
        step's graph outputs may then be overwritten; otherwise it does nothing."""
        if self._compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()

    def training_unit(self) -> Callable[..., Any]:
        """The unit this forward should call: the compiled one in training, else the eager one."""
        if self._compiled is not None and self.training:  # type: ignore[attr-defined]
            return self._compiled
        return self._eager_unit()

    def run_unit(self, unit: Callable[..., Any], *args: Any) -> tuple[Any, Callable[..., Any]]:
        """(unit(*args), the unit to call next): after a compiler error, the eager result and unit.

        If the eager unit fails too, the error is the model's, not the compiler's: it propagates
        and the compiled unit stays.
        """
        try:
            return unit(*args), unit
        except Exception as exc:  # noqa: BLE001 - any compiler failure; an eager error re-raises below
            if unit is not self._compiled:  # (a bound method is a new object at each lookup: compare the compiled one)
                raise
            out = self._eager_unit()(*args)
            return out, self._compile_failed(exc)

    def eager_rerun(self, exc: Exception) -> Any:
        """After an error in backward, a context to redo the step in: without the compiled unit
        inside it, recorded as a compiler failure if the redo succeeds, restored if it fails too.
        None when no compiled unit could have run."""
        if self._compiled is None or not self.training:  # type: ignore[attr-defined]
            return None
        return self._without_compiled(exc)

    @contextlib.contextmanager
    def _without_compiled(self, exc: Exception) -> Iterator[None]:
        compiled, self._compiled = self._compiled, None
        try:
            yield
        except BaseException:
            self._compiled = compiled
            raise
        self._compile_failed(exc)

    def _eager_unit(self) -> Callable[..., Any]:
        return getattr(self, self.compile_unit)

    def _compile_failed(self, exc: Exception) -> Callable[..., Any]:
        """Drop the compiled unit after a compiler error, record why, and return the eager one."""
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        self.compile_failure = f"{type(exc).__name__}: {first_line}"
        self._compiled = None
        return self._eager_unit()


def import_quietly(module: str) -> None:
    """Import `module` with its logger at ERROR. The compiler imports torch's C++-extension
    module, which warns "No CUDA runtime is found" where a CUDA toolkit is installed without a
    GPU: noise in a CPU run's output. The logger's level is restored afterwards."""
    log = logging.getLogger(module)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        importlib.import_module(module)
    finally:
        log.setLevel(level)
