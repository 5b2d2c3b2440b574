"""ConsumerRunner stopping during a Kafka outage: while its consumer waits for a broker that is
not there (kafka-python's bootstrap, 30 s by default), a stop or SIGTERM ends it at once."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from support.servers import free_port

from threefold.streaming.runner import BatchResult, ConsumerRunner, Message

BOOTSTRAP_S = 30  # kafka-python's bootstrap_timeout_ms default: how long a consumer waits


class Nothing:
    def process(self, batch: list[Message]) -> BatchResult:
        return BatchResult()


def kafka_threads(client_id: str) -> list[threading.Thread]:
    """kafka-python's IO threads of the clients called `client_id`."""
    return [t for t in threading.enumerate() if t.name == f"kafka-io-{client_id}"]


def wait_until(condition, what: str, timeout_s: float = BOOTSTRAP_S / 2) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.05)


def runner_without_broker(
    client_id: str, consumer_overrides: dict[str, object] | None = None, **kwargs: object
) -> ConsumerRunner:
    """A runner whose bootstrap address has nothing listening."""
    return ConsumerRunner(
        kafka=f"127.0.0.1:{free_port()}",
        topics=["news"],
        group_id="g",
        processor=Nothing(),
        dead_letter_topic="news.dlq",
        consumer_overrides={"client_id": client_id, **(consumer_overrides or {})},
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_stop_while_the_consumer_waits_for_the_broker_ends_the_runner_at_once() -> None:
    client_id = f"stop-{uuid.uuid4().hex[:8]}"
    runner = runner_without_broker(client_id)
    returned: list[object] = []
    thread = threading.Thread(target=lambda: returned.append(runner.run()), daemon=True)
    thread.start()
    wait_until(lambda: kafka_threads(client_id), "the consumer starts bootstrapping")

    runner.stop()
    thread.join(BOOTSTRAP_S / 3)

    assert not thread.is_alive(), "the runner waited for the bootstrap to time out"
    assert returned == [runner.stats] and runner.stats.batches == 0


def test_connects_failing_during_an_outage_leave_no_kafka_threads_behind(caplog) -> None:
    """kafka-python leaves the IO thread of a consumer whose bootstrap failed running: one
    more per reconnect, for as long as the broker is away."""
    client_id = f"leak-{uuid.uuid4().hex[:8]}"
    runner = runner_without_broker(
        client_id, {"bootstrap_timeout_ms": 200}, max_reconnect_backoff_ms=50
    )
    caplog.set_level(logging.WARNING, logger="threefold.streaming.runner")

    def failed_connects() -> int:
        return sum("Kafka unavailable" in r.getMessage() for r in caplog.records)

    runner.run(stop_when=lambda: failed_connects() >= 5, stop_after=BOOTSTRAP_S)

    assert runner.degraded and failed_connects() >= 5
    wait_until(lambda: not kafka_threads(client_id), "the failed consumers' threads end", 5)


RUNNER_SCRIPT = textwrap.dedent(
    """
    import json, logging, sys
    from threefold.streaming.runner import BatchResult, ConsumerRunner

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    class Nothing:
        def process(self, batch):
            return BatchResult()

    runner = ConsumerRunner(kafka=sys.argv[1], topics=["news"], group_id="g",
                            processor=Nothing(), dead_letter_topic="news.dlq")
    runner.install_signal_handlers()
    stats = runner.run()
    print(json.dumps({"stopped": stats.batches}), flush=True)
    """
)


def test_sigterm_while_the_broker_is_away_ends_the_consumer_process_at_once(
    tmp_path: Path,
) -> None:
    script = tmp_path / "runner.py"
    script.write_text(RUNNER_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), f"127.0.0.1:{free_port()}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stderr:  # kafka-python's log: the consumer is bootstrapping
            if "Bootstrap connection" in line:
                break
        else:
            pytest.fail("the runner's consumer never tried to connect")
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=BOOTSTRAP_S / 3)
    finally:
        proc.kill()
    assert proc.returncode == 0 and json.loads(stdout.splitlines()[-1]) == {"stopped": 0}
