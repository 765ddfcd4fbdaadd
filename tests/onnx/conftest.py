"""Shared fixtures for the ONNX tests: a tiny saved PromptPAR model (as the inference
tests build it), its ONNX exports, and sample images.

Each export takes seconds (torch.export traces the whole forward), so the exports are
made once per session and shared by the tests that only read them."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch

from par_prompt import PromptPARPredictor
from par_prompt.cli import main

# The inference tests' fixtures, registered here again: each folder gets its own session
# instances (``model`` and ``processor`` load this folder's ``model_dir``).
from ..inference.conftest import backbones, build_tiny_model, model, processor, random_image, save_tiny_model

__all__ = ["backbones", "model", "processor", "random_image"]


def run_cli(*argv) -> tuple[int, str, str]:
    """``par-prompt ARGV`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit:  # argparse's own errors
            code = exit.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, backbones) -> Path:
    """A saved tiny model (4 regions, 2 prompts per group, one MM-Former layer)."""
    directory = tmp_path_factory.mktemp("model") / "promptpar"
    with torch.random.fork_rng():  # the prompts and projections are drawn from the global RNG
        torch.manual_seed(0)
        save_tiny_model(build_tiny_model(backbones), directory, backbones)
    return directory


@pytest.fixture(scope="session")
def torch_predictor(model, processor) -> PromptPARPredictor:
    """The PyTorch predictor of the same model, to compare with."""
    return PromptPARPredictor(model, processor)


@pytest.fixture(scope="session")
def cli_export(tmp_path_factory, model_dir) -> tuple[Path, str]:
    """The tiny model exported by ``par-prompt export onnx`` (fp32, default opset):
    (the file, what the command printed)."""
    path = tmp_path_factory.mktemp("onnx") / "promptpar.onnx"
    code, out, err = run_cli("export", "onnx", "--model", model_dir, "--out", path)
    assert code == 0, err
    return path, out


@pytest.fixture(scope="session")
def onnx_path(cli_export) -> Path:
    return cli_export[0]


@pytest.fixture(scope="session")
def predictor(onnx_path):
    from par_prompt.onnx import ONNXPromptPARPredictor

    return ONNXPromptPARPredictor.from_file(onnx_path)


@pytest.fixture(scope="session")
def image_list(tmp_path_factory) -> list:
    """Five pedestrian-shaped images: three files (PNG, JPEG, grey PNG) and two PIL images."""
    directory = tmp_path_factory.mktemp("images")
    paths = [directory / "a.png", directory / "b.jpg", directory / "c.png"]
    random_image(64, 32, "RGB", seed=11).save(paths[0])
    random_image(70, 30, "RGB", seed=12).save(paths[1], quality=90)
    random_image(40, 48, "L", seed=13).save(paths[2])
    return [*paths, random_image(90, 40, "RGBA", seed=14), random_image(32, 32, "RGB", seed=15)]
