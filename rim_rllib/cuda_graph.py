"""A whole training step captured once as a CUDA graph and replayed.

A RIM step is a few dozen small kernels per time step, so on a GPU a training step of a
sequence model is bound by kernel launches, not by work: one MNIST batch launches ~20,000
kernels. Captured once, the step (forward over every time step, backward, gradient
clipping, optimiser update) replays with one launch.

What a captured step must respect, as any CUDA graph: every call has inputs of the same
shapes, dtypes and device; the step makes no host synchronisation (no ``.item()``, no
Python branch on tensor values); it drops its gradients before backward
(``zero_grad(set_to_none=True)``) so that backward allocates them in the graph's memory;
its optimiser is built with ``capturable=True`` (:func:`capturable_adam`) and an lr that a
scheduler changes is a device tensor. Dropout and other random ops draw new numbers at
every replay (PyTorch advances the CUDA generator's offset per replay).
"""

import gc

import torch
from torch import Tensor


def capturable_adam(params, lr: float, device: torch.device) -> torch.optim.Adam:
    """``torch.optim.Adam`` whose step can be captured in a CUDA graph: its state and,
    so that lr schedulers still act on a replayed step, its lr live on ``device``. On
    other devices a plain Adam."""
    if device.type != "cuda":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.Adam(params, lr=torch.tensor(lr, device=device), capturable=True)


class GraphedStep:
    """Call ``step(*inputs)`` eagerly for the first ``warmup`` calls, then capture it as a
    CUDA graph and replay the graph on every later call.

    Warm-up lets lazy work happen outside the capture (cuBLAS handles, optimiser state,
    ``torch.compile``); it runs on a side stream, as PyTorch's whole-network capture
    recipe does. Every call is a real step on its inputs: a call copies them into the
    graph's static inputs and replays.

    Args:
        step: a function of tensors returning a tensor or a tuple of tensors.
        warmup: eager calls before the capture.

    Returns (on call): ``step``'s outputs. After the capture these are the graph's static
    output tensors, overwritten by the next call: clone or reduce what you keep.
    """

    def __init__(self, step, warmup: int = 3):
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
            raise ValueError(f"warmup must be an int >= 1 (eager calls before the capture), "
                             f"got {warmup!r}")
        self.step = step
        self.warmup = warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self._inputs: list[Tensor] = []
        self._outputs = None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, *inputs: Tensor):
        self.calls += 1
        if self.graph is None and self.calls <= self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                outputs = self.step(*inputs)
            torch.cuda.current_stream().wait_stream(side)
            return outputs
        if self.graph is None:
            self._capture(inputs)
        elif len(inputs) != len(self._inputs) or any(
                x.shape != s.shape or x.dtype != s.dtype
                for x, s in zip(inputs, self._inputs)):
            raise ValueError(
                "GraphedStep: inputs must keep the captured shapes and dtypes "
                f"{[(tuple(s.shape), s.dtype) for s in self._inputs]}, got "
                f"{[(tuple(x.shape), x.dtype) for x in inputs]}")
        for static, x in zip(self._inputs, inputs):
            static.copy_(x, non_blocking=True)
        self.graph.replay()
        return self._outputs

    def _capture(self, inputs: tuple[Tensor, ...]) -> None:
        # A dead reference cycle holding an earlier graph must not be collected during
        # the capture: destroying a graph then breaks it (torch.cuda.graph no longer
        # collects by default).
        gc.collect()
        self._inputs = [x.clone() for x in inputs]
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._outputs = self.step(*self._inputs)
        self.graph = graph
