"""Open Inference Protocol (KServe "V2") tensors: an inference request in, a response out.

The JSON form and Triton's binary tensor extension (``binary_tensor_data``): a request whose
``Inference-Header-Content-Length`` header is N carries N bytes of JSON followed by the raw
bytes of every input whose ``parameters.binary_data_size`` is set, in order; a response does
the same for outputs asked for with ``binary_data`` (per output) or ``binary_data_output``
(for all). BYTES elements travel as a little-endian uint32 length and the bytes (Triton's
``serialize_byte_tensor``). Written here rather than taken from ``tritonclient`` or
``kserve``: both are clients (their server-side codecs belong to servers whose dependencies
would pin this service's), and the format is these few lines; the tests check it against
``tritonclient.http`` and KServe's REST client themselves.

Everything a client sends is checked before any model runs: one error, as the protocol's
``{"error": "..."}`` with a 4xx, names what was wrong and what the model takes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from machinery.modelcard import ModelCard, ValueOutput
from service import jsonio

# Card dtype -> (V2 datatype, little-endian numpy dtype of its binary form).
DATATYPES: dict[str, tuple[str, str]] = {
    "float32": ("FP32", "<f4"),
    "float64": ("FP64", "<f8"),
    "int64": ("INT64", "<i8"),
}
HEADER_LENGTH = "inference-header-content-length"


class V2Error(Exception):
    """A request the protocol refuses: ``status`` and the message of ``{"error": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class InferRequest:
    rows: npt.NDArray[Any]  # rows × features, the card's dtype
    request_id: str | None
    outputs: dict[str, bool]  # output name -> binary


def output_specs(card: ModelCard) -> list[tuple[str, str, list[int]]]:
    """What the model answers, as (name, datatype, shape with -1 for the batch): a classifier's
    label and probabilities, or a regressor's values."""
    output = card.output
    if isinstance(output, ValueOutput):
        return [(output.name, "FP32", [-1, *(dim or 1 for dim in output.shape[1:])])]
    return [
        (output.label, "BYTES", [-1]),
        (output.probabilities, "FP32", [-1, len(card.labels)]),
    ]


def input_shape(card: ModelCard) -> list[int]:
    """The card's input shape with the batch axis as V2's -1."""
    return [-1 if dim is None else dim for dim in card.input.shape]


def parse_request(
    body: bytes, header_length: str | None, card: ModelCard, max_rows: int
) -> InferRequest:
    document, binary = _split(body, header_length)
    if not isinstance(document, dict):
        raise V2Error(400, "the request must be a JSON object with 'inputs'")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise V2Error(400, f"expected 'inputs' with exactly one tensor, {card.input.name!r}")
    rows = _input_rows(inputs[0], binary, card, max_rows)
    request_id = document.get("id")
    if "id" in document and not isinstance(request_id, str):
        raise V2Error(400, "'id' must be a string")
    return InferRequest(rows, request_id, _requested_outputs(document, card))


def _split(body: bytes, header_length: str | None) -> tuple[Any, bytes]:
    if header_length is None:
        json_part, binary = body, b""
    else:
        try:
            length = int(header_length)
        except ValueError:
            raise V2Error(400, "Inference-Header-Content-Length is not a number") from None
        if not 0 < length <= len(body):
            raise V2Error(
                400,
                f"Inference-Header-Content-Length {length} is outside the body's"
                f" {len(body)} bytes",
            )
        json_part, binary = body[:length], body[length:]
    try:
        return jsonio.loads(json_part), binary
    except (ValueError, UnicodeDecodeError):
        raise V2Error(400, "the request's JSON does not parse") from None
    except RecursionError:
        raise V2Error(400, "the request's JSON is nested too deeply") from None


def _input_rows(
    tensor: dict[str, Any], binary: bytes, card: ModelCard, max_rows: int
) -> npt.NDArray[Any]:
    spec = card.input
    datatype, wire = DATATYPES[spec.dtype]
    features = card.n_features

    def takes() -> str:  # built only for a refusal
        return f"this model takes {spec.name!r}, {datatype}, shape {input_shape(card)}"

    if tensor.get("name") != spec.name:
        raise V2Error(400, f"unknown input {tensor.get('name')!r}; {takes()}")
    if tensor.get("datatype") != datatype:
        raise V2Error(400, f"input datatype {tensor.get('datatype')!r}; {takes()}")
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(type(d) is int and d >= 0 for d in shape)
        or shape[1:] not in (input_shape(card)[1:], [features])
    ):
        raise V2Error(400, f"input shape {shape!r}; {takes()}")
    count = shape[0]
    if not 1 <= count <= max_rows:
        raise V2Error(400, f"{count} rows; this model takes 1 to {max_rows} a request")
    parameters = tensor.get("parameters", {})
    if not isinstance(parameters, dict):
        raise V2Error(400, "input 'parameters' must be an object")
    size = parameters.get("binary_data_size")
    if size is not None:
        expected = count * features * np.dtype(wire).itemsize
        if type(size) is not int or size != expected or len(binary) != size:
            raise V2Error(
                400,
                f"binary_data_size {size!r} with {len(binary)} binary bytes after the"
                f" header; {count} rows of {datatype} need {expected}",
            )
        rows = np.frombuffer(binary, dtype=wire).reshape(count, features)
    else:
        if binary:
            raise V2Error(400, "binary bytes after the header, but no input has binary_data_size")
        rows = _json_rows(tensor.get("data"), count, features, wire, takes)
    if rows.dtype.kind == "f" and not np.isfinite(rows).all():
        raise V2Error(400, "input values must be finite numbers (no NaN or Inf)")
    return rows.astype(wire[1:], copy=False)


def _json_rows(
    data: Any, count: int, features: int, wire: str, takes: Callable[[], str]
) -> npt.NDArray[Any]:
    if not isinstance(data, list):
        raise V2Error(400, f"input 'data' must be a list of numbers; {takes()}")
    # The spec allows the data flat (row-major) or nested as the shape; numbers only.
    flat = data if not data or not isinstance(data[0], list) else _flatten(data)
    if len(flat) != count * features:
        raise V2Error(400, f"{len(flat)} values for shape [{count}, {features}]; {takes()}")
    integer = wire[1] == "i"
    for value in flat:
        # bool is an int subclass; strings would silently convert in numpy.
        kind = type(value)
        if not (kind is int or (kind is float and not integer)):
            raise V2Error(400, f"input values must be numbers, got {kind.__name__}; {takes()}")
    try:
        with np.errstate(over="ignore"):
            return np.asarray(flat, dtype=wire).reshape(count, features)
    except OverflowError:
        raise V2Error(400, f"a value is out of range for {takes()}") from None


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for row in data:
        if not isinstance(row, list):
            raise V2Error(400, "input 'data' mixes lists and numbers")
        flat.extend(row)
    if flat and isinstance(flat[0], list):
        raise V2Error(400, "input 'data' is nested deeper than rows × features")
    return flat


def _requested_outputs(document: dict[str, Any], card: ModelCard) -> dict[str, bool]:
    names = [name for name, _, _ in output_specs(card)]
    parameters = document.get("parameters", {})
    if not isinstance(parameters, dict):
        raise V2Error(400, "'parameters' must be an object")
    default_binary = parameters.get("binary_data_output", False)
    if not isinstance(default_binary, bool):
        raise V2Error(400, "'binary_data_output' must be true or false")
    if "outputs" not in document:
        return {name: default_binary for name in names}
    asked = document["outputs"]
    if not isinstance(asked, list) or not asked:
        raise V2Error(400, f"'outputs' must list some of {list(names)}")
    chosen: dict[str, bool] = {}
    for output in asked:
        name = output.get("name") if isinstance(output, dict) else None
        if name not in names:
            raise V2Error(400, f"unknown output {name!r}; this model has {list(names)}")
        own = output.get("parameters", {})
        if not isinstance(own, dict):
            raise V2Error(400, f"output {name!r}: 'parameters' must be an object")
        binary = own.get("binary_data", default_binary)
        if not isinstance(binary, bool):
            raise V2Error(400, f"output {name!r}: 'binary_data' must be true or false")
        chosen[name] = binary
    return chosen


def encode_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: list[tuple[str, str, list[int], npt.NDArray[Any] | list[str], bool]],
) -> tuple[bytes, int | None]:
    """The response body and, when some output is binary, the JSON header's length.

    ``outputs``: (name, datatype, shape, values, binary) each.
    """
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, datatype, shape, values, binary in outputs:
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if binary:
            blob = _bytes_blob(values) if datatype == "BYTES" else _numeric_blob(values, datatype)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = values if isinstance(values, list) else values.ravel().tolist()
        tensors.append(tensor)
    document: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        document["id"] = request_id
    document["outputs"] = tensors
    header = jsonio.dumps(document)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def _numeric_blob(values: npt.NDArray[Any] | list[str], datatype: str) -> bytes:
    wire = {v2: wire for v2, wire in DATATYPES.values()}[datatype]
    return np.ascontiguousarray(values, dtype=wire).tobytes()


def _bytes_blob(values: npt.NDArray[Any] | list[str]) -> bytes:
    parts: list[bytes] = []
    for value in values:
        data = str(value).encode()
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)
