"""The task registry is the one place a task is declared: everything else is derived from it."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import jsonschema
import pytest
from pydantic import ValidationError

from pocketvl.cli.main import build_parser, task_from_args
from pocketvl.contracts.answers import TextAnswer
from pocketvl.contracts.export import schemas
from pocketvl.contracts.messages import REQUEST_ADAPTER, request_adapter
from pocketvl.contracts.tasks import TaskBase, UserText
from pocketvl.domains.compose import prepare_inputs
from pocketvl.domains.labels import AnswerLabel
from pocketvl.domains.registry import REGISTRY, Registry
from pocketvl.domains.spec import InputRule, TaskDocs, TaskSpec
from pocketvl.domains.tables import tasks_table
from pocketvl.errors import PocketvlError
from pocketvl.evaluation.metrics import SCORERS
from pocketvl.modeltools.catalog import CATALOG
from pocketvl.settings import LimitSettings, RoutingSettings
from pocketvl.worker.images import ImageFetcher
from tests.conftest import REPO

EXAMPLES = REPO / "schemas" / "examples"


class CountTask(TaskBase):
    type: Literal["count"] = "count"
    object: UserText


class SoilTask(TaskBase):
    type: Literal["soil"] = "soil"


def _spec(domain: str, model: type[Any]) -> TaskSpec[Any]:
    return TaskSpec(
        domain=domain,
        model=model,
        summary="a task only this test knows",
        inputs=InputRule(min_images=1, max_images=1),
        layout="as_decoded",
        prompt=lambda task: "How many?",
        parse=lambda task, text, context: TextAnswer(text=text),
        answer_kinds=("text",),
        checkpoint="RS",
        label=AnswerLabel,
        metric="exact_match",
        published_answer="3",
        docs=TaskDocs("`object`", "one image", "`How many?`", "`text`"),
    )


EXTENDED = REGISTRY.with_tasks([_spec("remote_sensing", CountTask), _spec("agriculture", SoilTask)])


def _request(domain: str, task: dict[str, Any]) -> dict[str, Any]:
    example = json.loads((EXAMPLES / "remote_sensing.caption.json").read_text())
    return {**example, "domain": domain, "task": task}


def test_a_task_added_to_the_registry_alone_is_in_the_request_schema() -> None:
    count = _request("remote_sensing", {"type": "count", "object": "planes"})
    soil = _request("agriculture", {"type": "soil"})
    schema = schemas(EXTENDED)["request.schema.json"]
    jsonschema.validate(count, schema)
    jsonschema.validate(soil, schema)
    assert {"CountTask", "SoilTask", "AgricultureRequest"} <= set(schema["$defs"])
    assert request_adapter(EXTENDED).validate_python(count).task == CountTask(object="planes")
    # the shipped schema and models know nothing of it
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(count, schemas()["request.schema.json"])
    with pytest.raises(ValidationError):
        REQUEST_ADAPTER.validate_python(count)
    answer_defs = schemas(EXTENDED)["answer.schema.json"]["$defs"]
    assert "CountTask" in answer_defs


def test_a_task_added_to_the_registry_alone_is_in_the_cli(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser(EXTENDED).parse_args(["produce", "--help"])
    help_text = capsys.readouterr().out
    assert "remote_sensing/count: a task only this test knows" in help_text
    assert "agriculture" in help_text  # a --domain choice
    with pytest.raises(SystemExit):
        build_parser(REGISTRY).parse_args(["produce", "--domain", "agriculture", "--image", "x"])
    assert "invalid choice: 'agriculture'" in capsys.readouterr().err
    assert task_from_args(EXTENDED, "remote_sensing", '{"type": "count", "object": "cars"}', None)
    with pytest.raises(PocketvlError, match="object"):
        task_from_args(EXTENDED, "remote_sensing", "count", None)  # its field is required
    with pytest.raises(PocketvlError, match="has no task 'count'; use one of vqa, classify"):
        task_from_args(REGISTRY, "remote_sensing", "count", None)
    assert "| remote_sensing / `count` |" in tasks_table(EXTENDED)


def test_a_task_added_to_the_registry_alone_passes_the_route_check() -> None:
    keys = ["remote_sensing/count", "remote_sensing/count/2b", "agriculture/soil"]
    assert EXTENDED.route_problems(keys) == []
    problems = REGISTRY.route_problems(keys)
    assert problems[0] == (
        "route key 'remote_sensing/count' names no task of remote_sensing "
        "(vqa, classify, ground, caption)"
    )
    assert "with domain one of driving, remote_sensing, medical" in problems[2]


def test_route_keys_are_checked_against_the_registry_at_start_up() -> None:
    route = {"triton_model": "m", "checkpoint": "c"}
    for key, message in [
        ("medical/caption", "names no task of medical (vqa, choice)"),
        ("medical/vqa/7b", "the size must be one of 1b, 2b, 4b"),
        ("weather/vqa", "domain one of driving"),
    ]:
        with pytest.raises(ValidationError, match=re.escape(message)):
            RoutingSettings(routes={key: route})
    assert set(RoutingSettings().routes) == {spec.key for spec in REGISTRY}


def test_the_registry_refuses_a_task_declared_twice() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        REGISTRY.with_tasks([REGISTRY.get("medical", "vqa")])
    with pytest.raises(KeyError, match="medical has: vqa, choice"):
        REGISTRY.get("medical", "ground")


@pytest.mark.parametrize("spec", list(REGISTRY), ids=lambda s: s.key)
def test_every_task_has_an_example_a_parsable_published_answer_and_a_metric(
    spec: TaskSpec[Any],
) -> None:
    example = json.loads((EXAMPLES / spec.example_file()).read_text())
    request = REQUEST_ADAPTER.validate_python(example)
    assert REGISTRY.for_task(request.task) is spec
    limits = LimitSettings()
    composed = prepare_inputs(request, ImageFetcher(limits, {}).load_all(request.images), limits)
    status, answer = REGISTRY.parse(request.task, spec.published_answer, composed.context)
    assert status == "ok"
    assert answer.kind in spec.answer_kinds
    assert spec.metric in SCORERS
    assert any(
        spec.key.split("/")[1] in entry.tasks for entry in CATALOG if entry.da == spec.checkpoint
    )


def test_the_readme_task_table_is_the_registry() -> None:
    readme = (REPO / "README.md").read_text()
    start = readme.index("<!-- tasks table")
    start = readme.index("\n", start) + 1
    end = readme.index("<!-- end of tasks table -->")
    assert readme[start:end] == tasks_table(REGISTRY), "run `pocketvl tasks` and paste it"


def test_a_registry_needs_distinct_models() -> None:
    spec = _spec("remote_sensing", CountTask)
    with pytest.raises(ValueError, match="share one request model"):
        Registry((spec, _spec("agriculture", CountTask)))
