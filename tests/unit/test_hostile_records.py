"""Property-based: nothing a producer can send makes ``Pipeline.process`` raise.

Arbitrary bytes, arbitrary JSON and valid requests with random mutations go through the
whole pipeline (in-memory inference and cache); each must come back as an answer or as a
DLQ record whose headers satisfy the contract. ``internal_error`` counts as a failure here:
for producer input it would mean a bug that hid behind the catch-all.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pocketvl.domains.registry import REGISTRY
from pocketvl.errors import DLQ_REASONS
from pocketvl.settings import Settings, TritonSettings
from pocketvl.worker.envelope import InboundRecord
from pocketvl.worker.images import ImageFetcher
from pocketvl.worker.pipeline import Pipeline
from tests.support.examples import EXAMPLES
from tests.support.fakes import InMemoryDoneStore, InMemoryResultCache, ScriptedInference
from tests.support.pipelines import contract_checked

EXAMPLE_VALUES = [json.loads(path.read_text()) for path in sorted(EXAMPLES)]
DOMAINS = REGISTRY.domains

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=30,
)


def make_pipeline() -> Pipeline:
    config = Settings(triton=TritonSettings(max_attempts=2, backoff_initial_s=0.0))
    return Pipeline(
        settings=config,
        images=ImageFetcher(config.limits, {}),
        inference=ScriptedInference(),
        cache=InMemoryResultCache(),
        done=InMemoryDoneStore(),
        sleep=lambda _: None,
    )


PIPELINE = make_pipeline()


def check_processed(value: bytes, domain: str) -> None:
    inbound = InboundRecord(f"pocketvl.{domain}.requests", 0, 3, b"k", value, [])
    out = PIPELINE.process(inbound)
    assert out is not None
    if out.topic.endswith(".dlq"):
        headers = contract_checked(out)
        assert headers["dlq.reason"] in DLQ_REASONS
        assert headers["dlq.reason"] != "internal_error", headers["dlq.exception.message"]
        assert out.value == value
    else:
        assert out.topic == f"pocketvl.{domain}.answers"


SLOW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SLOW
@given(st.binary(max_size=3000), st.sampled_from(DOMAINS))
def test_arbitrary_bytes(value: bytes, domain: str) -> None:
    check_processed(value, domain)


@SLOW
@given(json_values, st.sampled_from(DOMAINS))
def test_arbitrary_json(value: Any, domain: str) -> None:
    check_processed(json.dumps(value).encode(), domain)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON tree (dict keys and list indices)."""
    found = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*prefix, index))
    return found


def _mutate(tree: Any, path: tuple[Any, ...], action: str, replacement: Any) -> Any:
    if not path:
        return replacement
    tree = json.loads(json.dumps(tree))
    parent = tree
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "add" and isinstance(parent, dict):
        parent[f"{last}_extra"] = replacement
    else:
        parent[last] = replacement
    return tree


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_valid_requests(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(EXAMPLE_VALUES))
    mutated = base
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(mutated)))
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete" and not path:
            continue
        mutated = _mutate(mutated, path, action, data.draw(json_values))
    check_processed(json.dumps(mutated).encode(), base["domain"])


def test_examples_themselves_are_answered() -> None:
    for value in EXAMPLE_VALUES:
        out = PIPELINE.process(
            InboundRecord(
                f"pocketvl.{value['domain']}.requests", 0, 1, None, json.dumps(value).encode()
            )
        )
        assert out is not None and out.topic.endswith(".answers"), value["event_id"]


def _damaged(data: bytes, draw: st.DataObject) -> bytes:
    kind = draw.draw(st.sampled_from(["truncate", "flip", "insert", "overwrite"]))
    at = draw.draw(st.integers(0, max(len(data) - 1, 0)))
    if kind == "truncate":
        return data[:at]
    if kind == "insert":
        return data[:at] + draw.draw(st.binary(min_size=1, max_size=64)) + data[at:]
    patch = draw.draw(st.binary(min_size=1, max_size=16))
    if kind == "flip":
        patch = bytes(b ^ 0xFF for b in data[at : at + len(patch)])
    return data[:at] + patch + data[at + len(patch) :]


INLINE_EXAMPLES = [v for v in EXAMPLE_VALUES if any(i["kind"] == "inline" for i in v["images"])]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_image_bytes_and_odd_decode_options(data: st.DataObject) -> None:
    """Valid requests whose image files are cut, flipped or padded, reaching every decoder
    (JPEG, PNG, TIFF, DICOM, the DriveLM stitch, BDD frames), with decode options drawn
    from their valid types."""
    value = json.loads(json.dumps(data.draw(st.sampled_from(INLINE_EXAMPLES))))
    index = data.draw(st.integers(0, len(value["images"]) - 1))
    image = value["images"][index]
    if image["kind"] == "inline":
        raw = base64.b64decode(image["data_b64"])
        image["data_b64"] = base64.b64encode(_damaged(raw, data)).decode()
    value["decode"] = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "bands": st.tuples(*[st.integers(0, 20)] * 3),
                "dicom_frame": st.integers(0, 5),
                "dicom_window": st.tuples(
                    st.floats(-1e6, 1e6), st.floats(1e-6, 1e6, exclude_min=False)
                ),
                "stretch_percentiles": st.tuples(st.floats(0, 49), st.floats(51, 100)),
                "video_frames": st.integers(1, 64),
            },
        )
    )
    check_processed(json.dumps(value).encode(), value["domain"])
