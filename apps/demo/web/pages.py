"""The hub's pages: the entry page, /store (to the recs storefront) and the links as seen here."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, jsonify, redirect, render_template, request
from flask.typing import ResponseReturnValue

from threefold.apps.demo.config import HubConfig
from threefold.apps.demo.links import client_links

CONFIG_KEY = "threefold_hub"
CONSUMER_HEALTH_KEY = "threefold_hub_consumer_health"

pages = Blueprint("hub_pages", __name__)


def _links() -> dict[str, str]:
    config: HubConfig = current_app.extensions[CONFIG_KEY]
    return client_links(config, urlsplit(f"//{request.host}").hostname)


@pages.get("/")
def index() -> ResponseReturnValue:
    """The entry page: what each app does and where it is."""
    return render_template("index.html", links=_links())


@pages.get("/store")
def store() -> ResponseReturnValue:
    """The one storefront (recommendations + chat widget) is the recs app's /store."""
    return redirect(f"{_links()['recs']}/store")


@pages.get("/api/links")
def links() -> ResponseReturnValue:
    """The apps' base URLs as this client should use them."""
    return jsonify(_links())


@pages.get("/healthz")
def healthz() -> ResponseReturnValue:
    """200 "ok"; with the demo's alerts consumer attached, 503 "degraded" and the reason while
    it does not run (starting, its Redis or Kafka down, restarting after an error, stopped)."""
    consumer_health = current_app.extensions[CONSUMER_HEALTH_KEY]
    if consumer_health is None:
        return jsonify({"status": "ok"})
    health = consumer_health()
    body = {
        "status": "ok" if health.ok else "degraded",
        "alerts_consumer": health.state,
        "restarts": health.restarts,
    }
    if not health.ok:
        body["reason"] = health.reason
    return jsonify(body), 200 if health.ok else 503
