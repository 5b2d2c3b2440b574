"""`threefold demo`: the whole suite on one machine with one command (`--check`: headless test).

The only place the demo reads the environment: REDIS_URL, KAFKA_BOOTSTRAP_SERVERS and
THREEFOLD_HOME become `DemoOptions`; the stages take those explicitly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from threefold.apps.demo.config import DemoOptions

HOME_ENV = "THREEFOLD_HOME"


@click.command("demo")
@click.option("--check", is_flag=True, help="Run headless, exercise each app once, then stop.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port-base",
    type=click.IntRange(1, 65532),
    default=None,
    help="Ports PORT..PORT+3 for hub, QA, recs, dashboard [default: free ports].",
)
@click.option(
    "--cache-dir",
    "--models-dir",
    "cache_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where trained models, the FAQ bot and the catalog vectors are cached "
    "[default: $THREEFOLD_HOME/demo or ~/.cache/threefold/demo].",
)
@click.option(
    "--retrain", is_flag=True, help="Train the models, build the bot and embed the catalog again."
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bars for training and scoring [default: only when stderr is a terminal].",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(1),
    default=180.0,
    show_default=True,
    help="Seconds to wait for the replayed stream's alert.",
)
def demo(
    check: bool,
    host: str,
    port_base: int | None,
    cache_dir: Path | None,
    retrain: bool,
    progress: bool | None,
    timeout_s: float,
) -> None:
    """Run the whole suite: FAQ bot, recommendations, news alerts and a hub page linking them.

    Uses REDIS_URL / KAFKA_BOOTSTRAP_SERVERS when set, else starts embedded ones. Trained
    models, the FAQ bot and the catalog vectors are cached, so a second run skips training and
    embedding. Ctrl-C stops everything.
    """
    from threefold.apps.demo.models import default_cache_dir
    from threefold.apps.demo.stages import run_demo
    from threefold.core.settings import load_settings
    from threefold.streaming.connections import KafkaSettings, RedisSettings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Library chatter is not the demo's news: no transformers load reports (a fresh classifier
    # head is "MISSING" by design) and no per-file "Loading weights" / "Writing" bars.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    options = DemoOptions(
        check=check,
        host=host,
        port_base=port_base,
        cache_dir=cache_dir or default_cache_dir(os.environ.get(HOME_ENV)),
        retrain=retrain,
        timeout_s=timeout_s,
        progress=sys.stderr.isatty() if progress is None else progress,
        redis=load_settings(RedisSettings, "REDIS_"),
        kafka=load_settings(KafkaSettings, "KAFKA_"),
    )
    sys.exit(run_demo(options))
