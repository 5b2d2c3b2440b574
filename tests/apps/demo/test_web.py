"""The demo hub app: entry page, /store to the recs storefront, links, JSON errors."""

from __future__ import annotations

import pytest

from threefold.apps.demo.config import HubConfig
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
