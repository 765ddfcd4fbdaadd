"""The training benchmarks run (tiny sizes) on this CPU, so they do not rot before a GPU is at hand."""

import json

from .conftest import ROOT, python, run_training


def test_gpu_script_smoke_runs_on_cpu(tmp_path):
    env_out = tmp_path / "out"
    result = run_training(["env", f"OUT={env_out}", python(), str(ROOT / "benchmarks" / "gpu_l14_bf16.py"),
                           "--smoke"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((env_out / "gpu_l14_bf16_smoke.json").read_text())
    assert report["train"]["images_per_second"] > 0 and report["inference"]["images_per_second"] > 0
    assert "train:" in result.stdout and "inference:" in result.stdout


def test_train_benchmark_runs_the_tiny_model(tmp_path):
    out = tmp_path / "bench.json"
    result = run_training([python(), str(ROOT / "benchmarks" / "bench_train.py"), "--models", "tiny", "--steps", "1",
                           "--warmup", "0", "--json", str(out)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (report,) = json.loads(out.read_text())
    assert report["model"] == "tiny" and report["batch_size"] == 32 and report["images_per_second"] > 0
    assert report["peak_memory_mib"] > 0
