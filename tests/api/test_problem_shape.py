"""Whatever DRF's error detail looks like (nested fields, lists, any text), the problem
document's ``detail`` is one line ending in a full stop, and ``errors`` names every field."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from rest_framework import exceptions

from models_registry.api.problems import api_exception_problem, field_errors

names = st.text(min_size=1, max_size=12)
messages = st.text(max_size=80)
details: st.SearchStrategy[Any] = st.recursive(
    st.lists(messages, min_size=1, max_size=3) | messages,
    lambda inner: (
        st.dictionaries(names, inner, min_size=1, max_size=4)
        | st.lists(inner, min_size=1, max_size=3)
    ),
    max_leaves=12,
)


@given(detail=details)
def test_any_validation_detail_becomes_one_sentence_and_a_field_map(detail: Any) -> None:
    response = api_exception_problem(exceptions.ValidationError(detail), None)
    body = response.data
    assert body["status"] == 400 and body["title"] == "Invalid request"
    assert "\n" not in body["detail"] and body["detail"].endswith((".", "?", "!"))
    flat = field_errors(exceptions.ValidationError(detail).detail)
    assert flat and all(isinstance(m, str) for ms in flat.values() for m in ms)
    if isinstance(detail, dict):
        assert body["errors"] == flat


@given(text=st.text(max_size=200), status=st.sampled_from([403, 404, 409, 422]))
def test_any_refusal_text_is_one_line(text: str, status: int) -> None:
    exc = exceptions.APIException(text)
    exc.status_code = status
    body = api_exception_problem(exc, None).data
    assert body["status"] == status and "\n" not in body["detail"] and body["detail"].strip()
