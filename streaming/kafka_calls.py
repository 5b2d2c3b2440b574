"""kafka-python calls that may wait longer than their caller can: bounded, stoppable, cleaned up.

kafka-python 3 waits for some answers without a limit of its own (metadata after a broker went
away) or with one too long for a consumer thread (a 30 s bootstrap), and leaves what a client
opened (an IO thread, a selector) open when its bootstrap fails. The runner, the topic probe and
the producer build their clients here, and wait for them with `core.bounded_call.call_within`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kafka import KafkaConsumer
from kafka.net.compat import KafkaNetClient

C = TypeVar("C")


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


def close_unwanted_consumer(consumer: KafkaConsumer | None) -> None:
    """Close a consumer its caller stopped waiting for (a `late` for `call_within`): one that
    connected too late, or one whose call was given up on."""
    if consumer is not None:
        with contextlib.suppress(Exception):
            consumer.close(autocommit=False)
