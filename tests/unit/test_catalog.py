"""The checkpoint catalog, routes built from it, and the generated model repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from pocketvl.modeltools.catalog import CATALOG, find, routes_for
from pocketvl.modeltools.repository import (
    RepositoryOptions,
    configs,
    repository_drift,
    write_repository,
)
from pocketvl.settings import RoutingSettings
from tests.conftest import REPO


def test_twelve_checkpoints_three_backbones_four_domains() -> None:
    assert len(CATALOG) == 12
    assert {e.backbone for e in CATALOG} == {"qwen2", "internlm2", "phi3"}
    assert {e.da for e in CATALOG} == {"DriveLM", "BDD", "RS", "Medical"}
    entry = find("Mini-InternVL2-2B-DA-RS")
    assert (entry.hub_id, entry.template, entry.triton_model) == (
        "OpenGVLab/Mini-InternVL2-2B-DA-RS",
        "internlm2-chat",
        "mini_internvl2_2b_da_rs",
    )
    assert find("OpenGVLab/Mini-InternVL2-1B-DA-Drivelm").da == "DriveLM"  # README casing
    assert find("mini_internvl2_4b_da_medical").max_tiles == 6
    with pytest.raises(KeyError, match="not in the catalog"):
        find("Mini-InternVL2-8B-DA-RS")


def test_routes_from_the_catalog_are_valid_settings() -> None:
    routes = RoutingSettings.model_validate({"routes": routes_for("2b")}).routes
    assert routes["remote_sensing/ground"].triton_model == "mini_internvl2_2b_da_rs"
    assert routes["remote_sensing/ground/4b"].checkpoint == "Mini-InternVL2-4B-DA-RS"
    assert routes["driving/bdd"].max_tiles == 1
    assert len([k for k in routes if k.count("/") == 1]) == 8  # every task has a default


def test_committed_model_repository_matches_the_generator() -> None:
    assert repository_drift(REPO / "model_repository", RepositoryOptions()) == []
    listed = {p.name for p in (REPO / "model_repository").iterdir() if p.is_dir()}
    assert listed == set(configs(RepositoryOptions()))


def test_generator_options_reach_the_configs(tmp_path: Path) -> None:
    options = RepositoryOptions(kind="gpu", dtype="bfloat16", instances=2, dummy_weights=True)
    write_repository(tmp_path, options)
    text = (tmp_path / "mini_internvl2_4b_da_bdd" / "config.pbtxt").read_text()
    assert "count: 2 kind: KIND_GPU" in text
    assert 'string_value: "bfloat16"' in text
    assert 'key: "dummy_weights" value: { string_value: "4b" }' in text
    tiny = (tmp_path / "internvl2_tiny_qwen2" / "config.pbtxt").read_text()
    assert "KIND_CPU" in tiny  # test models stay on CPU
    assert repository_drift(tmp_path, RepositoryOptions()) != []
