"""Facts about the machine a benchmark ran on, recorded beside its figures."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


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


@dataclass
class BenchRun:
    """A benchmark run from its start: the date, the load then, and a wall clock."""

    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    load: list[float] | None = field(default_factory=load_average)
    wall: float = field(default_factory=time.perf_counter)

    def write(
        self,
        report: dict[str, Any],
        out: Path,
        module: str,
        argv: Sequence[str],
        torch_threads: int,
    ) -> None:
        """Add the wall time, machine, date and command to `report`; write it as JSON to `out`."""
        report.update(
            {
                "wall_seconds": round(time.perf_counter() - self.wall, 1),
                "machine": run_machine(self.load, torch_threads),
                "date": self.started.isoformat(timespec="seconds"),
                "command": f"python -m {module} " + " ".join(argv),
            }
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
