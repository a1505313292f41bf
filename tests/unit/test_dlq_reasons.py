"""Every DLQ reason, produced through ``Pipeline.process`` and checked against the contract
(``DlqHeaders`` and ``schemas/dlq-headers.schema.json``): a reason that cannot be written
fails here, and so does a reason in the table that nothing produces."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from PIL import Image
from pydicom.data import get_testdata_file

from pocketvl.adapters.claim_check import image_stores
from pocketvl.errors import DLQ_REASONS, InferenceError, InferenceUnavailable
from pocketvl.settings import (
    ImageStoreSettings,
    KafkaSettings,
    LimitSettings,
    Settings,
    TritonSettings,
)
from pocketvl.worker.envelope import InboundRecord
from pocketvl.worker.images import ImageFetcher
from pocketvl.worker.pipeline import Pipeline
from tests.conftest import REPO
from tests.support import media_samples as samples
from tests.support.examples import example
from tests.support.fakes import InMemoryDoneStore, InMemoryResultCache, ScriptedInference
from tests.support.pipelines import contract_checked

PNG = samples.encode(samples.halves(32, 16), "PNG")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def inline(data: bytes, media_type: str = "image/png", **extra: Any) -> dict[str, Any]:
    return {"kind": "inline", "media_type": media_type, "data_b64": b64(data), **extra}


def ref(path: Path, data: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "ref",
        "uri": path.as_uri(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "media_type": "image/png",
        "size_bytes": len(data),
        **extra,
    }


def with_images(domain: str, *images: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**example(domain), "images": list(images), **changes}


def bdd_video(data: bytes) -> dict[str, Any]:
    return with_images("driving", inline(data, "video/mp4"), task={"type": "bdd"})


def tiff_pages(count: int) -> bytes:
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as writer:
        for _ in range(count):
            writer.write(np.zeros((2, 2), np.uint8), photometric="minisblack", contiguous=False)
    return buffer.getvalue()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Case:
    """A record value (or a builder given the file root) and what the pipeline runs with."""

    value: Any
    domain: str = "medical"
    inference: Callable[[], ScriptedInference] = ScriptedInference
    settings: dict[str, Any] = field(default_factory=dict)


def _bug() -> ScriptedInference:
    class Buggy(ScriptedInference):
        def generate(self, *args: Any, **kwargs: Any) -> Any:
            raise KeyError("a bug in an adapter, quoting input: Doe^Jane")

    return Buggy()


def _root_file(name: str, data: bytes, media_type: str) -> Callable[[Path], dict[str, Any]]:
    def build(root: Path) -> dict[str, Any]:
        path = root / name
        path.write_bytes(data)
        return with_images("medical", ref(path, data, media_type=media_type))

    return build


def _fifo(root: Path) -> dict[str, Any]:
    path = root / "pipe.png"
    os.mkfifo(path)  # opening it for reading would block forever without a writer
    return with_images("medical", ref(path, b"x"))


def _wrong_digest(root: Path) -> dict[str, Any]:
    (root / "scan.png").write_bytes(PNG)
    return with_images("medical", ref(root / "scan.png", PNG, sha256="0" * 64))


NOISE_PNG = samples.encode(
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (1400, 1400, 3), np.uint8)), "PNG"
)
SMALL_GRPC = {"triton": {"max_grpc_message_bytes": 4 * 1024 * 1024}}
SMALL_MESSAGES = {"kafka": {"max_message_bytes": 4096}, "limits": {"max_inline_image_bytes": 2048}}
CASES: dict[str, list[Case]] = {
    "message_too_large": [Case(b" " * 4097, settings=SMALL_MESSAGES)],
    "invalid_json": [
        Case(b"{oops"),
        Case(b"\xff\xfe\x00"),
        Case(b'{"event_id": NaN}'),
        Case(b'{"a": Infinity}'),
        Case(b'{"n": ' + b"9" * 5000 + b"}"),  # over Python's 4300-digit int limit
    ],
    "json_too_deep": [
        Case(b"[" * 5000 + b"]" * 5000),  # deep enough to break json.loads' recursion
        Case(json.dumps({**example("medical"), "x": json.loads("[" * 40 + "]" * 40)}).encode()),
    ],
    "schema_invalid": [
        Case(with_images("medical", {**inline(PNG), "kind": "weird"})),
        Case(with_images("medical", {k: v for k, v in inline(PNG).items() if k != "kind"})),
        # 1e999 parses as infinity: refused by the model (allow_inf_nan=False), not the parser
        Case(
            json.dumps({**example("medical"), "decode": {"dicom_window": [40, 400]}})
            .replace('"dicom_window": [40, 400]', '"dicom_window": [40, 1e999]')
            .encode()
        ),
        Case(b"[1, 2]"),
        Case({**example("medical"), "surprise": 1}),
    ],
    "unknown_domain": [Case({**example("medical"), "domain": "astronomy"})],
    "unknown_task": [Case({**example("medical"), "task": {"type": "segment"}})],
    "domain_mismatch": [Case(example("driving"))],
    "deadline_expired": [Case({**example("medical"), "deadline": "2020-01-01T00:00:00Z"})],
    "no_route": [Case({**example("medical"), "model_size": "4b"})],
    "too_many_images": [Case(with_images("medical", *[inline(PNG)] * 9))],
    "bad_base64": [
        Case(with_images("medical", {**inline(PNG), "data_b64": text}))
        for text in (
            "!!not base64!!",
            b64(PNG)[:76] + "\n" + b64(PNG)[76:],  # MIME line breaks
            base64.urlsafe_b64encode(b"\xfb\xff" * 40).decode(),  # URL-safe alphabet
            b64(PNG).rstrip("=") + "A" if b64(PNG).endswith("=") else b64(PNG)[:-1],
        )
    ],
    "image_too_large": [
        # exactly one byte over the inline cap: the base64 length alone cannot tell
        Case(with_images("medical", inline(b"\x89PNG" + b"\x00" * 2045)), settings=SMALL_MESSAGES),
        Case(with_images("medical", ref(Path("/r/big.png"), b"", size_bytes=10**9))),
        # fine as a file, but its pixels as PNG would not fit in one Triton call
        Case(_root_file("noise.png", NOISE_PNG, "image/png"), settings=SMALL_GRPC),
    ],
    "uri_forbidden": [
        Case(with_images("medical", ref(Path("/etc/passwd"), b"x"))),
        Case(_fifo),
        Case(with_images("medical", {**ref(Path("/x"), b"x"), "uri": "gopher://host/x"})),
    ],
    "image_unreachable": [Case(lambda root: with_images("medical", ref(root / "gone.png", b"x")))],
    "image_unavailable": [
        Case(
            with_images("medical", {**ref(Path("/x"), b"x"), "uri": "http://127.0.0.1:{port}/a"}),
            settings={"image_store": {"http_hosts": ["127.0.0.1:{port}"]}},
        )
    ],
    "digest_mismatch": [Case(_wrong_digest)],
    "unsupported_media_type": [
        Case(bdd_video(samples.video_bytes("mp4", "mpeg2video", frames=2)), "driving"),
    ],
    "media_type_mismatch": [Case(with_images("medical", inline(PNG, "image/jpeg")))],
    "too_many_pixels": [Case(with_images("medical", inline(samples.png_claiming(30_000, 30_000))))],
    "too_many_frames": [
        Case(with_images("remote_sensing", inline(tiff_pages(65), "image/tiff")), "remote_sensing")
    ],
    "image_undecodable": [
        Case(with_images("medical", inline(PNG[: len(PNG) // 2]))),
        Case(
            _root_file(
                "cut.dcm", samples.well_formed()["application/dicom"][:400], "application/dicom"
            )
        ),
    ],
    "video_undecodable": [
        Case(bdd_video(samples.video_bytes("mp4", "libx264", frames=6)[:900]), "driving")
    ],
    "dicom_unsupported": [
        Case(
            with_images(
                "medical",
                inline(
                    Path(str(get_testdata_file("test-SR.dcm"))).read_bytes(), "application/dicom"
                ),
            )
        )
    ],
    "option_out_of_range": [
        Case(
            {
                **with_images(
                    "remote_sensing",
                    inline(samples.tiff_bytes(samples.four_band_ramps(), "separate"), "image/tiff"),
                ),
                "decode": {"bands": [7, 1, 0]},
            },
            "remote_sensing",
        )
    ],
    "inference_failed": [
        Case(
            example("medical"),
            inference=lambda: ScriptedInference(
                errors=[InferenceError("inference_failed", "bad tensor")]
            ),
        )
    ],
    "model_unavailable": [
        Case(
            example("medical"),
            inference=lambda: ScriptedInference(
                errors=[InferenceUnavailable("model_unavailable", "down")] * 3
            ),
        )
    ],
    "model_not_loaded": [
        Case(
            example("medical"),
            inference=lambda: ScriptedInference(
                errors=[InferenceUnavailable("model_not_loaded", "unknown model")] * 3
            ),
        )
    ],
    "internal_error": [Case(example("medical"), inference=_bug)],
}
PARAMS = [(reason, index) for reason, cases in CASES.items() for index in range(len(cases))]


def _fill_port(value: Any, port: int) -> Any:
    if isinstance(value, bytes):
        return value
    return json.loads(json.dumps(value).replace("{port}", str(port)))


def make_pipeline(case: Case, root: Path, port: int) -> Pipeline:
    sections = _fill_port(case.settings, port)
    settings = Settings(
        kafka=KafkaSettings(**sections.get("kafka", {})),
        limits=LimitSettings(**sections.get("limits", {})),
        image_store=ImageStoreSettings(
            **{"file_roots": [root], "backoff_initial_s": 0.0, **sections.get("image_store", {})}
        ),
        triton=TritonSettings(
            **{"max_attempts": 3, "backoff_initial_s": 0.0, **sections.get("triton", {})}
        ),
    )
    return Pipeline(
        settings=settings,
        images=ImageFetcher(settings.limits, image_stores(settings.image_store)),
        inference=case.inference(),
        cache=InMemoryResultCache(),
        done=InMemoryDoneStore(),
        sleep=lambda _: None,
    )


def value_bytes(case: Case, root: Path, port: int) -> bytes:
    value = case.value(root) if callable(case.value) else _fill_port(case.value, port)
    return value if isinstance(value, bytes) else json.dumps(value).encode()


@pytest.mark.parametrize(("reason", "index"), PARAMS, ids=[f"{r}-{i}" for r, i in PARAMS])
def test_each_reason_reaches_the_dlq_through_the_pipeline(
    reason: str, index: int, tmp_path: Path
) -> None:
    case = CASES[reason][index]
    port = closed_port()  # nothing listens there: a store that is down
    pipeline = make_pipeline(case, tmp_path, port)
    value = value_bytes(case, tmp_path, port)
    inbound = InboundRecord(
        f"pocketvl.{case.domain}.requests", 1, 42, b"key-1", value, [("x-tenant", b"acme")]
    )
    out = pipeline.process(inbound)
    assert out is not None and out.topic == f"pocketvl.{case.domain}.dlq"
    assert (out.key, out.value) == (inbound.key, inbound.value)  # original bytes, unchanged
    headers = contract_checked(out)
    assert headers["dlq.reason"] == reason, headers["dlq.exception.message"]
    assert headers["dlq.retryable"] == str(reason in RETRYABLE).lower()
    assert ("x-tenant", b"acme") in out.headers
    assert "Doe^Jane" not in headers["dlq.exception.message"]


RETRYABLE = {"image_unavailable", "model_unavailable", "model_not_loaded"}


def test_every_reason_in_the_table_has_a_case_and_the_readme_lists_them() -> None:
    assert set(CASES) == set(DLQ_REASONS)
    readme = (REPO / "README.md").read_text()
    listed = readme.split("### DLQ reasons", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in listed.splitlines() if line.startswith("| `")]
    expected = [f"| `{reason}` | {when} |" for reason, when in DLQ_REASONS.items()]
    assert rows == expected, "README's DLQ table should read:\n" + "\n".join(expected)
