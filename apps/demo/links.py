"""The apps' URLs as a browser sees them: loopback hosts replaced by the host it used."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from threefold.apps.demo.config import HubConfig

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "0.0.0.0", "::1", "::"})


def as_seen_by_client(url: str, client_host: str | None) -> str:
    """`url` with a loopback/wildcard host replaced by the host the browser used for the hub.

    The apps listen next to the hub; a browser that reached the hub as `demo.lan:8100` must
    reach the QA app as `demo.lan:<port>`, not `127.0.0.1:<port>`.
    """
    parts = urlsplit(url)
    if not client_host or parts.hostname not in LOOPBACK_HOSTS:
        return url
    host = (
        client_host if ":" not in client_host or client_host.startswith("[") else f"[{client_host}]"
    )
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def client_links(config: HubConfig, client_host: str | None) -> dict[str, str]:
    """{"qa", "recs", "dashboard"}: each app's base URL for a browser that used `client_host`."""
    return {
        "qa": as_seen_by_client(config.qa_url, client_host),
        "recs": as_seen_by_client(config.recs_url, client_host),
        "dashboard": as_seen_by_client(config.dashboard_url, client_host),
    }
