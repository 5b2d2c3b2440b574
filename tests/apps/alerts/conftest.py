"""Helpers shared by the alerts tests: scored items built by hand, scenario texts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from threefold.apps.alerts.messages import NewsItem
from threefold.apps.alerts.scoring import ScoredItem

if TYPE_CHECKING:
    from threefold.apps.alerts.config import AlertsConfig
    from threefold.apps.alerts.processor import AlertsProcessor
    from threefold.apps.alerts.state.memory import InMemoryStateStore

T0 = 1_714_550_400  # 2024-05-01T08:00:00Z, a multiple of 300


class Clock:
    """A wall clock the test moves by hand (`clock.now += 60`)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Partition:
    """What the processor reads of a kafka-python TopicPartition."""

    def __init__(self, number: int, topic: str = "news") -> None:
        self.topic, self.partition = topic, number


def memory_processor(config: AlertsConfig) -> tuple[AlertsProcessor, InMemoryStateStore, Clock]:
    """(processor, its in-memory store, its hand-moved clock) for `config`, assigned partitions
    news:0 and news:1, with a publisher that never produces (no Kafka)."""
    from threefold.apps.alerts.processor import AlertPipeline, AlertPublisher, AlertsProcessor
    from threefold.apps.alerts.state.memory import InMemoryStateStore

    store, clock = InMemoryStateStore(), Clock()
    publisher = AlertPublisher(store, producer=None, topic="alerts")
    processor = AlertsProcessor(
        config, None, AlertPipeline.from_config(config, store), publisher, clock=clock
    )
    processor.on_partitions_assigned([Partition(0), Partition(1)])
    return processor, store, clock


def make_scored(
    message_id: str,
    event_time: float,
    sentiment: str,
    *,
    topic: str = "legal",
    entities: Sequence[str] = ("QNTV",),
    text: str | None = None,
) -> ScoredItem:
    """A ScoredItem as the Scorer would produce it, with the sentiment chosen by the test."""
    item = NewsItem(
        id=message_id,
        text=text or f"headline {message_id} ({sentiment})",
        event_time=event_time,
        entities=list(entities),
    )
    return ScoredItem(
        item=item,
        topic=topic,
        sentiment=sentiment,
        topic_probabilities={topic: 1.0},
        sentiment_probabilities={sentiment: 1.0},
        entities=list(entities),
        models={"topic": "t1", "sentiment": "s1"},
    )


def calm_then_surge(
    calm_windows: int = 4, per_window: int = 20, surge: int = 16, window_s: int = 300
) -> list[ScoredItem]:
    """`calm_windows` windows with 10% negative, then one window with `surge` negatives of 20."""
    items = []
    for w in range(calm_windows):
        for i in range(per_window):
            sentiment = "negative" if i % 10 == 0 else "neutral"
            t = T0 + w * window_s + i * (window_s / per_window)
            items.append(make_scored(f"calm-{w}-{i}", t, sentiment))
    start = T0 + calm_windows * window_s
    for i in range(per_window):
        sentiment = "negative" if i < surge else "positive"
        items.append(make_scored(f"surge-{i}", start + i * 10, sentiment))
    return items


# -- real (tiny) classifiers, fine-tuned once per session on the shipped sample -----------------

import csv  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from threefold.apps.alerts.config import DATA_DIR  # noqa: E402

SAMPLE = DATA_DIR / "headlines_sample.csv"
TRAIN_STEPS = {"sentiment": 40, "topic": 30}


def sample_rows() -> list[dict[str, str]]:
    with SAMPLE.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """{"topic": dir, "sentiment": dir}: MiniLM fine-tuned for a few steps on the sample.

    $ALERTS_TEST_MODELS (a folder with topic/ and sentiment/ saved by `threefold alerts train`)
    skips the fine-tuning, to iterate faster on a busy machine.
    """
    from threefold.core.classifier_training import train_classifier
    from threefold.core.training_config import TrainingConfig

    reuse = os.environ.get("ALERTS_TEST_MODELS")
    if reuse:
        return {name: Path(reuse) / name for name in TRAIN_STEPS}

    rows = sample_rows()
    root = tmp_path_factory.mktemp("alerts-models")
    out = {}
    for column, steps in TRAIN_STEPS.items():
        config = TrainingConfig(
            max_steps=steps,
            learning_rate=2e-4,
            batch_size=16,
            max_length=32,
            eval_fraction=0.0,
            warmup_ratio=0.0,
            output_progress=False,
        )
        model = train_classifier(
            [r["text"] for r in rows], [r[column] for r in rows], config=config
        )
        model.save(root / column)
        out[column] = root / column
    return out


@pytest.fixture(scope="session")
def multitask_dir(tmp_path_factory):
    """A multi-task (topic + sentiment) model fine-tuned for a few steps on the sample."""
    from threefold.apps.alerts.config import DATA_DIR
    from threefold.core.multitask import train_multitask
    from threefold.core.tables import read_records
    from threefold.core.training_config import TrainingConfig

    rows = [r.values for r in read_records(DATA_DIR / "headlines_sample.csv")]
    config = TrainingConfig(
        max_steps=30, learning_rate=2e-4, batch_size=16, max_length=32, warmup_ratio=0.0
    )
    model = train_multitask(
        [r["text"] for r in rows],
        {"topic": [r["topic"] for r in rows], "sentiment": [r["sentiment"] for r in rows]},
        config=config,
    )
    out = tmp_path_factory.mktemp("alerts-multitask") / "model"
    model.save(out)
    return out


@pytest.fixture(scope="session")
def scorer(model_dirs):
    from threefold.apps.alerts.config import DEFAULT_COMPANIES
    from threefold.apps.alerts.scoring import Scorer

    return Scorer.load(model_dirs["topic"], model_dirs["sentiment"], DEFAULT_COMPANIES)


@pytest.fixture(scope="session")
def texts_by_prediction(scorer) -> dict[str, list[str]]:
    """Sample headlines split by what the tiny sentiment model predicts for them.

    Tests that need a surge feed texts the model calls negative, so they do not depend on how
    well a few training steps went; a model that calls everything one thing fails here.
    """
    from threefold.apps.alerts.messages import NewsItem

    rows = sample_rows()
    items = [NewsItem(id=str(i), text=r["text"], event_time=0.0) for i, r in enumerate(rows)]
    scored = scorer.score(items)
    negative = [s.item.text for s in scored if s.sentiment == "negative"]
    calm = [s.item.text for s in scored if s.sentiment != "negative"]
    if len(negative) < 15 or len(calm) < 40:
        pytest.fail(
            f"the tiny sentiment model predicts {len(negative)} negative and {len(calm)} other "
            "sample headlines; it needs more training steps (TRAIN_STEPS)"
        )
    return {"negative": negative, "calm": calm}


def surge_stream(
    texts: dict[str, list[str]],
    *,
    calm_windows: int = 3,
    per_window: int = 10,
    surge: int = 12,
    window_s: int = 300,
) -> list[dict]:
    """Input messages: calm windows (some about Quantive), a Quantive surge, one closing item."""
    calm, negative = texts["calm"], texts["negative"]
    messages = []
    for w in range(calm_windows):
        for i in range(per_window):
            about_quantive = i % 3 == 0
            messages.append(
                {
                    "id": f"calm-{w}-{i}",
                    "text": calm[(w * per_window + i) % len(calm)],
                    "published_at": T0 + w * window_s + i * (window_s // per_window),
                    "entities": ["QNTV"] if about_quantive else [],
                }
            )
    start = T0 + calm_windows * window_s
    for i in range(surge):
        messages.append(
            {
                "id": f"surge-{i}",
                "text": negative[i % len(negative)],
                "published_at": start + 5 + i * 10,
                "entities": ["QNTV"],
            }
        )
    messages.append(
        {"id": "closing", "text": calm[0], "published_at": start + 2 * window_s + 1, "source": "x"}
    )
    return messages


@pytest.fixture
def alerts_config(kafka_bootstrap, redis_prefix, unique_name, model_dirs):
    """AlertsConfig on the embedded services with this test's own topics, group and prefix (the
    input topic is created by each test, with the partitions it needs)."""
    from support.alerts_setup import alerts_test_config

    return alerts_test_config(
        kafka_bootstrap,
        redis_prefix,
        unique_name,
        min_volume=8,
        cooldown_s=3600,
        topic_model_dir=str(model_dirs["topic"]),
        sentiment_model_dir=str(model_dirs["sentiment"]),
        max_batch=16,
        max_wait_ms=100,
    )


def produce(bootstrap: str, topic: str, values: list[dict | bytes]) -> None:
    from threefold.streaming.producer import JsonProducer

    producer = JsonProducer(bootstrap)
    try:
        for value in values:
            if isinstance(value, bytes):
                producer.send_bytes(topic, value)
            else:
                producer.send(topic, value, key=str(value.get("id", "")) or None)
        producer.flush()
    finally:
        producer.close()


def values_of(records) -> list[dict]:
    import json

    return [json.loads(r.value) for r in records]


@pytest.fixture
def redis_settings(redis_url):
    """RedisSettings of the embedded test Redis."""
    from threefold.streaming.connections import RedisSettings

    return RedisSettings(url=redis_url)


@pytest.fixture
def redis_store(redis_settings, redis_prefix):
    """A RedisStateStore under this test's own key prefix."""
    from threefold.apps.alerts.config import AlertsConfig
    from threefold.apps.alerts.resources import open_state_store

    return open_state_store(AlertsConfig(redis_prefix=redis_prefix), redis_settings)


# -- the dashboard on the embedded Redis (a module may override `config` or `resources`) --------


@pytest.fixture
def config(redis_prefix):
    """The dashboard's AlertsConfig under this test's own key prefix, windows without grace."""
    from threefold.apps.alerts.config import AlertsConfig

    return AlertsConfig(redis_prefix=redis_prefix, grace_s=0)


@pytest.fixture
def resources(config, redis_settings):
    from threefold.apps.alerts.resources import open_resources

    return open_resources(config, redis_settings)


@pytest.fixture
def client(config, resources):
    """A Flask test client of the dashboard."""
    from threefold.apps.alerts.web import create_app

    return create_app(config, resources).test_client()


# -- a real webhook receiver (a local http.server thread) ---------------------------------------

import json  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402


class Receiver:
    """A local HTTP webhook receiver: answers `fail_status` to the first `fail_first` POSTs
    (`fail_first=None`: to every POST until `recover()`), with `fail_body` (and, for a 3xx, a
    Location), then 204, each after `delay_s`; records (Idempotency-Key, body, status) per
    POST. A GET (a followed redirect) is answered 200 and counted in `gets`."""

    def __init__(
        self,
        *,
        fail_first: int | None = 0,
        fail_status: int = 503,
        fail_body: bytes = b"",
        delay_s: float = 0.0,
    ) -> None:
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.requests: list[tuple[str | None, dict, int]] = []
        self.gets = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                time.sleep(delay_s)
                status = receiver._record(self.headers.get("Idempotency-Key"), body)
                answer = fail_body if status >= 300 else b""
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/alerts/moved")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self) -> None:
                with receiver._lock:
                    receiver.gets += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"

    def _record(self, key: str | None, body: dict) -> int:
        with self._changed:
            failing = self.fail_first is None or len(self.requests) < self.fail_first
            status = self.fail_status if failing else 204
            self.requests.append((key, body, status))
            self._changed.notify_all()
            return status

    def recover(self) -> None:
        """Answer 204 from now on."""
        with self._lock:
            self.fail_first = 0

    def delivered(self) -> list[str]:
        """alert_id of every request answered 2xx, in arrival order."""
        with self._lock:
            return [body["alert_id"] for _, body, status in self.requests if status < 300]

    def failed(self) -> int:
        with self._lock:
            return sum(status >= 300 for _, _, status in self.requests)

    def wait_for(self, delivered: int = 0, *, failed: int = 0, timeout_s: float = 20.0) -> None:
        """Block until at least `delivered` 2xx and `failed` failed requests were answered."""

        def done() -> bool:
            ok = sum(status < 300 for _, _, status in self.requests)
            return ok >= delivered and len(self.requests) - ok >= failed

        with self._changed:
            if not self._changed.wait_for(done, timeout=timeout_s):
                raise AssertionError(
                    f"expected {delivered} delivered and {failed} failed webhook requests within "
                    f"{timeout_s} s; the receiver answered {self.requests!r}"
                )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver():
    """`receiver(fail_first=3)` -> a running `Receiver`; all are shut down after the test."""
    made: list[Receiver] = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for each in made:
        each.close()
