"""`par-prompt train`: registered, same options as examples/train_par.py, and every bad
input one line with exit code 2, before anything is written or loaded."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import par_prompt
from par_prompt import cli
from par_prompt.training import DataArguments, ModelArguments, TrainingArguments
from par_prompt.training import cli as train_cli

from .conftest import ROOT, TRAIN_SCRIPT, cli_arguments


def _run(argv, capsys):
    """``par-prompt train ARGV`` in process: (exit code, stdout, stderr)."""
    try:
        code = cli.main(["train", *argv])
    except SystemExit as exit_info:
        code = exit_info.code
    out, err = capsys.readouterr()
    return code, out, err


def test_train_is_a_subcommand_with_the_options_of_the_example(capsys):
    code, out, _ = _run(["--help"], capsys)
    assert code == 0
    for group in (ModelArguments, DataArguments, TrainingArguments):
        for item in dataclasses.fields(group):
            assert f"--{item.name}" in out, item.name
    for flag in ("--recipe", "--config", "--gradient_checkpointing", "--allow_test_selection"):
        assert flag in out
    example = subprocess.run([sys.executable, str(TRAIN_SCRIPT), "--help"], capture_output=True, text=True,
                             env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""})
    assert example.returncode == 0
    strip = lambda text: text.split("options:", 1)[1].split("settings are resolved", 1)[0]  # noqa: E731
    assert strip(example.stdout) == strip(out)  # the very same options


def test_version_and_python_dash_m(capsys):
    code, out, _ = _run(["--version"], capsys)
    assert code == 0 and out.strip() == f"par-prompt {par_prompt.__version__}"
    done = subprocess.run([sys.executable, "-m", "par_prompt", "train", "--version"], capture_output=True,
                          text=True, env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""})
    assert done.returncode == 0 and done.stdout.strip() == f"par-prompt {par_prompt.__version__}"


def test_dashes_and_underscores_give_the_same_settings():
    def parse(argv):
        args = train_cli.build_parser().parse_args(cli.normalize_flags(argv))
        return vars(args)

    dashes = parse(["--batch-size", "8", "--lr-head", "0.5", "--allow-test-selection", "--report-to", "none"])
    underscores = parse(["--batch_size", "8", "--lr_head=0.5", "--allow_test_selection", "--report_to", "none"])
    assert dashes == underscores == {"batch_size": 8, "lr_head": 0.5, "allow_test_selection": True,
                                     "report_to": "none"}


def test_only_the_given_flags_are_in_the_namespace():
    """Defaults live in the dataclasses, so that a flag left out never overrides a recipe or a file."""
    assert vars(train_cli.build_parser().parse_args([])) == {}


def test_the_training_code_is_in_the_package_and_the_example_only_calls_it():
    source = TRAIN_SCRIPT.read_text()
    assert "from par_prompt.training.cli import main" in source
    assert "HfArgumentParser" not in source and "def " not in source


def _tiny(tiny_backbones, tiny_data_dir, tmp_path, **overrides):
    return cli_arguments(tiny_backbones, tiny_data_dir, tmp_path / "out", **overrides)


def _flag(token):
    return token.split("=", 1)[0].replace("_", "-") if token.startswith("--") else None


def _replacing(base, extra):
    """``base`` (flag-value pairs) without the flags ``extra`` gives, then ``extra``: an
    option given twice is an error, so the tests' flags replace the tiny run's."""
    given = {_flag(token) for token in extra} - {None}
    kept = [pair for pair in zip(base[::2], base[1::2]) if _flag(pair[0]) not in given]
    return [token for pair in kept for token in pair] + list(extra)


#: (command-line arguments added to a valid tiny run, a piece of the expected one-line message)
BAD_INPUTS = [
    (["--epochs", "1", "--warmup-epochs", "5"], "--warmup-epochs 5 does not fit in --epochs 1"),
    (["--epochs", "abc"], "argument --epochs: invalid int value: 'abc'"),
    (["--epoch", "3"], "unrecognized arguments: --epoch 3"),
    (["--metric-for-best", "auc"], "invalid choice: 'auc'"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--lr-head", "-1"], "--lr-head must be a positive number"),
    (["--momentum", "1.5"], "--momentum must lie in [0, 1)"),
    (["--save-total-limit", "0"], "--save-total-limit must be at least 1"),
    (["--gl-alpha", "-1"], "gl_alpha must be a finite, non-negative number"),
    (["--threshold", "2"], "threshold must lie in [0, 1]"),
    (["--mixed-precision", "fp8"], "invalid choice: 'fp8'"),
    (["--validation-split", "test"], "--validation-split 'test' is the test split"),
    (["--validation-split", "Test_A"], "--validation-split 'Test_A' is the test split"),
    (["--validation-split", "holdout", "--test-split", "holdout"], "--validation-split 'holdout' is the test split"),
    (["--train-split", "validation"], "--train-split 'validation' is also the validation split"),
    (["--report-to", "wandbb"], "--report-to: unknown tracker 'wandbb'"),
    (["--report-to", "none,jsonl"], "--report-to none cannot be combined"),
    (["--push-to-hub", "not a repo id!"], "--push-to-hub 'not a repo id!' is not a Hub repository id"),
    (["--resume", "latest"], "--resume latest: there is no complete checkpoint"),
    (["--resume", "latest", "--overwrite-output-dir"], "--resume continues the run"),
    (["--recipe", "pa100"], "--recipe 'pa100' is not a recipe; choose from pa100k"),
    (["BARE", "--recipe", "pa100k", "--data-dir", "{data}", "--epochs", "1"],
     "--warmup-epochs 5 does not fit in --epochs 1"),
    (["BARE", "--recipe", "wider"], "--dataset wider names a benchmark but no data"),
    (["--config", "missing.yaml"], "no such file"),
    (["--config", "settings.txt"], "must end in .yaml, .yml or .json"),
    (["--data-dir", "{tmp}/no-such-data"], "no-such-data: no such file or directory"),
    (["--data-dir", "{tmp}"], "could not be loaded"),
    (["--clip", "{tmp}/no-such-clip"], "no-such-clip: no such file or directory"),
    (["--clip", "{tmp}"], "The model cannot be built from --clip"),
    # options that would be ignored in this run
    (["--synthetic-train", "8"], "--synthetic-train applies to the generated synthetic data only"),
    (["--synthetic-seed", "3"], "--synthetic-seed applies to the generated synthetic data only"),
    (["--demo-pretrain-steps", "500"], "--demo-pretrain-steps applies to the demo only"),
    (["--demo-cache-dir", "{tmp}"], "--demo-cache-dir applies to the demo only"),
    (["--hub-private"], "--hub-private applies to the upload only; add --push-to-hub"),
    # an option given twice (argparse would keep the last)
    (["--momentum", "0.8", "--momentum", "0.7"], "--momentum is given twice; give each option once"),
    (["--weight-decay", "0.1", "--weight_decay", "0.2"], "--weight-decay is given twice"),
    # --dataset naming other data than --data-dir holds
    (["--dataset", "pa100k"], "--dataset pa100k names other data than --data-dir"),
]


@pytest.mark.parametrize("extra, message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_exit_2(extra, message, tiny_backbones, tiny_data_dir, tmp_path, capsys,
                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "settings.txt").write_text("epochs: 3\n")
    extra = [value.replace("{tmp}", str(tmp_path)).replace("{data}", str(tiny_data_dir)) for value in extra]
    if extra[0] == "BARE":  # the flags alone, without the valid tiny run
        argv = extra[1:]
    else:
        argv = _replacing(_tiny(tiny_backbones, tiny_data_dir, tmp_path), extra)
    code, out, err = _run(argv, capsys)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("par-prompt train: error: "), err
    assert message in lines[0], lines[0]
    assert "Traceback" not in out + err
    assert not (tmp_path / "out" / "checkpoints").exists()


@pytest.mark.parametrize("content, message", [
    ("epoch: 3\n", "unknown option 'epoch' (did you mean epochs?)"),
    ("epochs: [3\n", "not valid YAML"),
    ("- epochs\n- 3\n", "must hold a mapping"),
    ("momentum: high\n", "momentum must be a number; got 'high'"),
    ("save_total_limit: 2.5\n", "save_total_limit must be an integer; got 2.5"),
    ("mixed_precision: fp32\n", "mixed_precision must be one of no, bf16, fp16; got 'fp32'"),
    ("local_files_only: maybe\n", "local_files_only must be true or false; got 'maybe'"),
    ("recipe: 7\n", "recipe must be a name"),
    ('{"epochs": 3,}', "not valid JSON"),
    ("epochs: 3\nseed: 1\nepochs: 4\n", "key 'epochs' is given twice (lines 1 and 3); keep one"),
    ('{"epochs": 3, "epochs": 4}', "key 'epochs' is given twice; keep one"),
    ("batch-size: 4\nbatch_size: 8\n", "option 'batch_size' is given twice (as 'batch-size' and 'batch_size')"),
])
def test_bad_config_files_are_one_line(content, message, tiny_backbones, tiny_data_dir, tmp_path, capsys):
    path = tmp_path / ("config.json" if content.startswith("{") else "config.yaml")
    path.write_text(content)
    code, _, err = _run([*_tiny(tiny_backbones, tiny_data_dir, tmp_path), "--config", str(path)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert message in err and str(path) in err, err


@pytest.mark.parametrize("where", ["file", "under_a_file", "unwritable"])
def test_an_output_dir_that_cannot_be_one_is_refused_before_anything_runs(where, tiny_backbones, tiny_data_dir,
                                                                          tmp_path, capsys, monkeypatch):
    from par_prompt.training import loop

    def no_data(*args, **kwargs):
        raise AssertionError("data loaded although the output directory is unusable")

    monkeypatch.setattr(loop, "load_training_data", no_data)
    (tmp_path / "file").write_text("keep me")
    out = {"file": tmp_path / "file", "under_a_file": tmp_path / "file" / "out",
           # /sys refuses new entries even to root (a chmod'ed folder would not stop root)
           "unwritable": Path("/sys/par-prompt-test-output")}[where]
    argv = cli_arguments(tiny_backbones, tiny_data_dir, out)
    code, _, err = _run(argv, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert ("is a file" if where != "unwritable" else "cannot be written") in err or "not writable" in err, err
    assert (tmp_path / "file").read_text() == "keep me"


def test_test_selection_needs_the_flag_and_is_recorded():
    from par_prompt.training import PromptPARTrainer

    model = ModelArguments(clip="openai/clip-vit-large-patch14")
    args = (model, DataArguments(dataset="synthetic", validation_split="test"), TrainingArguments())
    with pytest.raises(ValueError, match="--allow-test-selection"):
        PromptPARTrainer(*args)
    trainer = PromptPARTrainer(model, DataArguments(dataset="synthetic", validation_split="test",
                                                    allow_test_selection=True), TrainingArguments())
    assert trainer.selects_on_test
    assert not PromptPARTrainer(model, DataArguments(dataset="synthetic"), TrainingArguments()).selects_on_test


def test_a_nan_loss_is_one_line_with_exit_1(tiny_backbones, tiny_data_dir, tmp_path, capsys, monkeypatch):
    from par_prompt import PromptPARModel

    original = PromptPARModel.forward

    def forward(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        if self.training:
            output.loss = output.loss * float("nan")
        return output

    monkeypatch.setattr(PromptPARModel, "forward", forward)
    code, _, err = _run(_tiny(tiny_backbones, tiny_data_dir, tmp_path), capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "The training loss is nan at global step 1" in err
    log = (tmp_path / "out" / "logs" / "train.log").read_text()
    assert "run stopped: NonFiniteLossError" in log


def test_a_single_settings_file_argument_is_a_config(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(train_cli, "run", lambda args: seen.update(vars(args)) or 0)
    assert train_cli.main([str(tmp_path / "run.yaml")]) == 0
    assert seen == {"config": str(tmp_path / "run.yaml")}
    json.dumps(seen)
