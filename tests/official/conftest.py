"""An official-format checkpoint of a small random PromptPAR model, its BPE file and test images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from par_prompt.official import OFFICIAL_TABLES

from .builders import (
    OfficialFile, Sizes, bpe_merges, official_classifier_state, official_clip_state, reference_tokenizer,
    save_official, vocabulary, write_bpe_file,
)


@pytest.fixture(scope="session")
def merges():
    return bpe_merges()


@pytest.fixture(scope="session")
def bpe_file(tmp_path_factory, merges):
    return write_bpe_file(tmp_path_factory.mktemp("bpe") / "bpe_simple_vocab_16e6.txt.gz", merges)


@pytest.fixture(scope="session")
def sizes(merges):
    return Sizes(vocab=len(vocabulary(merges)))


@pytest.fixture(scope="session")
def tokenizer(merges):
    return reference_tokenizer(merges)


@pytest.fixture(scope="session")
def session_monkeypatch():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="session")
def official(tmp_path_factory, sizes, session_monkeypatch) -> OfficialFile:
    """A PA100K-sized (26 heads) checkpoint as train.py writes it (CLIP under 'clip_model')."""
    clip, classifier = official_clip_state(sizes), official_classifier_state(sizes)
    path = save_official(tmp_path_factory.mktemp("official") / "epoch21.pth", session_monkeypatch, clip, classifier)
    return OfficialFile(path, clip, classifier, sizes)


@pytest.fixture(scope="session")
def pa100k_sentences():
    return list(OFFICIAL_TABLES["pa100k"].sentences)


@pytest.fixture(scope="session")
def images():
    """Pedestrian-shaped (tall) and other RGB images of several sizes."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (64, 24, 3), dtype=np.uint8)
    dark = rng.integers(0, 60, (50, 50, 3), dtype=np.uint8)
    ramp = np.broadcast_to(np.linspace(0, 255, 90, dtype=np.uint8)[None, :, None], (37, 90, 3)).copy()
    bright = rng.integers(180, 256, (128, 48, 3), dtype=np.uint8)
    return [Image.fromarray(array) for array in (noise, dark, ramp, bright)]
