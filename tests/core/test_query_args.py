"""Query-string numbers: ASCII digits, finite, in range; anything else is a JSON 400."""

from __future__ import annotations

import pytest
from flask import Flask, jsonify
from prometheus_client import CollectorRegistry

from threefold.core.query_args import float_arg, int_arg
from threefold.core.web import setup_web_app


@pytest.fixture(scope="module")
def client():
    app = Flask(__name__)
    setup_web_app(app, name="argtest", registry=CollectorRegistry())

    @app.get("/api/args")
    def args():
        return jsonify(
            k=int_arg("k", 10, low=1, high=100), w=float_arg("w", 0.5, low=0.0, high=1.0)
        )

    return app.test_client()


@pytest.mark.parametrize(
    "query",
    [
        "k=%D9%A1%D9%A2",  # Arabic-Indic digits: int() takes them
        "k=1_0",
        "k=%205",
        "k=" + "9" * 5000,  # beyond Python's int() digit limit
        "k=0",
        "k=101",
        "w=nan",
        "w=inf",
        "w=1e999",
        "w=-0.1",
        "w=0x1",
    ],
)
def test_bad_numbers_are_json_400s(client, query: str) -> None:
    response = client.get(f"/api/args?{query}")
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "bad_request" and body["field"] == query.split("=")[0]


def test_good_numbers_pass(client) -> None:
    assert client.get("/api/args?k=%2B7&w=.25").get_json() == {"k": 7, "w": 0.25}
    assert client.get("/api/args?w=1e-1").get_json()["w"] == 0.1
    assert client.get("/api/args").get_json() == {"k": 10, "w": 0.5}
