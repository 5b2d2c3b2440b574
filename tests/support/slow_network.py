"""A network that is slow before any byte of HTTP, for tests of an attempt's deadline.

`FakeDNS` resolves one host name to chosen addresses after a DNS server's delay (or never,
until released); `syn_dropping_address()` is a local address whose connects hang the way an
unreachable host's do (its listener's accept queue is full, so Linux drops every SYN);
`silent_tls_receiver()` accepts TCP and never answers the ClientHello. `socket_timeout(...)`
makes urllib open its sockets with a timeout of the test's choosing, so a test can tell an
attempt's own deadline from the socket timeout.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

HOLD_S = 20.0  # how long the slow network holds out at most: far past any deadline under test


class FakeDNS:
    """`socket.getaddrinfo` that answers `host` with `addresses` once `release()` is called
    or `hold_s` has passed; every other name resolves as usual. Install with
    `monkeypatch.setattr(socket, "getaddrinfo", dns)`."""

    def __init__(
        self, host: str, addresses: list[tuple[str, int]], *, hold_s: float = HOLD_S
    ) -> None:
        self.host = host
        self.addresses = addresses
        self.hold_s = hold_s
        self.asked = threading.Event()  # someone is resolving `host`
        self.answered = threading.Event()  # its answer came (the release or hold_s)
        self._release = threading.Event()
        self._real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list:
        if host != self.host:
            return self._real(host, port, *args, **kwargs)
        self.asked.set()
        self._release.wait(self.hold_s)
        self.answered.set()
        return [
            entry
            for address, each_port in self.addresses
            for entry in self._real(address, each_port, *args, **kwargs)
        ]

    def release(self) -> None:
        self._release.set()


@contextlib.contextmanager
def syn_dropping_address() -> Iterator[tuple[str, int]]:
    """(host, port) on loopback where a connect hangs like one to a host that is down."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    filler = socket.create_connection(address, timeout=5)  # fills the accept queue
    try:
        yield address
    finally:
        filler.close()
        listener.close()


@contextlib.contextmanager
def silent_tls_receiver() -> Iterator[tuple[str, threading.Event]]:
    """(https URL, `held`): a server that accepts, reads the ClientHello and answers nothing
    for up to HOLD_S; `held` is set while it holds a connection and cleared when it lets go."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = threading.Event()
    done = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)  # the ClientHello
                held.set()
                done.wait(HOLD_S)
                held.clear()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}/hook", held
    finally:
        done.set()
        listener.close()


def socket_timeout(monkeypatch: pytest.MonkeyPatch, seconds: float | None) -> None:
    """urllib opens every socket with `seconds` as its timeout (None: no timeout), whatever
    the caller passed."""
    opener_open = urllib.request.OpenerDirector.open

    def open_with(self: Any, fullurl: Any, data: Any = None, timeout: Any = None) -> Any:
        return opener_open(self, fullurl, data, seconds)

    monkeypatch.setattr(urllib.request.OpenerDirector, "open", open_with)
