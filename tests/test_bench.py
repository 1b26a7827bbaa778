"""The benchmark command: schema of its JSON, every figure beside a baseline, each section's logic.

Timings are never asserted (they depend on the machine); what is checked is that every figure
is a positive number with its baseline and ratio, that the sections report what they measured
on (or why they were skipped), and that the Grad-CAM fast path it times equals the backward one.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import nbformat
import pytest
import torch

from tools.bench import harness as bench
from xray_utils.cli.run import list_notebooks
from xray_utils.config import paper

TOP_KEYS = {"machine", "data", "training", "training_path", "inference", "gpu", "notebooks",
            "quick"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One run of ``bench --tiny`` through the command line, with an empty run folder (so no
    trained checkpoints and no demo run are found)."""
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "bench.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XRAY_RUN_DIR", str(tmp / "run"))
        before = torch.get_num_threads()
        rc = bench.main(["--tiny", "--json", str(out), "--no-progress", "--no-compile"])
        after = torch.get_num_threads()
    return {"rc": rc, "results": json.loads(out.read_text()), "threads": (before, after)}


def _check_figure(where: str, fig: dict) -> None:
    for key in ("value", "baseline", "ratio"):
        v = fig[key]
        assert isinstance(v, (int, float)) and math.isfinite(v) and v > 0, (where, key, v)
    assert fig["ratio"] == pytest.approx(fig["value"] / fig["baseline"]), where
    assert fig["unit"] in ("s", "images/s"), where
    assert fig["label"] and fig["baseline_label"], where
    if "goal" in fig:
        assert isinstance(fig["meets_goal"], bool), where


def test_tiny_run_succeeds_with_the_documented_schema(tiny_run):
    assert tiny_run["rc"] == 0
    r = tiny_run["results"]
    assert TOP_KEYS <= set(r)
    assert r["quick"] is True and r["preset"] == "tiny"
    assert bench.failed_sections(r) == []
    m = r["machine"]
    assert m["cpu_count"] >= 1 and m["torch_threads"] >= 1 and m["device"]
    assert m["threads"]["chosen_threads"] in (1, m["cpu_count"], m["torch_threads"])
    # the bench leaves torch's thread setting as it found it
    assert tiny_run["threads"][0] == tiny_run["threads"][1]


def test_every_figure_is_positive_with_baseline_and_ratio(tiny_run):
    figures = list(bench.iter_figures(tiny_run["results"]))
    assert len(figures) >= 20
    for where, fig in figures:
        _check_figure(where, fig)


def test_each_section_has_its_figures(tiny_run):
    r = tiny_run["results"]
    cfg = bench.PRESETS["tiny"]
    for size in cfg.sizes:
        d = r["data"][f"{size}px"]
        for key in ("cache_raw", "cache_loader_train", "cache_loader_eval", "cache_batched",
                    "to_model_input_batched"):
            assert key in d, (size, key)
        assert set(d["decode_images_per_s"]) <= {"jpeg", "png", "dicom"}
        assert d["cache_raw"]["goal"] == f"ratio >= {bench.GOAL_CACHE_SPEEDUP:g}"
        t = r["training"][f"{size}px"]["loader_vs_bare"]
        assert 0 <= t["fetch_share"] <= 1
        assert t["overhead"] == pytest.approx(1 / t["ratio"] - 1)
        assert r["training"][f"{size}px"]["fetch_vs_step"]["goal"] == (
            f"ratio <= {bench.GOAL_LOADER_OVERHEAD:g}")
    inf = r["inference"]
    assert {"p50", "p95", "p50_heatmaps", "p50_array"} <= set(inf["batch_1"])
    assert inf[f"batch_{cfg.batch_files}"]["files"] == cfg.batch_files
    assert inf["film"]["stage"] == "chest" and inf["film"]["models_run"] == 3
    assert inf["batch_1"]["p50"]["goal"] == f"ratio <= {bench.GOAL_DIAGNOSE_RATIO:g}"
    assert {"vs_forward", "vs_backward_loop", "vs_backward_batched"} <= set(inf["gradcam"])


def test_training_path_trains_the_same_model_as_the_bare_loop(tiny_run):
    """train_task and the bare loop: same seed, same batches -> the same weights, both timed."""
    cfg = bench.PRESETS["tiny"]
    for size in cfg.path_sizes:
        row = tiny_run["results"]["training_path"][f"{size}px"]
        assert row["train_images"] == cfg.path_steps * cfg.path_batch
        assert row["max_abs_weight_difference"] == 0.0
        fig = row["project_vs_bare"]
        assert fig["goal"] == f"ratio >= {bench.GOAL_TRAINING_PATH:g}"
        assert len(fig["project_s"]) == len(fig["bare_s"]) == cfg.path_repeats


def test_missing_checkpoints_and_demo_run_are_said(tiny_run):
    r = tiny_run["results"]
    assert "untrained" in r["inference"]["note"]
    assert r["inference"]["image_sizes"] == {t: bench.PRESETS["tiny"].untrained_size
                                             for t in paper.TASKS}
    assert "no demo run" in r["notebooks"]["skipped"]
    if not torch.cuda.is_available():
        assert "no CUDA GPU" in r["gpu"]["skipped"]


def test_timed_gradcam_fast_path_equals_backward_gradcam(tiny_run):
    cam = tiny_run["results"]["inference"]["gradcam"]
    assert cam["classes"] == len(paper.FINDINGS)
    assert cam["max_abs_diff_vs_backward"] < 1e-4


def test_table_lists_every_figure(tiny_run):
    table = bench.format_table(tiny_run["results"])
    for _, fig in bench.iter_figures(tiny_run["results"]):
        assert fig["label"] in table
    assert "no demo run" in table


def test_gpu_variants_run_on_any_device():
    """The GPU section's code, on the CPU at a tiny size (the compile variant left out)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = bench.gpu_training(torch.device("cpu"), image_size=32, batch=2, steps=1,
                                 warmup=1, compile=False, progress=False)
    finally:
        torch.set_num_threads(before)
    names = ["fp32", "bfloat16_autocast", "channels_last_bfloat16"]
    for name in names:
        assert "error" not in out[name], out[name]
        assert out[name]["images_per_s"] > 0
    assert "vs_fp32" not in out["fp32"]
    for name in names[1:]:
        _check_figure(name, out[name]["vs_fp32"])
    assert out["compile_channels_last_bfloat16"] == {"skipped": "--no-compile"}


def _fake_executed(path: Path, duration: float, cell_times: list[float], failed: bool = False):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# title")]
    for k, d in enumerate(cell_times):
        cell = nbformat.v4.new_code_cell(f"step_{k}()")
        cell.metadata["papermill"] = {"duration": d, "status": "completed"}
        nb.cells.append(cell)
    nb.metadata["papermill"] = {"duration": duration, "end_time": "2025-01-01T00:00:00",
                                "exception": failed}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def test_notebook_times_come_from_papermill_metadata(tmp_path):
    names = [p.name for p in list_notebooks()]
    out_dir = tmp_path / "run" / "notebooks"
    _fake_executed(out_dir / names[0], 12.5, [1.0, 9.0, 2.0])
    _fake_executed(out_dir / names[1], 3.0, [0.5], failed=True)
    res = bench.bench_notebooks(run_dir=tmp_path / "run")
    first = res["notebooks"][names[0]]
    assert first["seconds"] == 12.5 and first["status"] == "ok"
    assert first["slowest_cell"] == {"cell": 3, "seconds": 9.0, "source": "step_1()"}
    assert res["notebooks"][names[1]]["status"] == "failed"
    assert res["total_s"] == 15.5
    assert res["missing"] == names[2:]


def test_no_demo_run_is_reported_not_rerun(tmp_path):
    res = bench.bench_notebooks(run_dir=tmp_path / "nothing")
    assert "no demo run" in res["skipped"] and "notebooks" not in res


def test_generated_sources_when_no_real_samples(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAY_REAL_SAMPLES", str(tmp_path / "absent"))
    assert bench.labelled_folder_dir() is None
    cfg = bench.PRESETS["tiny"]
    sources, origin = bench.collect_sources(cfg, tmp_path / "src")
    assert "generated" in origin
    fmts = [s.fmt for s in sources]
    assert fmts.count("jpeg") == cfg.jpeg_files and fmts.count("png") == cfg.png_files
    assert all(Path(s.path).is_file() for s in sources)
    manifest = bench.write_manifest(sources, tmp_path / "m.csv")
    from xray_utils.data.manifests import read_task_manifest

    df = read_task_manifest(manifest)
    assert set(df["label"]) == set(paper.XRAY_OR_NOT_CLASSES) and set(df["split"]) == {"train"}


def test_failed_sections_are_found_also_in_the_thread_comparison():
    assert bench.failed_sections({"machine": {"threads": {"error": "x"}}, "data": {},
                                  "gpu": {"error": "y"}, "quick": True}) == ["gpu", "threads"]


def test_figure_ratio_and_goal():
    f = bench.figure("x", 30.0, 1.5, "images/s", "base", (">=", 20))
    assert f["ratio"] == 20.0 and f["meets_goal"] is True
    g = bench.figure("y", 3.0, 1.0, "s", "base", ("<=", 1.5))
    assert g["meets_goal"] is False
    with pytest.raises(ValueError, match="positive"):
        bench.figure("z", 0.0, 1.0, "s", "base")


def test_command_line(tmp_path):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    bench.add_parser(sub)
    args = parser.parse_args(["bench", "--quick", "--json", "x.json", "--no-compile"])
    assert args.func is bench.run and args.quick and args.no_compile and args.json == "x.json"
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--quick", "--tiny"])
    from xray_utils.cli import build_parser

    args = build_parser(["bench", "--tiny"]).parse_args(["bench", "--tiny"])
    assert args.func is bench.run and args.tiny
    # an explicit checkpoints folder that does not exist is a usage error, found before measuring
    assert bench.main(["--tiny", "--checkpoints", str(tmp_path / "none")]) == 2


def test_gpu_check_without_a_gpu_says_so_in_one_sentence_and_exits_0(monkeypatch, capsys,
                                                                     tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench.main(["--gpu", "--json", str(tmp_path / "gpu.json")]) == 0
    out = capsys.readouterr().out.strip()
    assert out == bench.NO_GPU_SENTENCE and out.count(". ") == 0
    assert not (tmp_path / "gpu.json").exists()
