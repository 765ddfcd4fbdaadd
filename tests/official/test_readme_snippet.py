"""The README's fine-tuning snippet for an imported official checkpoint runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image

from par_prompt import PromptPARModel, PromptPARProcessor
from par_prompt.data import ParData, save
from par_prompt.official import OFFICIAL_TABLES, load_official_checkpoint, save_official_model

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_finetune_snippet_runs_as_written(official, bpe_file, tmp_path):
    snippet = re.search(r"<!-- snippet: official-finetune -->\s*```python\n(.*?)```", README, re.S).group(1)
    table = OFFICIAL_TABLES["pa100k"]
    order = list(reversed(table.attributes))  # converted data in another order than the official heads
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40, 16, 3), dtype=np.uint8)) for _ in range(5)]
    split = datasets.Dataset.from_dict({"image": images, "labels": rng.integers(0, 2, (5, 26)).tolist()})
    split = split.cast_column("image", datasets.Image())
    save(ParData(datasets.DatasetDict({"train": split}), order, list(reversed(table.sentences)), "pa100k"),
         tmp_path / "data" / "peta")
    model, processor = load_official_checkpoint(official.path, attribute_order=order, clip_tokenizer=bpe_file)
    save_official_model(model, processor, tmp_path / "promptpar-peta", bundle_base=True)

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home"))
    run = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    tuned = PromptPARModel.from_pretrained(tmp_path / "promptpar-peta-finetuned")
    assert tuned.config.attributes == order
    assert PromptPARProcessor.from_pretrained(tmp_path / "promptpar-peta-finetuned").image_processor.do_pad is False
    assert tuned.config.threshold == 0.45 and tuned.config.visual_post_layernorm is False
    assert not torch.equal(tuned.heads.weight, model.heads.weight)  # it trained
