"""The OpenAPI description of V2 inference requests, as the model being served takes them.

JSON Schema cannot tie ``data``'s length to ``shape``, so the documented request is one row:
``shape`` is ``[1, features]`` and ``data`` exactly that many finite numbers. Requests of more
rows (up to ``MLOPS_MAX_BATCH_ROWS``) are served too (docs/service.md); the schema stays a true
subset, so every request it calls valid is answered 200 (schemathesis checks both ways).
"""

from __future__ import annotations

from typing import Any

from machinery.modelcard import ModelCard
from service.v2_codec import DATATYPES, output_specs

_FLOAT32 = {"type": "number", "minimum": -3.4e38, "maximum": 3.4e38}
_TENSOR_PARAMETERS = {"type": "object", "not": {"required": ["binary_data_size"]}}


def v2_request_schema(card: ModelCard | None) -> dict[str, Any]:
    tensor: dict[str, Any] = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string"},
            "data": {"type": "array"},
            # An object if present; binary_data_size only with Triton's binary extension,
            # which the JSON form described here is not (the codec refuses either otherwise).
            "parameters": _TENSOR_PARAMETERS,
        },
    }
    outputs: dict[str, Any] = {"type": "string"}
    if card is not None:
        features = card.n_features
        datatype = DATATYPES[card.input.dtype][0]
        numbers = _FLOAT32 if datatype != "INT64" else {"type": "integer"}
        tensor["properties"] = {
            "name": {"type": "string", "enum": [card.input.name]},
            # An enum of the whole value: generators that know no ``prefixItems`` still get it.
            "shape": {"type": "array", "items": {"type": "integer"}, "enum": [[1, features]]},
            "datatype": {"type": "string", "enum": [datatype]},
            "data": {
                "type": "array",
                "items": numbers,
                "minItems": features,
                "maxItems": features,
            },
            "parameters": _TENSOR_PARAMETERS,
        }
        tensor["examples"] = [
            {"name": card.input.name, "shape": [1, features], "datatype": datatype,
             "data": [0] * features}  # fmt: skip
        ]
        outputs = {"type": "string", "enum": [name for name, _, _ in output_specs(card)]}
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {
                "type": "object",
                "properties": {"binary_data_output": {"type": "boolean"}},
            },
            "inputs": {"type": "array", "items": tensor, "minItems": 1, "maxItems": 1},
            "outputs": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": outputs,
                        "parameters": {
                            "type": "object",
                            "properties": {"binary_data": {"type": "boolean"}},
                        },
                    },
                },
            },
        },
    }
