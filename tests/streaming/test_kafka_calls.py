"""Kafka clients whose bootstrap fails (nothing listens at the address) leave nothing open:
kafka-python 3 leaves a consumer's or an admin client's IO thread running, and a producer's
selector (an epoll and a socket pair) open until the garbage collector runs, one more set per
failed connect.

(kafka-python also leaves each refused connection's socket to the garbage collector, whether
the client is closed or not: these tests count selectors and threads, not those sockets.)"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaTimeoutError
from support.servers import free_port

from threefold.core.errors import ServiceError
from threefold.streaming.kafka_calls import new_client
from threefold.streaming.producer import JsonProducer

FAILED_CONNECTS = 5
PROC_FDS = Path("/proc/self/fd")
pytestmark = pytest.mark.skipif(
    not PROC_FDS.is_dir(), reason="counts open files through /proc/self/fd (Linux)"
)


def open_selectors() -> set[str]:
    """This process's open epoll descriptors: one per kafka-python client not closed."""
    found = set()
    for fd in os.listdir(PROC_FDS):
        with contextlib.suppress(OSError):  # closed meanwhile (os.listdir's own among them)
            target = os.readlink(PROC_FDS / fd)
            if target == "anon_inode:[eventpoll]":
                found.add(fd)
    return found


def kafka_threads(client_id: str) -> list[threading.Thread]:
    """kafka-python's IO threads of the clients called `client_id`."""
    return [t for t in threading.enumerate() if t.name == f"kafka-io-{client_id}"]


@contextmanager
def without_garbage_collection() -> Iterator[None]:
    """What a failed client leaves open stays open: the collector would close some of it at a
    moment of its own choosing."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def left_open_by(connect: Callable[[], object], client_id: str) -> list[object]:
    """IO threads and selectors that `FAILED_CONNECTS` failed `connect()` calls leave behind."""
    with without_garbage_collection():
        before = open_selectors()
        for _ in range(FAILED_CONNECTS):
            with pytest.raises((KafkaTimeoutError, ServiceError)):
                connect()
        deadline = time.monotonic() + 5  # a closed client's IO thread ends at once
        while kafka_threads(client_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        return [*kafka_threads(client_id), *sorted(open_selectors() - before)]


def nowhere(client_id: str) -> dict[str, object]:
    """Client settings for an address where nothing listens, given up on after 0.2 s."""
    return {
        "bootstrap_servers": f"127.0.0.1:{free_port()}",
        "bootstrap_timeout_ms": 200,
        "client_id": client_id,
    }


@pytest.mark.parametrize("kind", [KafkaConsumer, KafkaProducer, KafkaAdminClient])
def test_clients_made_through_new_client_leave_nothing_open_when_they_cannot_connect(kind):
    client_id = f"failed-{kind.__name__}-{uuid.uuid4().hex[:8]}"
    config = nowhere(client_id)
    assert left_open_by(lambda: new_client(kind, config), client_id) == []


def test_a_json_producer_that_cannot_connect_leaves_nothing_open():
    client_id = f"failed-json-producer-{uuid.uuid4().hex[:8]}"
    config = nowhere(client_id)
    producer = JsonProducer(str(config.pop("bootstrap_servers")), **config)

    assert left_open_by(lambda: producer.send("news", {"id": "1"}), client_id) == []
