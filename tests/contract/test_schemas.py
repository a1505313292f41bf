"""The committed schemas match the models; examples validate; user text cannot inject markup."""

from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import ValidationError

from pocketvl.contracts.export import drifted, schemas
from pocketvl.contracts.messages import REQUEST_ADAPTER, DlqHeaders
from pocketvl.domains.remote_sensing import RSClassifyTask
from tests.conftest import REPO
from tests.support.examples import EXAMPLES


def test_committed_schemas_match_the_models() -> None:
    assert drifted(REPO / "schemas") == [], "run `pocketvl schemas export` and commit"


def test_drift_is_detected(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "answer.schema.json").write_text("{}")
    assert set(drifted(tmp_path)) == set(schemas())


def test_one_example_per_domain_and_task() -> None:
    found = {
        (v["domain"], v["task"]["type"]) for v in (json.loads(p.read_text()) for p in EXAMPLES)
    }
    assert found == {
        ("driving", "drivelm"),
        ("driving", "bdd"),
        ("remote_sensing", "vqa"),
        ("remote_sensing", "classify"),
        ("remote_sensing", "ground"),
        ("remote_sensing", "caption"),
        ("medical", "vqa"),
        ("medical", "choice"),
    }


def test_examples_are_the_sample_builders_output() -> None:
    from tests.support.samples import example_requests

    for stem, value in example_requests().items():
        assert json.loads((REPO / "schemas" / "examples" / f"{stem}.json").read_text()) == value


def test_drivelm_needs_the_six_named_cameras() -> None:
    value = json.loads((REPO / "schemas" / "examples" / "driving.drivelm.json").read_text())
    value["images"] = value["images"][:5]
    with pytest.raises(ValidationError, match="exactly 6 still images named"):
        REQUEST_ADAPTER.validate_python(value)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_validate_against_models_and_json_schema(path) -> None:  # type: ignore[no-untyped-def]
    value = json.loads(path.read_text())
    request = REQUEST_ADAPTER.validate_python(value)
    assert request.domain == path.stem.split(".")[0]
    assert request.task.type == path.stem.split(".")[1]
    jsonschema.validate(value, schemas()["request.schema.json"])


def test_json_schema_rejects_what_the_models_reject() -> None:
    value = json.loads(EXAMPLES[0].read_text())
    value["task"] = {"type": "teleport"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(value, schemas()["request.schema.json"])
    with pytest.raises(ValidationError):
        REQUEST_ADAPTER.validate_python(value)


@pytest.mark.parametrize("markup", ["<image>", "<IMG_CONTEXT>", "<img>", "<|im_end|>"])
def test_reserved_prompt_markup_is_refused_in_user_text(markup: str) -> None:
    with pytest.raises(ValidationError, match="reserved markup"):
        RSClassifyTask(labels=["forest", f"river {markup}"])


def test_dlq_headers_use_dotted_names() -> None:
    props = schemas()["dlq-headers.schema.json"]["properties"]
    assert {"dlq.stage", "dlq.reason", "dlq.original.offset", "dlq.retryable"} <= set(props)
    assert DlqHeaders.model_fields["reason"].alias == "dlq.reason"


def test_the_contract_cameras_are_the_stitch_layout() -> None:
    from typing import get_args

    from pocketvl.contracts.common import DRIVELM_CAMERAS, CameraName
    from pocketvl.vision.stitch import CAMERAS

    assert DRIVELM_CAMERAS == CAMERAS == get_args(CameraName)
