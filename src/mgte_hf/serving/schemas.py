"""Request bodies of the server's routes, in text-embeddings-inference's (TEI's) shapes, and its JSON errors.

Bodies are validated strictly (`true` is a boolean, `"true"` is not; `1` is not a string); unknown fields are
ignored, as TEI does, so that clients sending extra keys (`model`, `user`, ...) still work.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


# One input is a text or a list of token ids (special tokens included); TEI's `Input` is one input or a list of them.
Inputs = str | list[int] | list[str | list[int]]
TruncationDirection = Literal["right", "left", "Right", "Left"]

# HTTP status of each TEI error type (TEI's `ErrorType`), and the one this server adds for bodies it cannot read.
STATUS = {"Empty": 400, "Validation": 413, "Tokenizer": 422, "Backend": 424, "Overloaded": 429, "Unhealthy": 503}
BAD_REQUEST_STATUS = 422


class ApiError(Exception):
    """An error answered as TEI's `{"error": message, "error_type": type}` with the type's HTTP status."""

    def __init__(self, message: str, error_type: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.status = STATUS[error_type] if status is None else status

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "error_type": self.error_type}

    def openai_body(self) -> dict[str, Any]:
        """TEI's error shape on the OpenAI-compatible route."""
        return {"message": self.message, "code": self.status, "error_type": self.error_type}


def bad_request(message: str) -> ApiError:
    """422: a body that parses but asks for something invalid (a wrong type, an unknown option, a bad value)."""
    return ApiError(message, "Validation", BAD_REQUEST_STATUS)


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class EmbedRequest(_Body):
    inputs: Inputs
    normalize: bool = True
    truncate: bool | None = None
    truncation_direction: TruncationDirection = "right"
    prompt_name: str | None = None
    dimensions: int | None = None


class EmbedSparseRequest(_Body):
    inputs: Inputs
    truncate: bool | None = None
    truncation_direction: TruncationDirection = "right"
    prompt_name: str | None = None


class RerankRequest(_Body):
    query: str
    texts: list[str]
    truncate: bool | None = None
    truncation_direction: TruncationDirection = "right"
    raw_scores: bool = False
    return_text: bool = False


class SimilarityInput(_Body):
    source_sentence: str
    sentences: list[str]


class SimilarityParameters(_Body):
    truncate: bool | None = None
    truncation_direction: TruncationDirection = "right"
    prompt_name: str | None = None


class SimilarityRequest(_Body):
    inputs: SimilarityInput
    parameters: SimilarityParameters | None = None


class TokenizeRequest(_Body):
    inputs: str | list[str]
    add_special_tokens: bool = True
    prompt_name: str | None = None


class DecodeRequest(_Body):
    ids: list[int] | list[list[int]]
    skip_special_tokens: bool = True


class OpenAIEmbeddingsRequest(_Body):
    input: Inputs
    model: str | None = None
    user: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


# What each field must be, for the error message of a body that does not validate.
EXPECTED = {
    "inputs": "a string or a list of strings (a list of token ids, or a list of such lists, also works)",
    "input": "a string or a list of strings (a list of token ids, or a list of such lists, also works)",
    "texts": "a list of strings",
    "ids": "a list of token ids or a list of such lists",
    "sentences": "a list of strings",
    "query": "a string",
    "source_sentence": "a string",
    "model": "a string",
    "user": "a string",
    "prompt_name": "null (this model has no prompts)",
    "dimensions": "an integer",
    "encoding_format": '"float" or "base64"',
    "truncation_direction": '"right"',
    "parameters": "an object",
}


def describe_validation_errors(errors: Sequence[Mapping[str, Any]], body: Any) -> str:
    """One message for pydantic's errors on a request body: which field is wrong, what it must be, what came."""
    if not errors:
        return "the request body is not valid."
    first = errors[0]
    if first["type"] == "json_invalid":
        return f"the request body is not valid JSON ({first.get('ctx', {}).get('error', first['msg'])})."
    loc = [part for part in first["loc"] if part != "body"]
    if not loc or not isinstance(body, Mapping):
        return f"the request body must be a JSON object; got {_json_type(body)}."
    path = [str(part) for part in loc if isinstance(part, str) and part in _FIELDS]
    field = path[-1] if path else str(loc[0])
    if first["type"] == "missing":
        return f"`{'.'.join(path) or field}` is required."
    value = _lookup(body, path) if path else None
    expected = EXPECTED.get(field)
    if expected is None:  # booleans
        return f"`{'.'.join(path) or field}` must be true or false; got {_json_type(value)}."
    return f"`{'.'.join(path) or field}` must be {expected}; got {_json_type(value)}."


_FIELDS = {name for model in (EmbedRequest, EmbedSparseRequest, RerankRequest, SimilarityInput, SimilarityRequest,
                              SimilarityParameters, TokenizeRequest, DecodeRequest, OpenAIEmbeddingsRequest)
           for name in model.model_fields}


def _lookup(body: Mapping, path: list[str]) -> Any:
    value: Any = body
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _json_type(value: Any) -> str:
    """A short description of a JSON value for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {json.dumps(value[:40])}" + ("…" if len(value) > 40 else "")
    if isinstance(value, list):
        bad = next(((i, v) for i, v in enumerate(value) if not isinstance(v, (str, list))), None)
        if bad is not None:
            return f"a list whose item {bad[0]} is {_json_type(bad[1])}"
        return f"a list of {len(value)} item{'' if len(value) == 1 else 's'}"
    return "an object"


__all__ = [
    "BAD_REQUEST_STATUS",
    "EXPECTED",
    "STATUS",
    "ApiError",
    "DecodeRequest",
    "EmbedRequest",
    "EmbedSparseRequest",
    "Inputs",
    "OpenAIEmbeddingsRequest",
    "RerankRequest",
    "SimilarityInput",
    "SimilarityParameters",
    "SimilarityRequest",
    "TokenizeRequest",
    "bad_request",
    "describe_validation_errors",
]
