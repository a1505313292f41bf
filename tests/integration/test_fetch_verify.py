"""``models fetch`` through a hub-protocol mirror of a local directory, and ``models verify``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pocketvl.devstack.processes import free_ports
from pocketvl.errors import PocketvlError
from pocketvl.modeltools.catalog import find
from pocketvl.modeltools.fetch import fetch_checkpoint
from pocketvl.modeltools.verify import verify_checkpoint
from tests.integration.hub_mirror import hub_mirror
from tests.integration.test_cli import pocketvl

ENTRY = find("Mini-InternVL2-2B-DA-RS")


def test_fetch_from_a_hub_mirror_then_verify(tmp_path: Path, checkpoint_root: Path) -> None:
    source = tmp_path / "mirror"
    shutil.copytree(checkpoint_root / "tiny-internvl2-internlm2", source)
    (source / "modeling_internlm2.py").write_text(
        "raise SystemExit('remote code must not be fetched')"
    )
    with hub_mirror(source, ENTRY.hub_id) as endpoint:
        target = fetch_checkpoint(ENTRY, tmp_path / "dest", endpoint=endpoint)
    assert target == tmp_path / "dest" / ENTRY.name
    assert (target / "model.safetensors").read_bytes() == (
        source / "model.safetensors"
    ).read_bytes()
    assert not (target / "modeling_internlm2.py").exists()


def test_fetch_from_an_unreachable_hub_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(PocketvlError, match="--endpoint"):
        fetch_checkpoint(ENTRY, tmp_path, endpoint=f"http://127.0.0.1:{free_ports(1)[0]}")


def test_cli_fetch_and_verify(tmp_path: Path, checkpoint_root: Path) -> None:
    source = checkpoint_root / "tiny-internvl2-phi3"
    entry = find("Mini-InternVL2-4B-DA-Medical")
    with hub_mirror(source, entry.hub_id) as endpoint:
        fetched = pocketvl(
            "models", "fetch", entry.name, "--dest", str(tmp_path), "--endpoint", endpoint
        )
    assert fetched.returncode == 0, fetched.stderr
    assert "names and shapes match the architecture" in fetched.stdout
    unknown = pocketvl("models", "fetch", "Mini-InternVL2-8B-DA-RS")
    assert unknown.returncode == 2
    assert "not in the catalog" in unknown.stderr


@pytest.mark.parametrize("backbone", ["qwen2", "internlm2", "phi3"])
def test_verify_accepts_each_tiny_backbone(checkpoint_root: Path, backbone: str) -> None:
    lines = verify_checkpoint(checkpoint_root / f"tiny-internvl2-{backbone}")
    assert any(f"{backbone} LLM" in line for line in lines)


def test_verify_names_the_problem(tmp_path: Path, checkpoint_root: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint_root / "tiny-internvl2-qwen2", broken)
    config = json.loads((broken / "config.json").read_text())
    config["llm_config"]["num_hidden_layers"] = 3  # the weights have 2 layers
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(PocketvlError, match="missing"):
        verify_checkpoint(broken)
    (broken / "model.safetensors").unlink()
    result = pocketvl("models", "verify", str(broken))
    assert result.returncode == 2
    assert "no *.safetensors" in result.stderr
