"""Session fixtures: one tiny model and one tiny synthetic data set, saved to disk."""

from __future__ import annotations

import pytest

from .builders import synthetic_data, tiny_model, tiny_processor


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("evaluation")


@pytest.fixture(scope="session")
def data_dir(workdir):
    synthetic_data(workdir / "data")
    return workdir / "data"


@pytest.fixture(scope="session")
def data(data_dir):
    from par_prompt.data import load

    return load(data_dir)


@pytest.fixture(scope="session")
def model(workdir, data):
    return tiny_model(workdir, data.attributes, data.sentences)


@pytest.fixture(scope="session")
def processor(workdir, model):
    return tiny_processor(workdir)


@pytest.fixture(scope="session")
def model_dir(workdir, model, processor):
    model.save_pretrained(workdir / "model")
    processor.save_pretrained(workdir / "model")
    return workdir / "model"
