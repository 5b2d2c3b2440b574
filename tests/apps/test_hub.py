"""The demo hub: entry page, store page wiring (widget + recs API), links as clients see them."""

from __future__ import annotations

import pytest

from threefold.apps.hub import HubConfig, as_seen_by_client, create_app
from threefold.core.errors import ConfigError


@pytest.fixture
def client():
    config = HubConfig(
        qa_url="http://127.0.0.1:9001/",
        recs_url="http://127.0.0.1:9002",
        dashboard_url="http://127.0.0.1:9003",
    )
    return create_app(config).test_client()


def test_store_page_embeds_the_chat_widget_and_calls_the_recs_api(client) -> None:
    page = client.get("/store", headers={"Host": "127.0.0.1:9000"}).text
    assert (
        '<script src="http://127.0.0.1:9001/static/widget.js" data-api="http://127.0.0.1:9001"'
        in page
    )
    assert 'data-recs-api="http://127.0.0.1:9002"' in page
    assert client.get("/static/hub_store.js").status_code == 200


def test_entry_page_links_all_three_apps(client) -> None:
    page = client.get("/", headers={"Host": "127.0.0.1:9000"}).text
    for link in ('href="/store"', "http://127.0.0.1:9001/demo", "http://127.0.0.1:9002/store"):
        assert link in page
    assert 'href="http://127.0.0.1:9003/"' in page


def test_links_use_the_host_the_browser_reached_the_hub_by(client) -> None:
    links = client.get("/api/links", headers={"Host": "demo.lan:9000"}).json
    assert links == {
        "qa": "http://demo.lan:9001",
        "recs": "http://demo.lan:9002",
        "dashboard": "http://demo.lan:9003",
    }


def test_only_loopback_addresses_are_rewritten() -> None:
    assert as_seen_by_client("https://bot.example.com", "demo.lan") == "https://bot.example.com"
    assert as_seen_by_client("http://0.0.0.0:8000/x", "::1") == "http://[::1]:8000/x"


def test_config_rejects_urls_that_are_not_http() -> None:
    with pytest.raises(ConfigError, match=r"qa_url must be an http\(s\) base URL.*'bot:8000'"):
        HubConfig(qa_url="bot:8000")


def test_config_from_environment() -> None:
    config = HubConfig.from_env(environ={"THREEFOLD_HUB_RECS_URL": "http://recs.internal:80/"})
    assert config.recs_url == "http://recs.internal:80"
    assert config.qa_url == HubConfig().qa_url


def test_unknown_path_is_a_json_404(client) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json["error"] == "not_found"
