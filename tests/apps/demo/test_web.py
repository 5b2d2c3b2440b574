"""The demo hub app: entry page, /store to the recs storefront, links, JSON errors."""

from __future__ import annotations

import pytest

from threefold.apps.demo.config import HubConfig
from threefold.apps.demo.stack import ConsumerHealth
from threefold.apps.demo.stages import DemoState
from threefold.apps.demo.web.app import create_app


@pytest.fixture
def client():
    config = HubConfig(
        qa_url="http://127.0.0.1:9001/",
        recs_url="http://127.0.0.1:9002",
        dashboard_url="http://127.0.0.1:9003",
    )
    return create_app(config).test_client()


def test_store_redirects_to_the_one_storefront_as_this_client_reaches_it(client) -> None:
    response = client.get("/store", headers={"Host": "demo.lan:9000"})
    assert response.status_code == 302
    assert response.headers["Location"] == "http://demo.lan:9002/store"
    assert client.get("/static/hub.css").status_code == 200
    assert client.get("/static/favicon.svg").status_code == 200


def test_entry_page_links_all_three_apps(client) -> None:
    page = client.get("/", headers={"Host": "127.0.0.1:9000"}).text
    for link in (
        "http://127.0.0.1:9001/demo",
        "http://127.0.0.1:9001/agent",
        'href="http://127.0.0.1:9002/store"',
    ):
        assert link in page
    assert 'href="http://127.0.0.1:9003/"' in page


def test_links_use_the_host_the_browser_reached_the_hub_by(client) -> None:
    links = client.get("/api/links", headers={"Host": "demo.lan:9000"}).json
    assert links == {
        "qa": "http://demo.lan:9001",
        "recs": "http://demo.lan:9002",
        "dashboard": "http://demo.lan:9003",
    }


def test_unknown_path_is_a_json_404(client) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json["error"] == "not_found"


def test_healthz_alone_is_ok(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_healthz_is_503_with_the_reason_while_the_demo_consumer_is_not_running() -> None:
    state = DemoState(run_id="test")  # the hub answers before stage 4 starts the consumer
    client = create_app(HubConfig(), consumer_health=state.consumer_health).test_client()
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json == {
        "status": "degraded",
        "alerts_consumer": "starting",
        "restarts": 0,
        "reason": "the alerts consumer has not started yet",
    }
    running = create_app(HubConfig(), consumer_health=lambda: ConsumerHealth("running", 2))
    assert running.test_client().get("/healthz").json == {
        "status": "ok",
        "alerts_consumer": "running",
        "restarts": 2,
    }
