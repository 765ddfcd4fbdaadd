"""par_prompt.hub: folder checks, the upload at the HfApi boundary, and the model card."""

from __future__ import annotations

import ast
import fnmatch
import inspect
import json
import re
import shutil
from pathlib import Path

import pytest
from huggingface_hub import HfApi, ModelCard, metadata_load
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results
from huggingface_hub.utils import filter_repo_objects

from par_prompt import compute_par_metrics
from par_prompt.hub import (
    NotAPromptPARFolderError,
    model_files,
    push_model_to_hub,
    push_to_hub,
    render_model_card,
    upload_model_folder,
    write_model_card,
)

from .evaluation.builders import tiny_model

REPO_ROOT = Path(__file__).resolve().parents[1]
ATTRIBUTES = ["hat", "backpack", "skirt"]
SAVED_FILES = [  # the model's own; the processor's (tokenizer, processor_config.json) are its save's
    "clip_adapter/adapter_config.json", "clip_adapter/adapter_model.safetensors", "config.json",
    "promptpar_head.safetensors",
]
CLIP_ID = "openai/clip-vit-base-patch16"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    sentences = [f"A pedestrian with a {name}" for name in ATTRIBUTES]
    return tiny_model(tmp_path_factory.mktemp("hub"), ATTRIBUTES, sentences)


@pytest.fixture
def saved(model, tmp_path):
    """A saved model whose config names a Hub CLIP, as a real run's would."""
    model.save_pretrained(tmp_path / "best")
    config = json.loads((tmp_path / "best" / "config.json").read_text())
    config["clip_name_or_path"] = CLIP_ID
    (tmp_path / "best" / "config.json").write_text(json.dumps(config))
    return tmp_path / "best"


@pytest.fixture
def demo_metrics():
    labels = [[1, 0, 1], [0, 1, 0], [1, 1, 2], [0, 0, 1]]
    probs = [[0.9, 0.2, 0.7], [0.3, 0.8, 0.1], [0.6, 0.4, 0.5], [0.2, 0.1, 0.9]]
    return dict(compute_par_metrics(probs, labels, attribute_names=ATTRIBUTES).as_dict(), threshold=0.5)


def _check_signature(name, *args, **kwargs):
    """Fail like the real method would on arguments it does not take."""
    inspect.signature(getattr(HfApi, name)).bind(None, *args, **kwargs)


class FakeHub:
    """Records HfApi.create_repo / create_branch / upload_folder (no network); the
    arguments are checked against the real methods' signatures."""

    def __init__(self, monkeypatch):
        self.calls = []
        hub = self

        def create_repo(self, repo_id, **kwargs):
            _check_signature("create_repo", repo_id, **kwargs)
            hub.calls.append(("create_repo", repo_id, kwargs))

            class Url(str):
                pass

            url = Url(f"https://huggingface.co/{repo_id}")
            url.repo_id = repo_id
            return url

        def create_branch(self, repo_id, **kwargs):
            _check_signature("create_branch", repo_id, **kwargs)
            hub.calls.append(("create_branch", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            _check_signature("upload_folder", **kwargs)
            hub.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
            # what huggingface_hub would upload, from the real folder and patterns
            folder = Path(kwargs["folder_path"])
            files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
            hub.uploaded = sorted(filter_repo_objects(files, allow_patterns=kwargs["allow_patterns"],
                                                      ignore_patterns=kwargs.get("ignore_patterns")))
            hub.card = (folder / "README.md").read_text() if "README.md" in hub.uploaded else None

            class Info(str):
                commit_url = f"https://huggingface.co/{kwargs['repo_id']}/commit/abc123"

            return Info("abc123")

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_branch", create_branch)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)

    def names(self):
        return [call[0] for call in self.calls]

    def upload(self):
        return next(call[2] for call in self.calls if call[0] == "upload_folder")


@pytest.fixture
def hub(monkeypatch):
    return FakeHub(monkeypatch)


# --------------------------------------------------------------------------- upload


def test_push_uploads_exactly_the_model_folder(saved, hub):
    # training leftovers next to the model must stay local
    (saved / "checkpoint-10").mkdir()
    (saved / "checkpoint-10" / "optimizer.pt").write_bytes(b"x")
    (saved / "trainer_state.json").write_text("{}")
    (saved / "training_args.bin").write_bytes(b"x")
    (saved / "model.safetensors").write_bytes(b"x")
    (saved / ".partial").write_text("x")

    url = push_to_hub(saved, "me/promptpar-demo", token="hf_x", private=True, commit_message="Demo")
    assert url == "https://huggingface.co/me/promptpar-demo/commit/abc123"
    assert hub.names() == ["create_repo", "upload_folder"]
    create = hub.calls[0]
    assert create[1] == "me/promptpar-demo"
    assert create[2]["exist_ok"] is True and create[2]["private"] is True
    upload = hub.upload()
    assert upload["repo_id"] == "me/promptpar-demo"
    assert upload["folder_path"] == str(saved)
    assert upload["commit_message"] == "Demo"
    assert upload["allow_patterns"] == SAVED_FILES
    assert upload["delete_patterns"] == ["clip_base.safetensors"]  # no stale bundled base left on the Hub
    assert hub.uploaded == SAVED_FILES


def test_push_creates_the_branch_of_a_revision(saved, hub):
    push_to_hub(saved, "me/promptpar-demo", revision="v1")
    assert hub.names() == ["create_repo", "create_branch", "upload_folder"]
    assert hub.calls[1][2]["branch"] == "v1" and hub.upload()["revision"] == "v1"


def test_push_refuses_other_folders(saved, tmp_path, hub):
    with pytest.raises(NotAPromptPARFolderError, match="not a directory"):
        push_to_hub(tmp_path / "missing", "me/x")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NotAPromptPARFolderError, match="lacks config.json, clip_adapter/adapter_model.safetensors"):
        push_to_hub(empty, "me/x")
    (saved / "promptpar_head.safetensors").unlink()
    with pytest.raises(NotAPromptPARFolderError, match="lacks promptpar_head.safetensors"):
        push_to_hub(saved, "me/x")
    other = tmp_path / "other"
    shutil.copytree(saved, other)
    (other / "promptpar_head.safetensors").write_bytes(b"")
    (other / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(NotAPromptPARFolderError, match="'clip', not 'prompt_par'"):
        push_to_hub(other, "me/x")
    assert hub.calls == []


def test_save_pretrained_push_to_hub(model, tmp_path, hub):
    model.save_pretrained(tmp_path / "out", push_to_hub=True, repo_id="me/promptpar-save", token="hf_x",
                          commit_message="From save", safe_serialization=True)
    upload = hub.upload()
    assert upload["repo_id"] == "me/promptpar-save" and upload["folder_path"] == str(tmp_path / "out")
    assert upload["token"] == "hf_x" and upload["commit_message"] == "From save"
    assert hub.uploaded == sorted(SAVED_FILES + ["README.md"])  # a card is written when missing
    assert "model-index" not in ModelCard(hub.card).data.to_dict()


def test_model_push_to_hub_uploads_the_folder_with_our_card(model, hub):
    model.push_to_hub("me/promptpar-method", commit_message="Upload")
    assert hub.upload()["repo_id"] == "me/promptpar-method"
    assert hub.uploaded == sorted(SAVED_FILES + ["README.md"])
    assert ModelCard(hub.card).data.library_name == "par-prompt"


def test_save_pretrained_push_without_repo_id_writes_nothing(model, tmp_path, hub):
    with pytest.raises(ValueError, match="needs repo_id="):
        model.save_pretrained(tmp_path / "never", push_to_hub=True)
    assert not (tmp_path / "never").exists() and hub.calls == []


def test_upload_model_folder_needs_a_repo_id(saved, hub):
    with pytest.raises(ValueError, match="needs repo_id="):
        upload_model_folder(saved, token="x")
    with pytest.raises(TypeError, match="unexpected arguments \\['shard'\\]"):
        upload_model_folder(saved, repo_id="me/x", shard=True)
    assert hub.calls == []


def test_push_model_to_hub_saves_and_uploads_our_card(model, hub, demo_metrics):
    url = push_model_to_hub(model, "me/promptpar-model", metrics=demo_metrics, dataset_name="pa100k",
                            training_args={"epochs": 1}, max_shard_size="5GB")
    assert url.endswith("/commit/abc123")
    assert hub.uploaded == sorted(SAVED_FILES + ["README.md"])
    card = ModelCard(hub.card)
    assert card.data.library_name == "par-prompt" and card.data.datasets == ["pa100k"]
    assert card.data.eval_results[0].metric_value == round(100 * demo_metrics["mA"], 2)


def test_push_model_to_hub_uploads_the_processor_when_given(model, hub, demo_metrics, caplog):
    """With the processor the repository works with the stock pipelines and the card says
    so; without it the card does not promise them, and a warning says what is missing."""
    from par_prompt import PromptPARProcessor

    processor = PromptPARProcessor.from_pretrained(model.config.clip_name_or_path)
    push_model_to_hub(model, "me/promptpar-model", metrics=demo_metrics, dataset_name="pa100k", processor=processor)
    assert "processor_config.json" in hub.uploaded and "tokenizer.json" in hub.uploaded
    assert 'pipeline("image-classification"' in hub.card and "the tokenizer and the image" in hub.card
    with caplog.at_level("WARNING", logger="par_prompt.hub"):
        push_model_to_hub(model, "me/promptpar-model", metrics=demo_metrics, dataset_name="pa100k")
    assert "processor_config.json" not in hub.uploaded
    assert 'pipeline("image-classification"' not in hub.card and "holds no processor files" in hub.card
    assert "the tokenizer and the image" not in hub.card
    assert "without its processor" in caplog.text


def test_model_files_keeps_a_bundled_base(model, tmp_path):
    model.save_pretrained(tmp_path / "bundled", bundle_base_weights=True)
    assert "clip_base.safetensors" in model_files(tmp_path / "bundled")


# ----------------------------------------------------------------------- model card

SECTIONS = ("## How to use", "## Results", "## Attributes", "## Training", "## Limitations", "## License",
            "## Citation")


def _config(saved):
    return json.loads((saved / "config.json").read_text())


def _assert_round_trips(text):
    """The card parses back: its metadata survives a save/load and its model-index
    round-trips through huggingface_hub's own converters."""
    card = ModelCard(text, ignore_metadata_errors=False)
    again = ModelCard(str(card))
    assert again.data.to_dict() == card.data.to_dict() and again.text == card.text
    metadata = card.data.to_dict()
    if "model-index" in metadata:
        name, results = model_index_to_eval_results(metadata["model-index"])
        assert eval_results_to_model_index(name, results) == metadata["model-index"]
    return card


def test_card_metadata_for_a_demo_run(saved, demo_metrics):
    args = {"epochs": 2, "batch_size": 4, "lr_head": 8e-3, "hub_token": "hf_secret", "output_dir": "runs/demo"}
    path = write_model_card(saved, metrics=demo_metrics, training_args=args, dataset_name="synthetic",
                            repo_id="me/promptpar-demo")
    assert path == saved / "README.md"
    card = ModelCard.load(path)
    data = card.data
    assert data.library_name == "par-prompt" and data.pipeline_tag == "image-classification"
    assert data.license == "apache-2.0"
    # the saved fusion ViT is a local directory, so only the CLIP is a Hub base
    assert data.base_model == [CLIP_ID] and data.base_model_relation == "adapter"
    assert "pedestrian-attribute-recognition" in data.tags
    assert data.datasets == ["synthetic"]
    assert data.metrics == ["mA", "accuracy", "precision", "recall", "f1"]
    assert data.model_name == "promptpar-demo"
    results = {r.metric_type: r for r in data.eval_results}
    for metric_type, key in [("mA", "mA"), ("accuracy", "accuracy"), ("precision", "precision"),
                             ("recall", "recall"), ("f1", "f1")]:
        assert results[metric_type].metric_value == round(100 * demo_metrics[key], 2)
        assert results[metric_type].dataset_type == "synthetic"
        assert results[metric_type].dataset_split == "test"
        assert results[metric_type].task_type == "image-classification"

    # the front matter is valid metadata, and its model-index round-trips through huggingface_hub
    metadata = metadata_load(path)
    assert metadata == data.to_dict()
    name, eval_results = model_index_to_eval_results(metadata["model-index"])
    assert name == "promptpar-demo" and len(eval_results) == 5
    _assert_round_trips(path.read_text())

    body = card.text
    for heading in SECTIONS:
        assert heading in body
    assert "## Imported from" not in body
    assert 'PromptPARModel.from_pretrained("me/promptpar-demo")' in body
    for name in ATTRIBUTES:
        assert f"| {name} | A pedestrian with a {name} |" in body
    assert "| lr_head | 0.008 |" in body and "hf_secret" not in body and "hub_token" not in body
    assert f"{100 * demo_metrics['mA']:.2f}" in body and "global 0.50" in body
    assert "`apache-2.0`" in body
    assert "@article{" in body and "eprint        = {2312.10692}" in body
    assert "{{" not in body and "{%" not in body  # every placeholder was filled


def test_card_base_models_are_the_hub_backbones(saved):
    config = dict(_config(saved), fusion_name_or_path="google/vit-base-patch16-224", fusion_layers=1)
    data = _assert_round_trips(render_model_card(config)).data
    assert data.base_model == [CLIP_ID, "google/vit-base-patch16-224"] and data.base_model_relation == "adapter"
    # without fusion layers the ViT is not a backbone of the model
    data = ModelCard(render_model_card(dict(config, fusion_layers=0))).data
    assert data.base_model == [CLIP_ID]
    # no Hub backbone at all: no base_model, and no relation to nothing
    local = dict(config, clip_name_or_path=str(saved), fusion_name_or_path=None)
    metadata = ModelCard(render_model_card(local)).data.to_dict()
    assert "base_model" not in metadata and "base_model_relation" not in metadata


def test_card_without_metrics_has_no_model_index(saved):
    text = render_model_card(_config(saved), metrics=None, training_args=None, dataset_name=None)
    data = _assert_round_trips(text).data.to_dict()
    assert "model-index" not in data and data["base_model"] == [CLIP_ID]
    assert "Not evaluated yet" in text and "The training arguments were not recorded" in text
    for heading in SECTIONS:
        assert heading in text


def test_card_shows_a_metric_the_split_could_not_score_as_n_a(saved, demo_metrics):
    text = render_model_card(_config(saved), metrics=dict(demo_metrics, mA=None), dataset_name="pa100k")
    card = _assert_round_trips(text)
    assert [r.metric_type for r in card.data.eval_results] == ["accuracy", "precision", "recall", "f1"]
    row = next(line for line in text.splitlines() if line.startswith("| pa100k | test |"))
    assert row.split(" | ")[3] == "n/a" and f"{100 * demo_metrics['f1']:.2f}" in row
    # no scorable metric at all: no model-index rather than an empty one
    nothing = {**{key: None for key in ("mA", "accuracy", "precision", "recall", "f1")}, "threshold": 0.5}
    assert "model-index" not in ModelCard(render_model_card(_config(saved), metrics=nothing,
                                                            dataset_name="pa100k")).data.to_dict()


def test_card_per_attribute_thresholds(saved):
    config = dict(_config(saved), attribute_thresholds=[0.3, 0.55, 0.7])
    text = render_model_card(config)
    assert "| 1 | backpack | A pedestrian with a backpack | 0.55 |" in text
    assert "config.attribute_thresholds[i]" in text


def _planted(root: Path) -> list[str]:
    """Local paths of every form a training argument may hold, all under ``root`` or home."""
    (root / "alice-private" / "datasets" / "pa100k").mkdir(parents=True, exist_ok=True)
    return [
        str(root / "alice-private" / "datasets" / "pa100k"),  # absolute
        str(root / "alice-private" / "datasets" / "pa100k") + "/",  # with a trailing separator
        "~/alice-private/runs/out",  # home-relative
        "C:\\Users\\alice-private\\runs\\out",  # Windows
        "file://" + str(root / "alice-private" / "x.yaml"),  # URL of a local file
        json.dumps([str(root / "alice-private" / "a"), "tensorboard"]),  # a JSON list, as arguments_dict writes them
        "--flag=" + str(root / "alice-private" / "b") + " and more",  # inside free text
    ]


def test_card_has_no_local_paths_and_no_credentials(model, tmp_path, demo_metrics, monkeypatch):
    from par_prompt.training.arguments import DataArguments, ModelArguments, TrainingArguments, arguments_dict

    monkeypatch.chdir(tmp_path)
    planted = _planted(tmp_path)
    relative = Path("alice-private") / "datasets" / "pa100k"  # exists in the working directory
    arguments = arguments_dict(ModelArguments(), DataArguments(), TrainingArguments())
    args = {name: [*planted, str(relative)][i % (len(planted) + 1)] for i, name in enumerate(arguments)}
    args["notes"] = "hf_" + "a1B2" * 10  # a token under a harmless name
    args["hub_token"] = "hf_secretsecretsecret"
    model.save_pretrained(tmp_path / "model")
    config = _config(tmp_path / "model")
    config.update(clip_name_or_path=planted[0], fusion_name_or_path=planted[2], dataset=planted[3])
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    metrics = dict(demo_metrics, split=planted[6], threshold_description="calibrated on " + planted[0])
    path = write_model_card(tmp_path / "model", metrics=metrics, training_args=args, dataset_name=planted[0],
                            repo_id="me/promptpar-private")
    text = path.read_text()
    card = _assert_round_trips(text)
    for secret in (str(tmp_path), "alice-private", "Users", "~", "C:", "file:", "hf_", "secretsecret"):
        assert secret not in text, secret
    for name in arguments:  # every argument is still shown, reduced
        assert f"| {name} |" in text, name
    assert "| clip | pa100k |" in text and '["a", "tensorboard"]' in text and "--flag=b and more" in text
    assert card.data.datasets == ["pa100k"] and card.data.to_dict().get("base_model") is None
    assert "for pa100k" in text.splitlines()[text.splitlines().index("---", 1) + 2]


@pytest.mark.parametrize("value, shown", [
    ("openai/clip-vit-large-patch14", "openai/clip-vit-large-patch14"),
    ("/home/alice/data/pa100k", "pa100k"),
    ("/home/alice/data/pa100k/", "pa100k"),
    ("./data/peta", "peta"),
    ("~/runs", "runs"),
    ("~", None),
    ("D:\\data\\rap", "rap"),
    ("a/b/c", "c"),
    ("pa100k", "pa100k"),
    ("x" * 300 + "/" + "y" * 300 + "/pa100k", "pa100k"),  # longer than a file name may be
    (None, None),
])
def test_public_name(value, shown):
    from par_prompt.hub import public_name

    assert public_name(value) == shown


def test_card_rejects_percent_metrics_and_missing_keys(saved, demo_metrics):
    with pytest.raises(ValueError, match="not a fraction"):
        write_model_card(saved, metrics=dict(demo_metrics, mA=87.5), training_args=None, dataset_name="pa100k")
    with pytest.raises(ValueError, match="metrics lacks 'f1'"):
        write_model_card(saved, metrics={k: v for k, v in demo_metrics.items() if k != "f1"}, training_args=None,
                         dataset_name="pa100k")
    assert not (saved / "README.md").exists()


def test_template_is_packaged_and_documented():
    template = REPO_ROOT / "src" / "par_prompt" / "model_cards" / "promptpar.md"
    assert template.is_file()
    # the wheel ships it only if [tool.setuptools.package-data] matches it (tomllib needs Python 3.11)
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    section = pyproject[pyproject.index("[tool.setuptools.package-data]"):]
    line = next(line for line in section.splitlines() if line.startswith("par_prompt"))
    patterns = ast.literal_eval(line.split("=", 1)[1].strip())
    assert any(fnmatch.fnmatch("model_cards/promptpar.md", p) for p in patterns)
    # ModelCard.from_template needs jinja2, so the package must declare it
    dependencies = re.search(r"^dependencies = \[\n(.*?)^\]", pyproject, re.M | re.S).group(1)
    assert re.search(r'^\s*"jinja2[<>=~]', dependencies, re.M | re.I)
    readme = (REPO_ROOT / "model_cards" / "README.md").read_text()
    assert "src/par_prompt/model_cards/promptpar.md" in readme and "ModelCard.from_template" in readme
    # every variable the README lists is one the renderer passes, and the other way round
    documented = set(re.findall(r"^\| `(\w+)` \|", readme, re.M))
    passed = set(re.findall(r"^            (\w+)=", inspect.getsource(render_model_card), re.M)) - {"template_path"}
    assert documented == passed | {"card_data"}


class FakeAccessApi:
    """whoami / create_repo of a Hub account, recorded (no network)."""

    def __init__(self, whoami=None, create_error=None):
        self.calls = []
        self._whoami = whoami
        self._create_error = create_error

    def whoami(self, token=None):
        self.calls.append("whoami")
        if isinstance(self._whoami, Exception):
            raise self._whoami
        return self._whoami

    def create_repo(self, repo_id, **kwargs):
        _check_signature("create_repo", repo_id, **kwargs)
        self.calls.append(("create_repo", repo_id, kwargs["exist_ok"], kwargs["private"]))
        if self._create_error is not None:
            raise self._create_error

        class Url(str):
            pass

        url = Url(f"https://huggingface.co/{repo_id}")
        url.repo_id = repo_id if "/" in repo_id else f"alice/{repo_id}"
        return url


def _account(role="write", orgs=()):
    return {"name": "alice", "orgs": [{"name": name, "roleInOrg": r} for name, r in orgs],
            "auth": {"accessToken": {"displayName": "laptop", "role": role}}}


def _http_error(status):
    from types import SimpleNamespace

    from huggingface_hub.errors import HfHubHTTPError

    response = SimpleNamespace(status_code=status, headers={}, request=None)
    return HfHubHTTPError(f"{status} Client Error", response=response)


@pytest.mark.parametrize("repo_id, account, expected", [
    ("alice/promptpar", _account(), "alice/promptpar"),
    ("promptpar", _account(), "alice/promptpar"),
    ("acme/promptpar", _account(orgs=[("acme", "write")]), "acme/promptpar"),
])
def test_push_access_creates_the_repository_up_front(repo_id, account, expected):
    from par_prompt.hub import check_push_access

    api = FakeAccessApi(account)
    assert check_push_access(repo_id, private=True, api=api) == expected
    assert api.calls == ["whoami", ("create_repo", repo_id, True, True)]


@pytest.mark.parametrize("whoami, create_error, message", [
    (None, None, "you are not logged in"),
    ("401", None, "rejects your token"),
    (ConnectionError("Name or service not known"), None, "cannot reach the Hugging Face Hub"),
    (_account(role="read"), None, r"token \(laptop\) is read-only"),
    (_account(orgs=[("other", "admin")]), None, "neither 'acme' nor a member"),
    (_account(orgs=[("acme", "read")]), None, "your role in acme is read-only"),
    (_account(orgs=[("acme", "write")]), "403", "cannot be created or written"),
])
def test_push_access_problems_are_clear_and_early(whoami, create_error, message):
    from huggingface_hub.errors import LocalTokenNotFoundError

    from par_prompt.hub import HubAccessError, check_push_access

    if whoami is None:
        whoami = LocalTokenNotFoundError("no token")
    elif whoami == "401":
        whoami = _http_error(401)
    api = FakeAccessApi(whoami, _http_error(403) if create_error else None)
    with pytest.raises(HubAccessError, match=message) as caught:
        check_push_access("acme/promptpar", api=api)
    assert "\n" not in str(caught.value)
    assert ("create_repo" in str(api.calls)) == (create_error is not None)


def test_card_python_snippets_run_on_the_saved_folder(model, tmp_path, demo_metrics, monkeypatch):
    """The card's How-to-use code runs as written, with the repo id pointing at the folder."""
    from PIL import Image

    from par_prompt import PromptPARProcessor

    folder = tmp_path / "model"
    model.save_pretrained(folder)
    PromptPARProcessor.from_pretrained(model.config.clip_name_or_path).save_pretrained(folder)
    text = render_model_card(model.config, metrics=demo_metrics, dataset_name="synthetic", repo_id=str(folder))
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2 and any("pipeline(" in block for block in blocks)
    Image.new("RGB", (40, 90), (120, 30, 200)).save(tmp_path / "pedestrian.jpg")
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        namespace: dict = {}
        exec(compile(block, "card", "exec"), namespace)  # noqa: S102 - our own template's code
    assert len(namespace["classify"]("pedestrian.jpg")) == 3
