"""Facts about the machine a benchmark ran on, recorded beside its figures."""

from __future__ import annotations

import os


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def torch_machine() -> dict[str, object]:
    """CPU count, load at the end, platform, torch version and threads of a training bench."""
    import platform

    import torch

    return {
        "cpu_count": os.cpu_count(),
        "load_average_at_end": load_average(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def run_machine(load_at_start: list[float] | None, torch_threads: int) -> dict[str, object]:
    """CPU count, torch threads, load when the run began, platform and Python of a bench."""
    import platform

    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch_threads,
        "load_average_at_start": load_at_start,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
