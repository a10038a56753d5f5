"""Request validation messages: which field, what it must be, what came."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from mgte_hf.serving.schemas import ApiError, EmbedRequest, RerankRequest, describe_validation_errors


def message(model, body) -> str:
    raw = body if isinstance(body, str) else json.dumps(body)
    with pytest.raises(ValidationError) as err:
        model.model_validate_json(raw)
    return describe_validation_errors(err.value.errors(), None if isinstance(body, str) else body)


def test_messages_name_the_field_the_expectation_and_the_value():
    assert message(EmbedRequest, {"inputs": None}).startswith("`inputs` must be a string or a list of strings")
    assert message(EmbedRequest, {"inputs": ["a", {"x": 1}]}).endswith("got a list whose item 1 is an object.")
    assert message(EmbedRequest, {"inputs": "a", "truncate": 1}) == ("`truncate` must be true or false; got the "
                                                                      "number 1.")
    assert message(RerankRequest, {"query": "q"}) == "`texts` is required."
    assert message(RerankRequest, {"query": "q", "texts": "a" * 50}).endswith('got the string "' + "a" * 40 + '"….')
    assert message(EmbedRequest, '{"inputs": ') .startswith("the request body is not valid JSON")
    assert message(EmbedRequest, [1]) == ("the request body must be a JSON object; got a list whose item 0 is the "
                                          "number 1.")


def test_strict_types_and_ignored_extra_fields():
    request = EmbedRequest.model_validate_json('{"inputs": [[0, 5, 2], "text"], "model": "ignored"}')
    assert request.inputs == [[0, 5, 2], "text"] and request.normalize is True
    with pytest.raises(ValidationError):
        EmbedRequest.model_validate_json('{"inputs": "a", "normalize": "true"}')


def test_api_error_shapes():
    error = ApiError("Model is overloaded", "Overloaded")
    assert error.status == 429 and error.body() == {"error": "Model is overloaded", "error_type": "Overloaded"}
    assert error.openai_body() == {"message": "Model is overloaded", "code": 429, "error_type": "Overloaded"}
