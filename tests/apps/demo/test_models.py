"""The demo's artefact cache: built once per key, rebuilt when inputs change, never half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from threefold.apps.demo.models import META_FILE, cache_key, cached_build, prepare_recs_cached
from threefold.core.encoder import HashingEncoder


def test_cache_builds_once_and_rebuilds_when_the_sample_changes(tmp_path: Path) -> None:
    sample = tmp_path / "sample.csv"
    sample.write_text("text,label\ngood,positive\n", encoding="utf-8")
    builds = []

    def build(out: Path) -> None:
        builds.append(out)
        (out / "model.txt").write_text(sample.read_text(), encoding="utf-8")

    root = tmp_path / "cache"
    first = cached_build(root, "m", cache_key([sample], "base", {"steps": 1}), build)
    again = cached_build(root, "m", cache_key([sample], "base", {"steps": 1}), build)
    assert (first.built, again.built, again.path) == (True, False, first.path)
    assert len(builds) == 1

    sample.write_text("text,label\nbad,negative\n", encoding="utf-8")
    changed = cached_build(root, "m", cache_key([sample], "base", {"steps": 1}), build)
    assert changed.built and changed.path != first.path
    assert "bad" in (changed.path / "model.txt").read_text()
    other_base = cache_key([sample], "other-base", {"steps": 1})
    assert other_base != changed.key
    forced = cached_build(root, "m", changed.key, build, rebuild=True)
    assert forced.built and len(builds) == 3


def test_an_interrupted_build_leaves_no_artefact(tmp_path: Path) -> None:
    def build(out: Path) -> None:
        (out / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_build(tmp_path, "m", "k1", build)
    assert list(tmp_path.iterdir()) == []
    done = cached_build(tmp_path, "m", "k1", lambda out: None)
    assert done.built and (done.path / META_FILE).is_file()


class CountingEncoder(HashingEncoder):
    """A HashingEncoder that counts the texts it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.texts = 0

    def encode(self, texts, *args, **kwargs):
        self.texts += len(texts)
        return super().encode(texts, *args, **kwargs)


@pytest.mark.integration
def test_recs_vectors_and_weights_are_cached_for_the_next_fresh_redis(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    from threefold.apps.recs.config import RecsConfig
    from threefold.streaming.connections import RedisSettings

    redis = RedisSettings(url=redis_url)
    first_encoder, second_encoder = CountingEncoder(), CountingEncoder()
    first_run = RecsConfig(redis_prefix=f"{redis_prefix}one:")
    tuned, first = prepare_recs_cached(first_run, redis, first_encoder, tmp_path)
    assert first is not None and first.built and first_encoder.texts > 0
    assert tuned is not None  # tuned on the seed log, and cached with the vectors

    second_run = RecsConfig(redis_prefix=f"{redis_prefix}two:")  # a fresh Redis namespace
    tuned_again, second = prepare_recs_cached(second_run, redis, second_encoder, tmp_path)
    assert second is not None and (second.built, second.path) == (False, first.path)
    assert second_encoder.texts == 0  # nothing embedded: the vectors came from the cache
    assert tuned_again is None  # the tuned weights are in Redis for the app to load
