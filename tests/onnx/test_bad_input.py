"""Bad input to the ONNX export and predictor: one line that names the problem and the fix
(exit code 2 on the command line), and nothing written."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import onnx
import pytest

from par_prompt.onnx import INSTALL_COMMAND, MissingExtraError, ONNXPromptPARPredictor, export_onnx
from par_prompt.onnx import export as export_module

from .conftest import run_cli


def one_error_line(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("par-prompt "), err
    for word in words:
        assert word in lines[0], (word, lines[0])


# ----------------------------------------------------------------------------- export


def test_exporting_something_else_than_a_promptpar_model(model, tmp_path):
    with pytest.raises(TypeError, match="exports a PromptPARModel, got CLIPModel; load one with"):
        export_onnx(model.clip_model, tmp_path / "clip.onnx", processor=None)
    assert list(tmp_path.iterdir()) == []


def test_export_cli_refuses_a_folder_that_is_not_a_promptpar_model(backbones, tmp_path):
    code, out, err = run_cli("export", "onnx", "--model", backbones.clip, "--out", tmp_path / "m.onnx")
    assert code == 2 and out == ""
    one_error_line(err, "export onnx: error:", "not a PromptPAR model")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("opset", [17, 24, True, "20"])
def test_unsupported_opsets(model, processor, tmp_path, opset):
    with pytest.raises(ValueError, match="is not supported: use 18 to 23"):
        export_onnx(model, tmp_path / "m.onnx", processor=processor, opset=opset)


@pytest.mark.parametrize("opset", ["9", "30"])
def test_unsupported_opsets_on_the_cli(model_dir, tmp_path, opset):
    code, _, err = run_cli("export", "onnx", "--model", model_dir, "--out", tmp_path / "m.onnx", "--opset", opset)
    assert code == 2
    one_error_line(err, f"opset {opset} is not supported: use 18 to 23 (default 20)")


def test_export_without_a_processor(model, processor, tmp_path):
    with pytest.raises(ValueError, match=r"needs the model's processor.*processor=PromptPARProcessor"):
        export_onnx(model, tmp_path / "m.onnx")
    from par_prompt import PromptPARImageProcessor

    with pytest.raises(ValueError, match="resizes images to 64"):  # one for another model is refused too
        export_onnx(model, tmp_path / "m.onnx", processor=PromptPARImageProcessor(size=64))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where, words", [
    ("missing/m.onnx", "does not exist"),
    ("folder", "is a directory"),
    ("m.safetensors", "must end in .onnx"),
])
def test_unwritable_out(model_dir, tmp_path, where, words):
    (tmp_path / "folder").mkdir()
    code, _, err = run_cli("export", "onnx", "--model", model_dir, "--out", tmp_path / where)
    assert code == 2
    one_error_line(err, words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_a_failed_export_keeps_the_old_file_and_leaves_no_partial_one(model, processor, tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"the previous export")
    monkeypatch.setitem(export_module.TOLERANCE, "fp32", -1.0)  # every check fails
    with pytest.raises(RuntimeError, match="the file was not written"):
        export_onnx(model, path, processor=processor)
    assert path.read_bytes() == b"the previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


# ------------------------------------------------------------------------------ extra


@pytest.mark.parametrize("missing", ["onnx", "onnxscript", "onnxruntime"])
def test_missing_extra_on_export(model, processor, model_dir, tmp_path, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # import raises ImportError
    with pytest.raises(MissingExtraError, match=f"needs the {missing} package.*" + re.escape(INSTALL_COMMAND)):
        export_onnx(model, tmp_path / "m.onnx", processor=processor)
    code, _, err = run_cli("export", "onnx", "--model", model_dir, "--out", tmp_path / "m.onnx")
    assert code == 2
    one_error_line(err, missing, 'pip install "par-prompt[onnx]"')
    assert list(tmp_path.iterdir()) == []


def test_missing_onnxruntime_on_predict(onnx_path, image_list, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtraError, match="onnxruntime"):
        ONNXPromptPARPredictor.from_file(onnx_path)
    code, _, err = run_cli("predict", "--onnx", onnx_path, image_list[0])
    assert code == 2
    one_error_line(err, "predict: error:", 'pip install "par-prompt[onnx]"')


def test_the_package_imports_without_the_extra():
    script = (
        "import sys\n"
        "for name in ('onnx', 'onnxruntime', 'onnxscript'): sys.modules[name] = None\n"
        "import par_prompt, par_prompt.onnx, par_prompt.cli\n"
        "from par_prompt.onnx import ONNXPromptPARPredictor, MissingExtraError\n"
        "par_prompt.cli.build_parser()\n"
        "try:\n"
        "    ONNXPromptPARPredictor.from_file('model.onnx')\n"
        "except MissingExtraError as error:\n"
        "    print(error)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert INSTALL_COMMAND in result.stdout and len(result.stdout.strip().splitlines()) == 1


# -------------------------------------------------------------------------- predictor


@pytest.mark.parametrize("content, words", [
    (None, "does not exist"),
    (b"this is not protobuf", "is not a readable ONNX model"),
])
def test_predictor_on_a_file_that_is_not_an_onnx_model(tmp_path, image_list, content, words):
    path = tmp_path / "m.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises((OSError, ValueError), match=words):
        ONNXPromptPARPredictor.from_file(path)
    code, _, err = run_cli("predict", "--onnx", path, image_list[0])
    assert code == 2
    one_error_line(err, words)


def test_predictor_on_an_onnx_model_not_written_by_par_prompt(onnx_path, tmp_path):
    proto = onnx.load(onnx_path)
    del proto.metadata_props[:]
    onnx.save(proto, tmp_path / "other.onnx")
    with pytest.raises(ValueError, match="not an ONNX model written by par-prompt .*par-prompt export onnx"):
        ONNXPromptPARPredictor.from_file(tmp_path / "other.onnx")


@pytest.mark.parametrize("key, value, words", [
    ("par_prompt.attributes", '["a", "b"]', "got 6 sentences for 2 attributes"),
    ("par_prompt.threshold", "1.5", "threshold must lie in [0, 1]"),
    ("par_prompt.image_processor", "{not json", "is not valid JSON"),
    ("par_prompt.format", "99", "format '99'"),
    ("par_prompt.config", "[1, 2]", "par_prompt.config is not a JSON object"),
    ("par_prompt.config", '{"fusion_layers": -1}', "fusion_layers must be 0 (MLP) or a positive integer"),
])
def test_predictor_on_damaged_metadata(onnx_path, tmp_path, key, value, words):
    proto = onnx.load(onnx_path)
    props = {p.key: p.value for p in proto.metadata_props}
    onnx.helper.set_model_props(proto, {**props, key: value})
    onnx.save(proto, tmp_path / "damaged.onnx")
    with pytest.raises(ValueError, match=re.escape(words)):
        ONNXPromptPARPredictor.from_file(tmp_path / "damaged.onnx")


def test_predict_on_cuda_without_a_cuda_onnxruntime(onnx_path, image_list):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; the error case cannot happen here")
    code, _, err = run_cli("predict", "--onnx", onnx_path, "--device", "cuda", image_list[0])
    assert code == 2
    one_error_line(err, "CUDA")  # ONNX Runtime's providers, or (checked first) torch's device
