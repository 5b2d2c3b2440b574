from __future__ import annotations

import pytest

from threefold.core.untrusted_json import UntrustedJsonError, check_untrusted, loads_untrusted


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[" * 5000 + "]" * 5000, "nested"),
        ('{"a": ' + "[" * 40 + "]" * 40 + "}", "nested deeper than 32 levels"),
        ('{"text": "\\ud800"}', r"not valid Unicode at \$\.text"),
        ('{"x": NaN}', "NaN is not a number JSON allows"),
        ('{"x": 1e999}', "1e999 is out of range"),
        ("{oops", "is not valid JSON"),
        ('{"user_id": "a", "user_id": "admin"}', "the key 'user_id' appears twice"),
        ('{"n": ' + "9" * 5000 + "}", "a number has 5000 digits, more than the 4300 allowed"),
    ],
)
def test_hostile_documents_are_refused_with_the_reason(raw: str, message: str) -> None:
    with pytest.raises(UntrustedJsonError, match=message):
        loads_untrusted(raw)


def test_the_path_of_a_bad_string_is_kept() -> None:
    with pytest.raises(UntrustedJsonError) as caught:
        check_untrusted({"items": [{"title": "ok"}, {"title": "\ud800"}]})
    assert caught.value.path == "$.items[1].title"


def test_ordinary_documents_pass() -> None:
    assert loads_untrusted('{"a": [1, 2.5, "x", null, {"b": true}]}') == {
        "a": [1, 2.5, "x", None, {"b": True}]
    }
