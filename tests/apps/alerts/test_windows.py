from __future__ import annotations

import pytest

from threefold.apps.alerts.windows import WindowCounts, WindowSpec, keys_for
from threefold.core.errors import ConfigError


def test_tumbling_window_contains_the_event():
    spec = WindowSpec(size_s=300, slide_s=300)
    assert spec.windows_for(1000) == [(900, 1200)]
    assert spec.windows_for(900) == [(900, 1200)]
    assert spec.windows_for(899.5) == [(600, 900)]


def test_sliding_windows_overlap():
    spec = WindowSpec(size_s=300, slide_s=100)
    assert spec.windows_for(1050) == [(800, 1100), (900, 1200), (1000, 1300)]


def test_watermark_honours_grace():
    spec = WindowSpec(300, 300, grace_s=60)
    assert spec.watermark(1260) == 1200
    assert spec.is_closed(1200, spec.watermark(1260))
    assert not spec.is_closed(1200, spec.watermark(1259))
    assert not spec.is_closed(1200, None)


def test_size_must_be_a_multiple_of_slide():
    with pytest.raises(ConfigError, match="multiple of the slide"):
        WindowSpec(300, 70)


def test_keys_and_share():
    assert keys_for("legal", ["HLX", "NWB"]) == ["topic:legal", "entity:HLX", "entity:NWB"]
    counts = WindowCounts("topic:legal", 0, 300, total=4, negative=3)
    assert counts.negative_share == 0.75
    assert WindowCounts("k", 0, 1).negative_share == 0.0
