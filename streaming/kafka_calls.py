"""kafka-python calls that may wait longer than their caller can: bounded, stoppable, cleaned up.

kafka-python 3 waits for some answers without a limit of its own (metadata after a broker went
away) or with one too long for a consumer thread (a 30 s bootstrap), and leaves what a client
opened (an IO thread, a selector) open when its bootstrap fails. The runner, the topic probe and
the producer go through here.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kafka import KafkaConsumer
from kafka.net.compat import KafkaNetClient

T = TypeVar("T")
C = TypeVar("C")

STOP_CHECK_S = 0.1  # how often a wait in `call_within` looks whether it was asked to stop


def new_client(kind: Callable[..., C], config: Mapping[str, Any]) -> C:
    """`kind(**config)` for a kafka-python client class (KafkaConsumer, KafkaProducer,
    KafkaAdminClient), closing the network clients it made when the constructor fails.

    kafka-python 3 gives up on them there: a consumer's or an admin client's IO thread, started
    before the bootstrap, keeps running when the bootstrap fails (KafkaTimeoutError), and a
    producer's selector (an epoll and a socket pair) stays open until the garbage collector
    finds it; one more of each for every client that could not connect, for as long as the
    broker stays away."""
    clients: list[Any] = []
    make_client = config.get("kafka_client") or KafkaNetClient

    def client(**kwargs: Any) -> Any:
        clients.append(make_client(**kwargs))
        return clients[-1]

    try:
        return kind(**{**config, "kafka_client": client})
    except BaseException:
        for each in clients:
            with contextlib.suppress(Exception):
                each.close()
        raise


def new_consumer(config: Mapping[str, Any]) -> KafkaConsumer:
    """`KafkaConsumer(**config)` through `new_client`."""
    return new_client(KafkaConsumer, config)


def call_within(
    call: Callable[[], T],
    *,
    timeout_s: float | None = None,
    stop: threading.Event | None = None,
    late: Callable[[T | None], None] | None = None,
    name: str = "threefold-kafka-call",
) -> T:
    """`call()` on a daemon thread, waited for `timeout_s` at most and only until `stop` is
    set: for kafka-python calls that wait without a limit of their own, or with one too long
    to wait out. Returns what `call` returns, raises what it raises, or TimeoutError when the
    wait ended first; `late(its result, None when it raised)` then runs on the helper thread
    once `call` is done (to close what it opened)."""
    if stop is not None and stop.is_set():
        raise TimeoutError("stopped before the call")
    lock = threading.Lock()
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the waiting caller
            outcome["error"] = exc
        with lock:
            done.set()
            abandoned = outcome.get("abandoned", False)
        if abandoned and late is not None:
            late(outcome.get("value"))

    threading.Thread(target=run, name=name, daemon=True).start()
    ends = None if timeout_s is None else time.monotonic() + timeout_s
    while not done.is_set() and not (stop is not None and stop.is_set()):
        left = None if ends is None else ends - time.monotonic()
        if left is not None and left <= 0:
            break
        slices = [s for s in (left, STOP_CHECK_S if stop is not None else None) if s is not None]
        done.wait(min(slices, default=None))
    with lock:
        finished = done.is_set()
        outcome["abandoned"] = not finished
    if not finished:
        raise TimeoutError(
            "stopped before the call ended"
            if stop is not None and stop.is_set()
            else f"no answer within {timeout_s:g} s"
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def close_unwanted_consumer(consumer: KafkaConsumer | None) -> None:
    """Close a consumer that connected after its caller stopped waiting for it (a `late`
    for `call_within`)."""
    if consumer is not None:
        with contextlib.suppress(Exception):
            consumer.close(autocommit=False)
