"""ONNX export of a tiny PromptPAR model: the graph, its metadata, and its equality with PyTorch."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from par_prompt import PromptPARImageProcessor, PromptPARPredictor, PromptPARProcessor
from par_prompt.inference.predict import predict_probabilities
from par_prompt.onnx import TOLERANCE, ONNXPromptPARPredictor, export_onnx

from ..inference.conftest import ATTRIBUTES, build_tiny_model


def pixels(batch: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_the_cli_reports_what_it_wrote(cli_export):
    path, out = cli_export
    assert out.startswith(f"wrote {path} (") and "opset 20, fp32" in out and "matches PyTorch" in out
    assert sorted(p.name for p in path.parent.iterdir()) == ["promptpar.onnx"]  # no temporary file left


def test_the_graph_takes_pixels_only_with_a_dynamic_batch(onnx_path):
    """The text features and the region mask are constants: pixel_values is the only input."""
    graph = onnx.load(onnx_path).graph
    assert [i.name for i in graph.input] == ["pixel_values"]
    assert [o.name for o in graph.output] == ["logits", "probabilities"]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].HasField("dim_value")  # symbolic batch
    assert [d.dim_value for d in dims[1:]] == [3, 32, 32]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    for output in graph.output:
        assert output.type.tensor_type.shape.dim[1].dim_value == len(ATTRIBUTES)


def test_the_text_tower_is_not_in_the_graph(onnx_path, model):
    """The CLIP token embedding (vocabulary x width) would be an initializer if the text
    tower had been exported."""
    text = model.clip_model.config.text_config
    shapes = {tuple(init.dims) for init in onnx.load(onnx_path).graph.initializer}
    assert (text.vocab_size, text.hidden_size) not in shapes
    assert (text.max_position_embeddings, text.hidden_size) not in shapes


def test_the_metadata_holds_what_predict_needs(onnx_path, model, processor):
    props = {p.key: p.value for p in onnx.load(onnx_path).metadata_props}
    assert props["par_prompt.format"] == "1" and props["par_prompt.precision"] == "fp32"
    assert json.loads(props["par_prompt.attributes"]) == model.config.attributes
    assert json.loads(props["par_prompt.sentences"]) == model.config.sentences
    assert json.loads(props["par_prompt.threshold"]) == model.config.threshold
    assert json.loads(props["par_prompt.attribute_thresholds"]) is None
    assert json.loads(props["par_prompt.dataset"]) == "pa100k"
    stored = json.loads(props["par_prompt.config"])  # the rest of the config, each value stored once
    assert stored["clip_config"] == json.loads(json.dumps(model.config.to_dict()["clip_config"]))
    assert stored["num_regions"] == 4
    assert not {"attributes", "sentences", "threshold", "id2label"} & set(stored)
    stored_processor = json.loads(props["par_prompt.image_processor"])
    assert stored_processor == processor.image_processor.to_dict() and stored_processor["size"] == 32


def test_the_predictor_rebuilds_the_config_and_processor(predictor, model, processor):
    ignored = {"_name_or_path", "transformers_version"}
    assert ({k: v for k, v in predictor.config.to_dict().items() if k not in ignored}
            == {k: v for k, v in model.config.to_dict().items() if k not in ignored})
    assert predictor.image_processor.to_dict() == processor.image_processor.to_dict()


@pytest.mark.parametrize("batch", [1, 4])
def test_probabilities_equal_pytorch(predictor, model, batch):
    values = pixels(batch, seed=batch)
    logits, probabilities = predictor.run(values)
    reference = predict_probabilities(model, values, batch_size=batch)
    assert probabilities.shape == (batch, len(ATTRIBUTES)) and probabilities.dtype == np.float32
    assert np.abs(probabilities - reference.numpy()).max() <= TOLERANCE["fp32"]
    assert np.allclose(1 / (1 + np.exp(-logits)), probabilities, atol=1e-6)
    assert reference.std() > 0.05  # spread out, not all near 0.5: a test that can fail


def test_a_batch_size_never_seen_at_export_runs(predictor, model):
    values = pixels(7, seed=7)
    _, probabilities = predictor.run(values)
    assert np.abs(probabilities - predict_probabilities(model, values).numpy()).max() <= TOLERANCE["fp32"]


def test_the_model_is_left_as_it_was(model, processor, tmp_path):
    """export_onnx puts the model in eval mode for the export and back afterwards; an fp16
    export converts a copy, never the caller's model."""
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    model.train()
    try:
        export_onnx(model, tmp_path / "half.onnx", processor=processor, fp16=True, opset=23)
        assert model.training and model.dtype == torch.float32
    finally:
        model.eval()
    after = model.state_dict()
    assert all(torch.equal(before[name].nan_to_num(), after[name].nan_to_num()) for name in before)

    # and the fp16 export itself: loose equality, half the weight bytes, opset 23
    half = ONNXPromptPARPredictor.from_file(tmp_path / "half.onnx")
    assert half.precision == "fp16"
    proto = onnx.load(tmp_path / "half.onnx")
    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {23}
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 in and out
    for batch in (1, 4):
        values = pixels(batch, seed=10 + batch)
        _, probabilities = half.run(values)
        reference = predict_probabilities(model, values).numpy()
        assert np.abs(probabilities - reference).max() <= TOLERANCE["fp16"]


def test_mlp_fusion_without_region_prompts(backbones, processor, tmp_path, image_list):
    """The other model shapes: the sequence-MLP fusion (fusion_layers=0), no region mask
    (num_regions=0), per-sentence text prompts, per-attribute thresholds, and the settings
    of models imported from the official code (no post-layernorm on the visual tokens,
    images stretched instead of padded)."""
    with torch.random.fork_rng():
        torch.manual_seed(3)
        model = build_tiny_model(backbones, seed=3, fusion_layers=0, num_regions=0, text_prompt_per_sentence=True,
                                 visual_post_layernorm=False)
    stretching = PromptPARProcessor(image_processor=PromptPARImageProcessor(size=32, do_pad=False),
                                    tokenizer=processor.tokenizer)
    model.config.attribute_thresholds = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    export_onnx(model.train(), tmp_path / "mlp.onnx", processor=stretching)
    assert model.training  # exported in eval mode, then back to training mode
    model.eval()
    predictor = ONNXPromptPARPredictor.from_file(tmp_path / "mlp.onnx")
    assert predictor.config.attribute_thresholds == [0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    for batch in (1, 4):
        values = pixels(batch, seed=20 + batch)
        _, probabilities = predictor.run(values)
        assert np.abs(probabilities - predict_probabilities(model, values).numpy()).max() <= TOLERANCE["fp32"]
    assert predictor.image_processor.do_pad is False
    expected_records = PromptPARPredictor(model, stretching).predict(image_list)
    for got, expected in zip(predictor.predict(image_list), expected_records, strict=True):
        assert got.probabilities == pytest.approx(expected.probabilities, abs=TOLERANCE["fp32"])
        assert got.attributes == expected.attributes and got.threshold == expected.threshold
