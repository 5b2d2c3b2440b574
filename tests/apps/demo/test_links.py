"""Links as a browser sees them: loopback hosts replaced by the host it used."""

from __future__ import annotations

from threefold.apps.demo.links import as_seen_by_client


def test_only_loopback_addresses_are_rewritten() -> None:
    assert as_seen_by_client("https://bot.example.com", "demo.lan") == "https://bot.example.com"
    assert as_seen_by_client("http://0.0.0.0:8000/x", "::1") == "http://[::1]:8000/x"
