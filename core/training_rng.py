"""Training leaves the process's global random number generators as it found them.

Training seeds Python's `random`, NumPy's global RNG and torch's (CPU and CUDA) so that the same
seed gives the same model (`transformers.set_seed`; the transformers Trainer seeds them again
itself). In an API worker that retrains in a background thread those generators are also the
serving threads': one retrain would reseed them all. Every training entry point is wrapped in
`keeps_global_rngs`, which saves the three states before it runs and restores them when it
returns or raises, so a caller's stream after training is the one it would have had without it.

Limit: the generators are per process, not per thread. A thread that draws from them *while* a
training runs draws from the training's seeded stream (which then no longer reproduces), and
the restore rewinds what it drew. Code that needs its own stream holds its own generator
(`random.Random(seed)`, `np.random.default_rng(seed)`, `torch.Generator().manual_seed(seed)`).
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

import numpy as np

P = ParamSpec("P")
R = TypeVar("R")


@contextlib.contextmanager
def global_rngs_restored() -> Iterator[None]:
    """Restore the states of `random`, NumPy's global RNG and torch's CPU and CUDA RNGs on exit."""
    import torch  # here, not at import: the embedder module imports torch only when used

    python_state = random.getstate()
    numpy_state = np.random.get_state()
    # every CUDA device explicitly (fork_rng warns when it has to pick them itself), but only
    # once this process uses CUDA: reading a device's RNG state creates a context on it (memory
    # on every GPU for a process serving on the CPU); a stream never drawn has nothing to keep
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def keeps_global_rngs(function: Callable[P, R]) -> Callable[P, R]:
    """Run `function` inside `global_rngs_restored` (the decorator of training entry points)."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with global_rngs_restored():
            return function(*args, **kwargs)

    return wrapper
