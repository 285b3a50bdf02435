"""``POST /predict``: images and JSON batches, and every kind of bad input (never a 500)."""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.service.conftest import N_FEATURES, PREDICT, TAG_A, AppFactory, Trained

IMAGE = {**PREDICT, "Content-Type": "image/png"}


def upload(
    client: TestClient, data: bytes, name: str = "d.png", ctype: str = "image/png"
) -> httpx.Response:
    return client.post("/predict", files={"file": (name, data, ctype)}, headers=PREDICT)


def test_multipart_upload_predicts_like_the_training_rows(
    client: TestClient, trained: Trained
) -> None:
    rows = trained.test_x
    expected = client.post("/predict", json={"instances": rows.tolist()}, headers=PREDICT).json()
    for index, want in enumerate(expected["predictions"]):
        response = upload(client, trained.image(index))
        assert response.status_code == 200
        body = response.json()
        assert body["model_tag"] == TAG_A
        # Same picture → same grid after the card's preprocessing → same answer as the JSON
        # path on the row itself.
        assert body["label"] == want["label"]
        assert body["probabilities"] == pytest.approx(want["probabilities"], abs=2e-6)
        assert set(body["probabilities"]) == set(trained.labels)
        assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)


def test_accuracy_through_uploads_is_like_training(client: TestClient, trained: Trained) -> None:
    labels = trained.test_y
    right = sum(
        upload(client, trained.image(i)).json()["label"] == str(label)
        for i, label in enumerate(labels)
    )
    assert right >= 0.85 * len(labels)


def test_raw_image_body_skips_multipart(client: TestClient, trained: Trained) -> None:
    response = client.post("/predict", content=trained.image(1), headers=IMAGE)
    assert response.status_code == 200
    assert response.json()["model_tag"] == TAG_A


@pytest.mark.parametrize("fmt", ["JPEG", "GIF", "BMP", "WEBP", "TIFF"])
def test_other_formats(client: TestClient, trained: Trained, fmt: str) -> None:
    response = upload(client, trained.image(2, size=64, fmt=fmt), f"d.{fmt.lower()}")
    assert response.status_code == 200, response.text


def test_rgba_with_transparent_background(client: TestClient, trained: Trained) -> None:
    # Ink drawn on a transparent canvas (what many drawing apps export) reads as ink on white.
    gray = Image.open(io.BytesIO(trained.image(3)))
    rgba = Image.new("RGBA", gray.size, (0, 0, 0, 0))
    rgba.putalpha(Image.eval(gray, lambda v: 255 - v))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    flat = upload(client, trained.image(3)).json()["label"]
    assert upload(client, buffer.getvalue()).json()["label"] == flat


def test_json_batch(client: TestClient, trained: Trained) -> None:
    response = client.post(
        "/predict", json={"instances": trained.test_x[:5].tolist()}, headers=PREDICT
    )
    assert response.status_code == 200
    body = response.json()
    assert body["model_tag"] == TAG_A
    assert len(body["predictions"]) == 5


def test_big_json_batch_runs_off_the_event_loop(client: TestClient, trained: Trained) -> None:
    rows = trained.rows(1000)
    response = client.post("/predict", json={"instances": rows}, headers=PREDICT)
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 1000


# --- bad input ------------------------------------------------------------------------------


def test_non_image_upload_is_415(client: TestClient) -> None:
    assert upload(client, b"hello", "notes.txt", "text/plain").status_code == 415


def test_unsupported_body_type_is_415(client: TestClient) -> None:
    headers = {**PREDICT, "Content-Type": "text/plain"}
    assert client.post("/predict", content=b"hello", headers=headers).status_code == 415
    assert client.post("/predict", content=b"x", headers=PREDICT).status_code == 415


@pytest.mark.parametrize(
    "data",
    [
        b"not an image at all",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,  # PNG signature, garbage after
        b"",
    ],
)
def test_garbage_labelled_as_image_is_422(client: TestClient, data: bytes) -> None:
    response = upload(client, data)
    assert response.status_code == 422
    assert "image" in response.json()["detail"]
    assert " at 0x" not in response.text  # no Python object reprs in what the user reads
    assert client.post("/predict", content=data, headers=IMAGE).status_code == 422


def test_truncated_image_is_422(client: TestClient, trained: Trained) -> None:
    whole = trained.image(0, size=128)
    response = upload(client, whole[: len(whole) // 2])
    assert response.status_code == 422
    assert "image" in response.json()["detail"]


def test_truncated_jpeg_is_422(client: TestClient, trained: Trained) -> None:
    whole = trained.image(0, size=256, fmt="JPEG")
    assert upload(client, whole[: len(whole) // 3], "d.jpg", "image/jpeg").status_code == 422


def test_over_size_limit_is_413(make_app: AppFactory) -> None:
    with TestClient(make_app(max_upload_bytes=10_000)) as client:
        big = b"\x00" * 20_000
        assert upload(client, big).status_code == 413
        assert client.post("/predict", content=big, headers=IMAGE).status_code == 413


def test_over_size_limit_without_content_length_is_413(make_app: AppFactory) -> None:
    """A chunked body is cut off while streaming, not buffered whole first."""
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            sent.append(1)
            yield b"\x00" * 4096

    with TestClient(make_app(max_upload_bytes=10_000)) as client:
        response = client.post("/predict", content=chunks(), headers=IMAGE)
        assert response.status_code == 413


def test_image_bomb_is_refused_before_decoding(client: TestClient) -> None:
    # 8000×8000 = 64 Mpx of one colour: ~60 KB compressed, 64 MB decoded.
    image = Image.new("L", (8_000, 8_000), 255)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=9)
    response = upload(client, buffer.getvalue())
    assert response.status_code == 413
    assert "pixels" in response.json()["detail"]


def test_forged_png_header_bomb_is_refused(client: TestClient) -> None:
    # A hand-made IHDR claiming 100000×100000: the size check needs only the header.
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = (100_000).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    assert upload(client, png).status_code == 413


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [[1.0, 2.0]]},
        {"instances": [[0.0] * (N_FEATURES + 1)]},
        {"instances": []},
        {"instances": [0.0] * N_FEATURES},
        {"instances": [["1"] * N_FEATURES]},
        {"instances": [[True] * N_FEATURES]},
        {"instances": [[None] * N_FEATURES]},
        {"rows": [[0.0] * N_FEATURES]},
        [[0.0] * N_FEATURES],
        {"instances": "no"},
        {"instances": [[1e39] * N_FEATURES]},
    ],
)
def test_json_wrong_shape_is_422_naming_the_shape(client: TestClient, body: object) -> None:
    response = client.post("/predict", json=body, headers=PREDICT)
    assert response.status_code == 422
    assert f'{{"instances": [[{N_FEATURES} numbers], ...]}}' in response.json()["detail"]


def test_json_nan_is_422(client: TestClient) -> None:
    body = '{"instances": [[NaN' + ", 0" * (N_FEATURES - 1) + "]]}"
    headers = {**PREDICT, "Content-Type": "application/json"}
    assert client.post("/predict", content=body, headers=headers).status_code == 422


def test_invalid_json_is_422(client: TestClient) -> None:
    headers = {**PREDICT, "Content-Type": "application/json"}
    for body in (b"{", b"\xff\xfe", b"null", b'"x"'):
        assert client.post("/predict", content=body, headers=headers).status_code == 422


def test_too_many_rows_is_422(make_app: AppFactory) -> None:
    with TestClient(make_app(max_batch_rows=3)) as client:
        response = client.post(
            "/predict", json={"instances": [[0.0] * N_FEATURES] * 4}, headers=PREDICT
        )
        assert response.status_code == 422
        assert "1 to 3 rows" in response.json()["detail"]


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("multipart/form-data", b"--x\r\n\r\nabc\r\n--x--"),  # no boundary parameter
        ("multipart/form-data; boundary=x", b"no boundary here"),
        ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data"),
        ("multipart/form-data; boundary=x", b"--x\r\nheader-without-blank-line\r\n--x--"),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="other"\r\n\r\nv\r\n--x--\r\n',
        ),
        ("multipart/form-data; boundary=x", b"--x--\r\n"),
    ],
)
def test_malformed_multipart_is_422(client: TestClient, ctype: str, body: bytes) -> None:
    response = client.post("/predict", content=body, headers={**PREDICT, "Content-Type": ctype})
    assert response.status_code == 422


def test_form_field_named_file_without_filename(client: TestClient, trained: Trained) -> None:
    png = trained.image(0)
    body = (
        b'--b1\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n'
        b'--b1\r\nContent-Disposition: form-data; name="file"\r\nContent-Type: image/png\r\n\r\n'
        + png
        + b"\r\n--b1--\r\n"
    )
    headers = {**PREDICT, "Content-Type": "multipart/form-data; boundary=b1"}
    assert client.post("/predict", content=body, headers=headers).status_code == 200


# --- property: any JSON batch is a 200 or a 422 naming the shape ----------------------------

_numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32), st.integers(-(10**6), 10**6)
)
_rows = st.lists(
    st.one_of(
        st.lists(_numbers, min_size=N_FEATURES, max_size=N_FEATURES),
        st.lists(_numbers, max_size=N_FEATURES + 6),
    ),
    max_size=5,
)


@given(rows=_rows)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_json_batch_is_answered_or_refused_cleanly(
    client: TestClient, rows: list[list[float]]
) -> None:
    response = client.post("/predict", json={"instances": rows}, headers=PREDICT)
    if rows and all(len(r) == N_FEATURES for r in rows):
        assert response.status_code == 200
        assert len(response.json()["predictions"]) == len(rows)
    else:
        assert response.status_code == 422
        assert f"[{N_FEATURES} numbers]" in response.json()["detail"]
