"""Every config.pbtxt parses with Triton's own protobuf schema and matches triton_contract."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from pocketvl.contracts import triton as tc
from tests.conftest import REPO

CONFIGS = sorted((REPO / "model_repository").glob("*/config.pbtxt"))


def parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_there_are_models() -> None:
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_config_matches_the_tensor_contract(path: Path) -> None:
    config = parse(path)
    assert config.name == path.parent.name
    assert config.backend == "python"
    assert (path.parent / "1" / "model.py").is_file()
    for declared, specs in ((config.input, tc.INPUTS), (config.output, tc.OUTPUTS)):
        got = {
            t.name: (
                model_config_pb2.DataType.Name(t.data_type),
                tuple(t.dims),
                getattr(t, "optional", False),
            )
            for t in declared
        }
        want = {s.name: (s.data_type, s.dims, s.optional) for s in specs}
        assert got == want
    assert "checkpoint" in config.parameters


def test_a_wrong_dtype_would_be_caught(tmp_path: Path) -> None:
    bad = (
        CONFIGS[0]
        .read_text()
        .replace(
            'name: "MAX_TILES" data_type: TYPE_INT32', 'name: "MAX_TILES" data_type: TYPE_STRING'
        )
    )
    assert bad != CONFIGS[0].read_text()
    path = tmp_path / CONFIGS[0].parent.name / "config.pbtxt"
    path.parent.mkdir()
    path.write_text(bad)
    inputs = {t.name: t.data_type for t in parse(path).input}
    assert model_config_pb2.DataType.Name(inputs["MAX_TILES"]) != tc.MAX_TILES.data_type
