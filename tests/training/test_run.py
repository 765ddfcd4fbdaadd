"""A whole (tiny) run in process: outputs, best-epoch export, one test evaluation, logs, card."""

import json

import numpy as np
import pytest
import torch

from par_prompt import PromptPARModel, PromptPARProcessor, compute_par_metrics
from par_prompt.training import PromptPARTrainer, TrainingError, train, trainable_state_dict
from par_prompt.training.checkpoint import TRAINABLE_STATE_FILE
from par_prompt.fileio import read_safetensors

from .conftest import tiny_arguments, train_tiny


@pytest.fixture(scope="module")
def finished(tiny_backbones, tiny_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    return out, train_tiny(tiny_backbones, tiny_data_dir, out, epochs=3, save_total_limit=3)


def test_output_layout(finished):
    out, result = finished
    assert result.best_dir == out / "best"
    for name in ("config.json", "clip_adapter/adapter_model.safetensors", "promptpar_head.safetensors", "README.md"):
        assert (out / "best" / name).is_file(), name
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-1", "epoch-2", "epoch-3"]
    assert (out / "metrics.json").is_file() and (out / "training_args.json").is_file()


def test_best_epoch_is_the_best_validation_epoch_and_is_what_was_exported(finished):
    out, result = finished
    summary = json.loads((out / "metrics.json").read_text())
    history = [row["mA"] for row in summary["validation"]]
    assert len(history) == 3
    assert summary["best_epoch"] == int(np.argmax(history)) + 1 == result.best_epoch
    assert summary["best_value"] == max(history)

    exported = PromptPARModel.from_pretrained(out / "best")
    saved = read_safetensors(out / "checkpoints" / f"epoch-{result.best_epoch}" / TRAINABLE_STATE_FILE, "ckpt")
    state = trainable_state_dict(exported)
    assert set(state) == set(saved)
    for name, tensor in saved.items():
        assert torch.equal(state[name], tensor), name


def test_test_split_is_evaluated_once_with_the_exported_adapter(finished, tiny_data_dir):
    from par_prompt.data import ImageTransform, load
    from par_prompt.evaluation import collect_predictions
    from par_prompt.training import ImageSplit

    out, result = finished
    summary = json.loads((out / "metrics.json").read_text())
    model = PromptPARModel.from_pretrained(out / "best")
    data = load(str(tiny_data_dir))
    labels = np.asarray(data.splits["test"]["labels"])
    processor = PromptPARProcessor.from_pretrained(out / "best")  # exported with the model
    split = ImageSplit(data.splits["test"], ImageTransform.from_processor(processor.image_processor), labels)
    probs, gathered = collect_predictions(model, torch.utils.data.DataLoader(split, batch_size=8))
    expected = compute_par_metrics(probs, gathered, threshold=0.5)
    assert summary["test"]["split"] == "test" and summary["test"]["threshold"] == 0.5
    assert summary["test"]["mA"] == pytest.approx(expected.mA) == result.test_metrics.mA
    assert "validation" not in json.dumps(summary["test"])  # the test block holds test metrics only


def test_json_lines_log_and_model_card(finished):
    out, _ = finished
    lines = [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert "config" in lines[0] and lines[0]["config"]["epochs"] == 3
    steps = [line for line in lines if "train/loss" in line]
    assert steps and all(np.isfinite(line["train/loss"]) for line in steps)
    assert [line["step"] for line in steps] == sorted(line["step"] for line in steps)
    assert sum("validation/mA" in line for line in lines) == 3
    assert any("test/mA" in line for line in lines)
    card = (out / "best" / "README.md").read_text()
    assert "mA" in card and "promptpar" in card.lower()


def test_a_second_run_into_the_same_directory_is_refused(finished, tiny_backbones, tiny_data_dir):
    out, _ = finished
    with pytest.raises(TrainingError, match="--resume latest"):
        train(*tiny_arguments(tiny_backbones, tiny_data_dir, out))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-1", "epoch-2", "epoch-3"]


def test_fp16_on_cpu_falls_back_with_a_warning(tiny_backbones, tiny_data_dir, tmp_path):
    trainer = PromptPARTrainer(*tiny_arguments(tiny_backbones, tiny_data_dir, tmp_path, mixed_precision="fp16"))
    with pytest.warns(UserWarning, match="fp16 is not supported on CPU"):
        accelerator = trainer._make_accelerator()
    assert accelerator.mixed_precision == "no"


def test_bf16_autocast_trains_on_cpu(tiny_backbones, tiny_data_dir, tmp_path, single_thread):
    result = train(*tiny_arguments(tiny_backbones, tiny_data_dir, tmp_path / "out", epochs=1,
                                   mixed_precision="bf16"))
    assert np.isfinite(result.validation_history[0]["train_loss"])
    assert (tmp_path / "out" / "best" / "promptpar_head.safetensors").is_file()


def test_gradient_accumulation_counts_updates(tiny_backbones, tiny_data_dir, tmp_path, single_thread):
    # 24 images, batch 4: 6 forward steps per epoch, 3 updates with 2 accumulation steps
    result = train(*tiny_arguments(tiny_backbones, tiny_data_dir, tmp_path / "out", epochs=1,
                                   gradient_accumulation_steps=2))
    assert result.validation_history[0]["global_step"] == 3
    state = json.loads((tmp_path / "out" / "checkpoints" / "epoch-1" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
