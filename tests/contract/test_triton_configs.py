"""Every config.pbtxt parses with Triton's own protobuf schema and matches triton_contract."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from pocketvl.contracts import triton as tc
from pocketvl.modeltools.repository import RepositoryOptions, write_repository
from tests.conftest import REPO

# The served models, and the benchmark's stand-ins (echo, fixed_latency): the same contract.
CONFIGS = sorted((REPO / "model_repository").glob("*/config.pbtxt"))
CONFIGS += sorted((REPO / "bench" / "model_repository").glob("*/config.pbtxt"))


def parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_there_are_models() -> None:
    assert CONFIGS


def mismatches(config: model_config_pb2.ModelConfig, model_dir: Path) -> list[str]:
    """Where a parsed config.pbtxt departs from the tensor contract, one line each."""
    problems = []
    if config.name != model_dir.name:
        problems.append(f"name {config.name!r} is not the directory's {model_dir.name!r}")
    if config.backend != "python" or not (model_dir / "1" / "model.py").is_file():
        problems.append("not a Python-backend model with 1/model.py")
    if "checkpoint" not in config.parameters:
        problems.append("no checkpoint parameter")
    for declared, specs in ((config.input, tc.INPUTS), (config.output, tc.OUTPUTS)):
        got = {
            t.name: (
                model_config_pb2.DataType.Name(t.data_type),
                tuple(t.dims),
                getattr(t, "optional", False),
                getattr(t, "allow_ragged_batch", False),
            )
            for t in declared
        }
        for spec in specs:
            want = (spec.data_type, spec.dims, spec.optional, spec.ragged)
            if got.pop(spec.name, None) != want:
                problems.append(f"{spec.name} must be {want}")
        problems += [f"{name} is not in the contract" for name in got]
    return problems


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_config_matches_the_tensor_contract(path: Path) -> None:
    assert mismatches(parse(path), path.parent) == []


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (('MAX_TILES" data_type: TYPE_INT32', 'MAX_TILES" data_type: TYPE_STRING'), "MAX_TILES"),
        (("dims: [ 1 ] optional: true", "dims: [ 2 ] optional: true"), "must be"),
        ((" allow_ragged_batch: true", ""), "PIXELS"),
        (('backend: "python"', 'backend: "onnxruntime"'), "Python-backend"),
    ],
)
def test_a_config_that_breaks_the_contract_is_caught(
    tmp_path: Path, edit: tuple[str, str], problem: str
) -> None:
    original = CONFIGS[0].read_text()
    assert edit[0] in original, "the edit must change the config"
    model_dir = tmp_path / CONFIGS[0].parent.name
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.py").write_text("")
    config = text_format.Parse(
        original.replace(edit[0], edit[1], 1), model_config_pb2.ModelConfig()
    )
    assert any(problem in line for line in mismatches(config, model_dir))


def test_the_generated_gpu_profile_meets_the_contract_with_a_batch_sized_to_memory(
    tmp_path: Path,
) -> None:
    options = RepositoryOptions(kind="gpu", dtype="bfloat16", gpu_memory_gib=80)
    write_repository(tmp_path, options)
    batches = {}
    for path in sorted(tmp_path.glob("*/config.pbtxt")):
        config = parse(path)
        assert mismatches(config, path.parent) == []
        batches[config.name] = config.max_batch_size
        if config.name.startswith("mini_"):
            (group,) = config.instance_group
            assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
            assert config.parameters["dtype"].string_value == "bfloat16"
    # A bigger LLM (a larger KV cache per token) gets a smaller batch on the same GPU.
    assert (
        batches["mini_internvl2_4b_da_drivelm"]
        < batches["mini_internvl2_2b_da_drivelm"]
        <= batches["mini_internvl2_1b_da_drivelm"]
    )
