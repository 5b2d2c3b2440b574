"""The demo's entry page: links to the three apps, and a store page combining two of them.

The store page embeds the FAQ chat widget (one script tag served by the QA app) next to
recommendations fetched from the recs API, both cross-origin: the QA and recs apps must list
the hub's origin in their allowed CORS origins (`threefold demo` configures that).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from flask import Blueprint, Flask, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from prometheus_client import CollectorRegistry

from threefold.core.errors import ConfigError

ENV_PREFIX = "THREEFOLD_HUB_"
HERE = Path(__file__).resolve().parent
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "0.0.0.0", "::1", "::"})


@dataclass
class HubConfig:
    """Base URLs of the three apps (defaults: the `threefold serve ...` default ports)."""

    qa_url: str = "http://127.0.0.1:8001"
    recs_url: str = "http://127.0.0.1:8002"
    dashboard_url: str = "http://127.0.0.1:8003"

    def __post_init__(self) -> None:
        for item in fields(self):
            value = str(getattr(self, item.name)).rstrip("/")
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(
                    f"{item.name} must be an http(s) base URL such as http://127.0.0.1:8000, "
                    f"found {value!r}"
                )
            setattr(self, item.name, value)

    @classmethod
    def from_env(
        cls, prefix: str = ENV_PREFIX, environ: Mapping[str, str] | None = None
    ) -> HubConfig:
        """Read THREEFOLD_HUB_QA_URL, _RECS_URL and _DASHBOARD_URL (unset keeps the defaults)."""
        env = os.environ if environ is None else environ
        values = {
            f.name: env[prefix + f.name.upper()]
            for f in fields(cls)
            if env.get(prefix + f.name.upper())
        }
        return cls(**values)


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


pages = Blueprint("hub_pages", __name__)


def _links() -> dict[str, str]:
    config: HubConfig = current_app.extensions["threefold_hub"]
    client_host = urlsplit(f"//{request.host}").hostname
    return {
        "qa": as_seen_by_client(config.qa_url, client_host),
        "recs": as_seen_by_client(config.recs_url, client_host),
        "dashboard": as_seen_by_client(config.dashboard_url, client_host),
    }


@pages.get("/")
def index() -> ResponseReturnValue:
    """The entry page: what each app does and where it is."""
    return render_template("hub_index.html", links=_links())


@pages.get("/store")
def store() -> ResponseReturnValue:
    """A store page with the chat widget and live recommendations."""
    return render_template("hub_store.html", links=_links())


@pages.get("/api/links")
def links() -> ResponseReturnValue:
    """The apps' base URLs as this client should use them."""
    return jsonify(_links())


@pages.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify({"status": "ok"})


def create_app(config: HubConfig | None = None) -> Flask:
    """The hub app; `config` None reads THREEFOLD_HUB_* from the environment."""
    from threefold.core.web import setup_web_app

    config = config or HubConfig.from_env()
    app = Flask(
        __name__,
        static_folder=str(HERE / "static"),
        static_url_path="/static",
        template_folder=str(HERE / "templates"),
    )
    app.extensions["threefold_hub"] = config
    setup_web_app(app, name="hub", registry=CollectorRegistry())
    app.register_blueprint(pages)
    return app
