"""Property-based HTTP fuzzing driven by an app's OpenAPI document (hypothesis strategies).

`requests_for(document, method, path, auth_headers)` draws requests for one operation: path and
query parameters from their schemas or hostile text, bodies that follow the schema, break one
field, are arbitrary JSON, hostile bytes (deep nesting, NaN, lone surrogates, invalid UTF-8) or
the wrong content type. `check_response` asserts what a client may rely on: never a 5xx, every
4xx a JSON `{error, message}`, and every status one the document lists for the operation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

HOSTILE_BODIES = (
    b"",
    b"{",
    b"null",
    b"[]",
    b'"text"',
    b"[" * 2000 + b"]" * 2000,
    b'{"a":' * 500 + b"1" + b"}" * 500,
    b'{"message": "\\ud800", "text": "\\udfff", "id": "\\ud800"}',
    b'{"x": NaN, "timestamp": Infinity}',
    b'{"timestamp": 1e999, "k": -1e999}',
    b"\xff\xfe\x00garbage",
    b'{"message": "caf\xe9"}',
    b'{"a": 1, "a": 2}',
)
HOSTILE_TEXT = (
    "",
    " ",
    "..",
    ".",
    "a/b",
    "%2F",
    "\x00",
    "\u202e",
    "0" * 300,
    "1e999",
    "NaN",
    "-1",
    "٣",  # a non-ASCII digit
    "<script>",
    "0123456789abcdef0123456789abcdef",  # shaped like a session id
)
SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@dataclass(frozen=True)
class FuzzRequest:
    """One request to send with a Flask test client."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    data: bytes | None = None

    def send(self, client: Any) -> Any:
        """The response, not buffered (server-sent event streams are never read)."""
        return client.open(
            self.url, method=self.method, headers=self.headers, data=self.data, buffered=False
        )


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values following a JSON schema (the subset the threefold documents use)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "oneOf" in schema:
        return st.one_of([from_schema(s) for s in schema["oneOf"]])
    kind = schema.get("type")
    if kind == "string":
        return _text(schema.get("minLength", 0))
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(
            schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {})), max_size=4)
    if kind == "object" and "properties" in schema:
        required = set(schema.get("required", ()))
        props = schema["properties"]
        return st.fixed_dictionaries(
            {k: from_schema(v) for k, v in props.items() if k in required},
            optional={k: from_schema(v) for k, v in props.items() if k not in required},
        )
    return any_json()


def _text(min_length: int = 0) -> st.SearchStrategy[str]:
    """Text of at least `min_length` characters, often one of HOSTILE_TEXT."""
    return st.one_of(SAFE_TEXT, st.sampled_from(HOSTILE_TEXT)).filter(
        lambda text: len(text) >= min_length
    )


def any_json() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        SAFE_TEXT,
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(SAFE_TEXT, inner, max_size=3)
        ),
        max_leaves=10,
    )


def _broken(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A schema-following object with one field replaced by arbitrary JSON."""
    props = list(schema.get("properties", {}))
    if not props:
        return any_json()
    return st.tuples(from_schema(schema), st.sampled_from(props), any_json()).map(
        lambda t: {**t[0], t[1]: t[2]} if isinstance(t[0], dict) else t[0]
    )


def _body(schema: dict[str, Any] | None) -> st.SearchStrategy[tuple[bytes, str] | None]:
    if schema is None:
        return st.none()
    as_json = "application/json"
    encoded = st.one_of(from_schema(schema), _broken(schema), any_json()).map(
        lambda value: (json.dumps(value).encode(), as_json)
    )
    hostile = st.one_of(st.sampled_from(HOSTILE_BODIES), st.binary(max_size=64)).map(
        lambda raw: (raw, as_json)
    )
    wrong_type = st.sampled_from([(b"message=hi", "application/x-www-form-urlencoded")])
    return st.one_of(encoded, encoded, hostile, wrong_type)


def _param_value(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    def as_text(value: Any) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    return st.one_of(from_schema(schema).map(as_text), _text(schema.get("minLength", 0)))


def requests_for(
    document: dict[str, Any],
    method: str,
    path: str,
    auth_headers: tuple[dict[str, str], ...] = (),
) -> st.SearchStrategy[FuzzRequest]:
    """Requests for one operation of `document`; `auth_headers` are valid and invalid tokens."""
    op = document["paths"][path][method.lower()]
    params = op.get("parameters", [])
    path_params = {p["name"]: _param_value(p["schema"]) for p in params if p["in"] == "path"}
    query = {p["name"]: _param_value(p["schema"]) for p in params if p["in"] == "query"}
    required = {p["name"] for p in params if p["in"] == "query" and p.get("required")}
    body_schema = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    headers = st.sampled_from(
        ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic x"}, *auth_headers)
    )

    @st.composite
    def draw(draw_: st.DrawFn) -> FuzzRequest:
        url = path
        for name, values in path_params.items():
            url = url.replace("{" + name + "}", quote(draw_(values), safe=""))
        chosen = {k: draw_(v) for k, v in query.items() if k in required or draw_(st.booleans())}
        if chosen:
            url += "?" + urlencode(chosen)
        request_headers = dict(draw_(headers))
        body = draw_(_body(body_schema.get("schema")))
        data = None
        if body is not None:
            data, request_headers["Content-Type"] = body
        return FuzzRequest(method.upper(), url, request_headers, data)

    return draw()


def check_response(
    document: dict[str, Any], method: str, path: str, request: FuzzRequest, response: Any
) -> None:
    """No 5xx; a 4xx is JSON {error, message}; the status is documented for the operation."""
    status = response.status_code
    where = f"{request.method} {request.url} ({request.headers}, body {request.data!r:.200})"
    assert status < 500, f"{status} for {where}: {response.get_data(as_text=True)[:300]}"
    if status >= 400:
        body = json.loads(response.get_data())
        assert {"error", "message"} <= set(body), f"{status} body {body} for {where}"
    documented = document["paths"][path][method.lower()]["responses"]
    assert str(status) in documented, f"undocumented {status} for {where}"


FAST_EXAMPLES = 12  # per operation in the default run
SLOW_EXAMPLES = 300  # per operation in the `slow` run


def fuzz_operation(
    client: Any,
    document: dict[str, Any],
    method: str,
    path: str,
    *,
    auth_headers: tuple[dict[str, str], ...] = (),
    max_examples: int = FAST_EXAMPLES,
    seed: int | None = None,
) -> None:
    """Send `max_examples` drawn requests to one operation and check every response.

    `seed` fixes the draws (the same requests on every run), for a test that must find a bug.
    """

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(request=requests_for(document, method, path, auth_headers))
    def run(request: FuzzRequest) -> None:
        response = request.send(client)
        try:
            check_response(document, method, path, request, response)
        finally:
            response.close()

    (run if seed is None else hypothesis_seed(seed)(run))()
