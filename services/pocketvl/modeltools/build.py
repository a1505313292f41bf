"""``pocketvl models build``: one checkpoint directory -> its Triton model entries.

``torch``: the Python-backend model of ``repository.py`` (same generator, same template).
``trtllm``: the three models of ``trtllm_repository.py`` plus ``<engines>/<name>/build.sh``,
the conversion and ``trtllm-build`` commands to run inside the pinned NGC container. The
tile budget (hence ``max_multimodal_len``) is the largest the checkpoint's domain uses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pocketvl.media.options import DecodeOptions
from pocketvl.modeltools import repository, trtllm_repository
from pocketvl.modeltools.catalog import find
from pocketvl.serving.checkpoint import CheckpointInfo, read_checkpoint_info

Engine = Literal["torch", "trtllm"]
VIDEO_FRAMES = DecodeOptions(max_pixels=1).video_frames  # BDD clips: frames of one tile each


@dataclass(frozen=True)
class Built:
    model_dirs: list[Path]
    script: Path | None
    tiles_per_request: int


def model_name(checkpoint_dir: Path) -> str:
    """The Triton model the worker's routes name for this checkpoint directory."""
    tiny = {ckpt: model for model, ckpt in repository.TINY.items()}
    if checkpoint_dir.name in tiny:
        return tiny[checkpoint_dir.name]
    try:
        return find(checkpoint_dir.name).triton_model
    except KeyError:
        return checkpoint_dir.name.lower().replace("-", "_").replace(".", "_")


def tiles_per_request(checkpoint_dir: Path, info: CheckpointInfo) -> int:
    """The most tiles one request of this checkpoint's domain carries, thumbnail included."""
    try:
        entry = find(checkpoint_dir.name)
    except KeyError:
        max_tiles, family = info.max_dynamic_patch, ""
    else:
        max_tiles, family = entry.max_tiles, entry.da
    if family == "BDD":
        return VIDEO_FRAMES  # one tile per frame, no thumbnail
    return max_tiles + 1 if info.use_thumbnail and max_tiles > 1 else max_tiles


def build_torch(checkpoint_dir: Path, out: Path, options: repository.RepositoryOptions) -> Built:
    info = read_checkpoint_info(checkpoint_dir)  # refuse what the engine cannot serve
    name = model_name(checkpoint_dir)
    note = f"{checkpoint_dir.name}: {info.llm_type} LLM, {info.template.name} template"
    text = repository.render_config(name, checkpoint_dir.name, options, note)
    (out / name / "1").mkdir(parents=True, exist_ok=True)
    (out / name / "config.pbtxt").write_text(text)
    (out / name / "1" / "model.py").write_text(repository.MODEL_PY)
    tiles = tiles_per_request(checkpoint_dir, info)
    return Built([out / name], None, tiles)


def build_trtllm(
    checkpoint_dir: Path, out: Path, engines: Path, options: trtllm_repository.TrtllmOptions
) -> Built:
    info = read_checkpoint_info(checkpoint_dir)
    name = model_name(checkpoint_dir)
    tiles = tiles_per_request(checkpoint_dir, info)
    sizing = trtllm_repository.engine_sizing(
        tiles, info.max_dynamic_patch, info.tokens_per_tile, options
    )
    hidden = int(info.raw_config["llm_config"]["hidden_size"])
    configs = trtllm_repository.repository_configs(
        name, checkpoint_dir.name, sizing, hidden, options
    )
    dirs = []
    for model, text in configs.items():
        (out / model / "1").mkdir(parents=True, exist_ok=True)
        (out / model / "config.pbtxt").write_text(text)
        dirs.append(out / model)
    (out / name / "1" / "model.py").write_text(trtllm_repository.MODEL_PY)
    # The plan is built into the engines volume; the repository links to where it will be
    # inside the container (the link dangles on the host until then).
    plan = out / f"{name}_vision" / "1" / "model.plan"
    if plan.is_symlink() or plan.exists():
        plan.unlink()
    os.symlink(f"{trtllm_repository.ENGINES}/{name}/vision/model.engine", plan)
    script = engines / name / "build.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        trtllm_repository.build_script(name, checkpoint_dir.name, info.llm_type, sizing, options)
    )
    script.chmod(0o755)
    return Built(dirs, script, tiles)
