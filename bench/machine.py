"""Facts about the machine a benchmark ran on, recorded beside its figures."""

from __future__ import annotations

import os


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
