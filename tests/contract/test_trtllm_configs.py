"""What ``pocketvl models build`` writes parses with Triton's model-config protobuf, keeps the
client's tensor contract, wires its stages by the names each one reads, and uses only
TensorRT-LLM names of the pinned release (``trtllm_release_names.py``)."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from pocketvl.cli.main import main
from pocketvl.contracts.trtllm_stages import LLM_INPUTS, LLM_OUTPUTS, VISION_INPUT, VISION_OUTPUT
from pocketvl.modeltools import repository
from pocketvl.modeltools.trtllm_repository import ENGINES, TrtllmOptions, engine_sizing
from tests.contract import trtllm_release_names as upstream
from tests.contract.test_triton_configs import mismatches

BACKBONES = ("qwen2", "internlm2", "phi3")
BATCH = ("--max-batch-size", "8")  # requests in flight in the LLM engine
# checkpoint directory name -> tiles per request (thumbnail included) its domain needs
DOMAIN_TILES = {
    "Mini-InternVL2-1B-DA-DriveLM": 13,  # 12 tiles + thumbnail
    "Mini-InternVL2-1B-DA-RS": 13,
    "Mini-InternVL2-2B-DA-Medical": 7,  # 6 + thumbnail
    "Mini-InternVL2-4B-DA-BDD": 8,  # 8 frames, one tile each
    "tiny-internvl2-qwen2": 13,  # not in the catalog: the checkpoint's max_dynamic_patch
}


def parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def dtype(value: int) -> str:
    return str(model_config_pb2.DataType.Name(value))


def params(config: model_config_pb2.ModelConfig) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


def build(
    checkpoint: Path, tmp: Path, engine: str = "trtllm", *extra: str
) -> tuple[Path, Path, int]:
    out, engines = tmp / "repo", tmp / "engines"
    argv = ["models", "build", "--engine", engine, str(checkpoint), "--out", str(out)]
    code = main([*argv, "--engines-dir", str(engines), *extra])
    return out, engines, code


@pytest.fixture(scope="module")
def built(
    checkpoint_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, Path]]:
    """Every backbone, and checkpoints named as each DA family, built for the trtllm engine."""
    tmp = tmp_path_factory.mktemp("trtllm")
    out: dict[str, tuple[Path, Path]] = {}
    for backbone in BACKBONES:
        source = checkpoint_root / f"tiny-internvl2-{backbone}"
        repo, engines, code = build(source, tmp / backbone, "trtllm", *BATCH)
        assert code == 0
        out[backbone] = (repo, engines)
    for name in DOMAIN_TILES:
        named = tmp / "named" / name
        if not named.exists():
            shutil.copytree(checkpoint_root / "tiny-internvl2-qwen2", named)
        repo, engines, code = build(named, tmp / f"domain-{name}", "trtllm", *BATCH)
        assert code == 0
        out[name] = (repo, engines)
    return out


def all_configs(built: dict[str, tuple[Path, Path]]) -> list[Path]:
    return sorted(p for repo, _ in built.values() for p in repo.glob("*/config.pbtxt"))


def test_three_models_per_checkpoint_and_all_parse(built: dict[str, tuple[Path, Path]]) -> None:
    repo, _ = built["qwen2"]
    names = sorted(p.name for p in repo.iterdir())
    base = "internvl2_tiny_qwen2"
    assert names == [base, f"{base}_llm", f"{base}_vision"]
    for path in all_configs(built):
        assert parse(path).name == path.parent.name


def test_the_bls_model_keeps_the_client_contract(built: dict[str, tuple[Path, Path]]) -> None:
    for repo, _ in built.values():
        for config in repo.glob("*/config.pbtxt"):
            if parse(config).backend == "python":
                assert mismatches(parse(config), config.parent) == []
                assert params(parse(config))["engine"] == "trtllm"


def test_stages_are_wired_by_name_type_and_shape(built: dict[str, tuple[Path, Path]]) -> None:
    repo, _ = built["internlm2"]
    bls = parse(repo / "internvl2_tiny_internlm2" / "config.pbtxt")
    p = params(bls)
    vision = parse(repo / p["vision_model"] / "config.pbtxt")
    llm = parse(repo / p["llm_model"] / "config.pbtxt")
    assert (vision.backend, vision.platform) == ("tensorrt", "tensorrt_plan")
    assert vision.max_batch_size == int(p["vision_max_batch"]) >= 13
    assert [(t.name, dtype(t.data_type), tuple(t.dims)) for t in vision.input] == [
        (VISION_INPUT, "TYPE_FP16", (3, 448, 448))
    ]
    assert [(t.name, dtype(t.data_type), tuple(t.dims)) for t in vision.output] == [
        (VISION_OUTPUT, "TYPE_FP16", (256, 64))  # tiny LLM hidden size
    ]
    plan = repo / p["vision_model"] / "1" / "model.plan"
    assert plan.is_symlink() and str(plan.readlink()).startswith(f"{ENGINES}/")
    declared = {t.name: (dtype(t.data_type), tuple(t.dims), t.optional) for t in llm.input}
    assert declared == LLM_INPUTS  # exactly what the BLS sends (test_trtllm_bls checks that)
    assert {t.name: (dtype(t.data_type), tuple(t.dims)) for t in llm.output} == LLM_OUTPUTS
    assert (repo / p["llm_model"] / "1").is_dir()


def test_tensorrt_llm_names_are_the_pinned_releases(built: dict[str, tuple[Path, Path]]) -> None:
    for path in all_configs(built):
        config = parse(path)
        if config.backend != "tensorrtllm":
            continue
        assert config.model_transaction_policy.decoupled is False
        for t in config.input:
            types, dims = upstream.LLM_INPUTS[t.name]
            assert dtype(t.data_type) in types and tuple(t.dims) == dims, t.name
            assert t.optional == (t.name not in upstream.LLM_REQUIRED_INPUTS), t.name
            if dims == (1,):  # scalars per request, as upstream declares them
                assert tuple(t.reshape.shape) == () and t.HasField("reshape"), t.name
        for t in config.output:
            assert upstream.LLM_OUTPUTS[t.name] == (dtype(t.data_type), tuple(t.dims)), t.name
        values = params(config)
        assert set(values) <= upstream.LLM_PARAMETERS
        for key, allowed in upstream.LLM_PARAMETER_VALUES.items():
            assert values[key] in allowed
        assert values["enable_kv_cache_reuse"] == "true" and values["max_beam_width"] == "1"


def commands(script: Path) -> tuple[list[str], list[str], list[str]]:
    """The converter, trtllm-build and vision-builder command lines of a build script."""
    text = script.read_text().splitlines()
    lines = [shlex.split(line) for line in text if not line.startswith("#")]
    found = {}
    for argv in lines:
        for key in ("convert_checkpoint.py", "trtllm-build", "build_multimodal_engine.py"):
            if argv and any(word.endswith(key) for word in argv[:2]):
                found[key] = argv
    return (
        found["convert_checkpoint.py"],
        found["trtllm-build"],
        found["build_multimodal_engine.py"],
    )


def flags(argv: list[str]) -> dict[str, str]:
    return {argv[i]: argv[i + 1] for i in range(len(argv)) if argv[i].startswith("--")}


@pytest.mark.parametrize("name", sorted(DOMAIN_TILES))
def test_build_script_sizes_the_engines_for_the_domain(
    built: dict[str, tuple[Path, Path]], name: str
) -> None:
    _, engines = built[name]
    (script,) = engines.glob("*/build.sh")
    convert, trtllm_build, vision = commands(script)
    tiles = DOMAIN_TILES[name]
    batch = int(BATCH[1])
    got = flags(trtllm_build)
    assert trtllm_build[0] == "trtllm-build" and set(got) <= upstream.TRTLLM_BUILD_FLAGS
    assert int(got["--max_multimodal_len"]) == tiles * 256 * batch
    assert int(got["--max_batch_size"]) == batch
    assert int(got["--max_input_len"]) >= tiles * 256 and (
        int(got["--max_seq_len"]) > int(got["--max_input_len"])
    )
    assert set(flags(convert)) <= upstream.CONVERTER_FLAGS
    assert flags(convert)["--dtype"] == "float16"  # the vision builder's dtype
    vision_flags = flags(vision)
    assert set(vision_flags) <= upstream.MULTIMODAL_BUILDER_FLAGS
    assert vision_flags["--model_type"] in upstream.MULTIMODAL_MODEL_TYPES
    # The plan holds --max_batch_size x max_dynamic_patch (12) tiles: at least one request's.
    assert int(vision_flags["--max_batch_size"]) * 12 >= tiles
    for argv in (convert, vision):
        assert argv[1].split("/trtllm-src/", 1)[1] in upstream.CONVERTER_SCRIPTS


def test_each_backbone_gets_its_families_converter(built: dict[str, tuple[Path, Path]]) -> None:
    family = {"qwen2": "qwen", "internlm2": "internlm2", "phi3": "phi"}
    for backbone, converter in family.items():
        _, engines = built[backbone]
        (script,) = engines.glob("*/build.sh")
        assert f"/examples/models/core/{converter}/convert_checkpoint.py" in script.read_text()


def test_sizing_follows_the_multimodal_rule() -> None:
    sizing = engine_sizing(13, 12, 256, TrtllmOptions(max_batch_size=4, vision_requests=2))
    assert sizing.max_multimodal_len == 13 * 256 * 4 == 13312
    assert (sizing.vision_build_batch, sizing.vision_max_batch) == (3, 36)


def test_torch_build_reuses_the_repository_generator(checkpoint_root: Path, tmp_path: Path) -> None:
    checkpoint = checkpoint_root / "tiny-internvl2-phi3"
    gpu = ("--kind", "gpu", "--dtype", "bfloat16", "--max-batch-size", "16")
    out, _, code = build(checkpoint, tmp_path, "torch", *gpu)
    assert code == 0
    (config,) = out.glob("*/config.pbtxt")
    assert config.parent.name == "internvl2_tiny_phi3"
    assert mismatches(parse(config), config.parent) == []
    parsed = parse(config)
    assert parsed.max_batch_size == 16
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(parsed.instance_group[0].kind) == (
        "KIND_GPU"
    )
    assert params(parsed)["dtype"] == "bfloat16"
    assert (config.parent / "1" / "model.py").read_text() == repository.MODEL_PY


def test_build_refuses_without_engine_or_directory(tmp_path: Path) -> None:
    assert main(["models", "build", str(tmp_path)]) == 2
    assert main(["models", "build", "--engine", "trtllm"]) == 2
