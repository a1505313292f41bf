"""The GPU check script: its FLOP floor, its skip on machines without CUDA, and one run of the
whole measuring path on the tiny checkpoints (CPU; the numbers mean nothing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from bench import flop_floor, gpu_check


def test_the_floor_reproduces_the_reference_figures() -> None:
    # serving_and_consumption.md §3.2: a 13-tile DriveLM request is ~9.4 TFLOP of ViT and
    # 2.4 / 10 / 24 TFLOP of LLM prefill for its image tokens (1B / 2B / 4B).
    assert flop_floor.vision_flops("1b", 13) / 1e12 == pytest.approx(9.44, abs=0.01)
    prefill = [flop_floor.llm_flops(size, 13 * 256) / 1e12 for size in ("1b", "2b", "4b")]
    assert prefill == pytest.approx([2.38, 10.05, 24.09], abs=0.01)
    # ~430 one-tile requests/s for 1B on an H100 at 40 % of peak (same section).
    per_request = flop_floor.request_flops("1b", 1, 256, 0)
    assert 0.4 * 989e12 / per_request == pytest.approx(430, rel=0.03)


def test_peak_is_known_only_for_the_gpus_the_reference_quotes() -> None:
    assert flop_floor.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert flop_floor.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert flop_floor.peak_tflops("NVIDIA L4") is None


def test_without_cuda_it_says_why_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path)]) == 0
    assert "skipped: no CUDA device" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_the_sweep_stops_at_out_of_memory_and_keeps_what_it_measured() -> None:
    def measure(batch: int) -> dict[str, Any]:
        if batch >= 8:
            raise torch.cuda.OutOfMemoryError("out of memory")
        return {"batch": batch, "seconds": 1.0, "requests_per_s": float(batch)}

    rows = gpu_check.sweep(measure, [1, 2, 4, 8, 16])
    assert [r["batch"] for r in rows] == [1, 2, 4, 8] and "error" in rows[-1]
    summary = gpu_check.summarise(rows, "requests_per_s")
    assert summary["batch_1"]["batch"] == 1 and summary["best"]["batch"] == 4


def test_one_run_on_the_tiny_checkpoints(tmp_path: Path) -> None:
    argv = ["--device", "cpu", "--tiny", "--sizes", "1b", "--batches", "1", "2"]
    argv += ["--tile-batches", "1", "2", "--new-tokens", "2", "--peak-tflops", "1"]
    assert gpu_check.main([*argv, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu-check-cpu.json").read_text())
    assert report["device"] == "cpu" and report["weights"] == "tiny checkpoints"
    result = report["sizes"]["1b"]
    assert result["vision"]["best"]["tiles_per_s"] > 0
    tiles = {name: shape["tiles"] for name, shape in result["requests"].items()}
    assert tiles == {"drivelm_2688x896": 13, "rs_dior_800x800": 5, "rs_vqa_256x256": 1}
    for shape in result["requests"].values():
        assert shape["batch_1"]["batch"] == 1 and shape["best"]["fraction_of_peak"] > 0
    assert "| 1b | drivelm_2688x896 req/s |" in (tmp_path / "gpu-check-cpu.md").read_text()
