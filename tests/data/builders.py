"""Miniature benchmark files in the real layouts (scipy.io.savemat, pickles, JSON, images).

Each ``make_*`` function writes a tiny copy of a benchmark's download into ``root`` and
returns what a correct conversion must produce (``Expected``): per split, the image
names in order and their label rows, plus the attribute names.
"""

from __future__ import annotations

import io
import json
import pickle
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from par_prompt.sentences import DATASET_ATTRIBUTES


@dataclass
class Expected:
    attributes: list[str]
    splits: dict[str, list[str]]  # split -> image names (paths stored in the data set)
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (n, N) int8


def write_image(path: Path, size=(12, 24), colour=(120, 30, 200), mode="RGB") -> None:
    """A small real image; format from the suffix (.jpg -> JPEG, .png -> PNG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new(mode, size, colour if mode == "RGB" else colour[0])
    image.save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")


def cell(strings, row: bool = False) -> np.ndarray:
    """A MATLAB cell array of strings (N×1, or 1×N with ``row``)."""
    array = np.empty((1, len(strings)) if row else (len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        array[(0, i) if row else (i, 0)] = s
    return array


def _labels(rng: np.random.Generator, rows: int, cols: int, uncertain: bool = False) -> np.ndarray:
    labels = rng.integers(0, 2, size=(rows, cols)).astype(np.uint8)
    if uncertain:
        labels[rng.random((rows, cols)) < 0.1] = 2
    return labels


def _savemat(path: Path, content: dict) -> None:
    import scipy.io

    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), content)


# --------------------------------------------------------------------------------- PA100K


def make_pa100k(
    root: Path, sizes=(6, 3, 3), label_width: int | None = None, drop: str | None = None
) -> Expected:
    """``annotation.mat`` + ``data/*.jpg``."""
    rng = np.random.default_rng(0)
    attributes = list(DATASET_ATTRIBUTES["pa100k"])
    width = label_width or len(attributes)
    content = {"attributes": cell(attributes)}
    expected = Expected(attributes, {})
    start = 1
    for split, prefix, n in zip(("train", "validation", "test"), ("train", "val", "test"), sizes):
        names = [f"{start + i:06d}.jpg" for i in range(n)]
        start += n
        labels = _labels(rng, n, width)
        content[f"{prefix}_images_name"] = cell(names) if n else np.empty((0, 1), dtype=object)
        content[f"{prefix}_label"] = labels
        expected.splits[split] = names
        expected.labels[split] = labels.astype(np.int8)
        for name in names:
            write_image(root / "data" / name)
    if drop:
        del content[drop]
    _savemat(root / "annotation.mat", content)
    return expected


# ----------------------------------------------------------------------------------- PETA


def _partitions_peta(rng, n_rows: int, k: int, sizes=(6, 3, 5)):
    parts = np.empty((k, 1), dtype=object)
    chosen = []
    for p in range(k):
        order = rng.permutation(n_rows)[: sum(sizes)] + 1  # 1-based rows
        train, val, test = np.split(order, np.cumsum(sizes)[:2])
        parts[p, 0] = {
            "train": train.reshape(-1, 1).astype(float),
            "val": val.reshape(-1, 1).astype(float),
            "test": test.reshape(-1, 1).astype(float),
        }
        chosen.append({"train": train - 1, "validation": val - 1, "test": test - 1})
    return parts, chosen


def make_peta(
    root: Path,
    n_rows: int = 16,
    partition_field: str = "partion_attribute",
    drop: str | None = None,
    selected: str = "columns",
):
    """``PETA.mat`` (struct ``peta``) + ``images/00001.png``...; returns (Expected per partition)."""
    rng = np.random.default_rng(1)
    raw_names = list(DATASET_ATTRIBUTES["peta"]) + [f"extraAttribute{i}" for i in range(70)]
    labels = _labels(rng, n_rows, len(raw_names))
    data = np.concatenate([np.arange(n_rows)[:, None].repeat(4, axis=1), labels], axis=1).astype(float)
    parts, chosen = _partitions_peta(rng, n_rows, 5)
    peta = {
        "data": data,
        "attribute": cell(raw_names),
        # MATLAB columns of data (5..39), or 1-based attribute indices (1..35)
        "selected_attribute": (np.arange(35) + (5 if selected == "columns" else 1))
        .reshape(1, -1)
        .astype(float),
        partition_field: parts,
    }
    if drop:
        del peta[drop]
    _savemat(root / "PETA.mat", {"peta": peta})
    names = [f"{i + 1:05d}.png" for i in range(n_rows)]
    for name in names:
        write_image(root / "images" / name, mode="RGB")
    out = []
    for rows in chosen:
        exp = Expected(raw_names[:35], {})
        for split, idx in rows.items():
            exp.splits[split] = [names[i] for i in idx]
            exp.labels[split] = labels[idx, :35].astype(np.int8)
        out.append(exp)
    return out


# ------------------------------------------------------------------------------------ RAP


def make_rapv1(
    root: Path,
    n_rows: int = 24,
    name_count: int | None = None,
    partition_fields: tuple[str, ...] = ("train_index", "test_index"),
    rename: dict[str, str] | None = None,
):
    """RAPv1 ``RAP_annotation/RAP_annotation.mat`` + ``RAP_dataset/*.png``.

    ``name_count`` lists that many image names instead of one per label row;
    ``partition_fields`` names the fields of each partition struct (the train rows go to
    the first, the test rows to the second, any further one gets the test rows again);
    ``rename`` renames top-level struct fields (the order is kept).
    """
    rng = np.random.default_rng(2)
    raw_names = list(DATASET_ATTRIBUTES["rapv1"]) + [f"extra-{i}" for i in range(41)]
    labels = _labels(rng, n_rows, len(raw_names), uncertain=True)
    names = [
        f"CAM{i % 3:02d}_2014-02-15_20140215161032-20140215162620_tarid{i}_frame{i * 7}_line1.png"
        for i in range(n_rows if name_count is None else name_count)
    ]
    parts = np.empty((5, 1), dtype=object)
    chosen = []
    for p in range(5):
        order = rng.permutation(n_rows) + 1
        train, test = order[:18], order[18:]
        vectors = [train.reshape(1, -1).astype(float), test.reshape(1, -1).astype(float)]
        parts[p, 0] = {
            field: vectors[min(i, 1)] for i, field in enumerate(partition_fields)
        }
        chosen.append((train - 1, test - 1))
    rap = {
        "partion": parts,
        "label": labels.astype(float),
        "attribute_chinese": cell([f"c{i}" for i in range(len(raw_names))]),
        "attribute_eng": cell(raw_names),
        "position": np.zeros((n_rows, 16)),
        "imagesname": cell(names),
        "attribute_exp": cell([f"e{i}" for i in range(len(raw_names))]),
    }
    rap = {(rename or {}).get(key, key): value for key, value in rap.items()}
    _savemat(root / "RAP_annotation" / "RAP_annotation.mat", {"RAP_annotation": rap})
    for name in names:
        write_image(root / "RAP_dataset" / name)
    return raw_names[:51], labels[:, :51].astype(np.int8), names, chosen


def make_rapv2(root: Path, n_rows: int = 24, label_width: int | None = None):
    """RAPv2 ``RAP_annotation.mat`` (selected_attribute scattered) + ``RAP_dataset/*.png``."""
    rng = np.random.default_rng(3)
    selected_names = list(DATASET_ATTRIBUTES["rapv2"])
    raw_names = [f"extra-{i}" for i in range(152)]
    positions = np.sort(rng.choice(152, size=54, replace=False))[rng.permutation(54)]
    for pos, name in zip(positions, selected_names):
        raw_names[pos] = name
    labels = _labels(rng, n_rows, label_width or 152, uncertain=True)
    names = [f"CAM{i % 4:02d}-{i:04d}.png" for i in range(n_rows)]
    parts = np.empty((1, 5), dtype=object)
    chosen = []
    for p in range(5):
        order = rng.permutation(n_rows) + 1
        train, val, test = order[:12], order[12:17], order[17:]
        parts[0, p] = {
            "train_index": train.reshape(1, -1).astype(float),
            "val_index": val.reshape(1, -1).astype(float),
            "test_index": test.reshape(1, -1).astype(float),
        }
        chosen.append({"train": train - 1, "validation": val - 1, "test": test - 1})
    rap = {
        "name": cell(names),
        "position": np.zeros((n_rows, 24)),
        "data": labels.astype(float),
        "attribute": cell(raw_names),
        "selected_attribute": (positions + 1).reshape(1, -1).astype(float),
        "partition_attribute": parts,
        "person_identity": np.arange(n_rows).reshape(-1, 1).astype(float),
    }
    _savemat(root / "RAP_annotation.mat", {"RAP_annotation": rap})
    for name in names:
        write_image(root / "RAP_dataset" / name)
    return (
        selected_names,
        labels[:, positions].astype(np.int8) if label_width is None else None,
        names,
        chosen,
    )


# ----------------------------------------------------------------------------- zero-shot


class _EasyDict(dict):
    """Behaves like easydict.EasyDict for pickling: items mirrored in ``__dict__``."""

    def __init__(self, d=None, **kwargs):
        super().__init__()
        for key, value in {**(d or {}), **kwargs}.items():
            setattr(self, key, value)

    def __setattr__(self, name, value):
        if isinstance(value, dict) and not isinstance(value, _EasyDict):
            value = _EasyDict(value)
        super().__setattr__(name, value)
        super().__setitem__(name, value)

    __setitem__ = __setattr__


def fake_easydict_module() -> types.ModuleType:
    """A stand-in ``easydict`` module, so pickles name ``easydict.EasyDict`` like the real files."""
    module = types.ModuleType("easydict")
    _EasyDict.__module__ = "easydict"
    _EasyDict.__qualname__ = _EasyDict.__name__ = "EasyDict"
    module.EasyDict = _EasyDict
    return module


def zero_shot_blob(name: str, n_rows: int = 20, with_label_idx: bool = True):
    """The EasyDict a ``dataset_zs_run*.pkl`` holds (call with the fake module installed)."""
    EasyDict = sys.modules["easydict"].EasyDict
    rng = np.random.default_rng(4)
    if name == "peta_zs":
        evaluated = list(DATASET_ATTRIBUTES["peta"])
        raw_names = evaluated + [f"extraAttribute{i}" for i in range(70)]
        eval_idx = list(range(35))
        names = [f"{i + 1:05d}.png" for i in range(n_rows)]
    else:
        evaluated = [a for a in DATASET_ATTRIBUTES["rapv2"] if a != "Age46-60"]
        raw_names = evaluated + [f"extra-{i}" for i in range(30)]
        eval_idx = list(range(53))
        names = [f"CAM01-{i:04d}.png" for i in range(n_rows)]
    # put the evaluated columns in a scrambled order to check label_idx.eval is honoured
    perm = rng.permutation(len(raw_names))
    raw_names = [raw_names[i] for i in perm]
    inverse = np.argsort(perm)
    eval_idx = [int(inverse[i]) for i in eval_idx]
    labels = _labels(rng, n_rows, len(raw_names), uncertain=(name == "rap_zs"))
    order = rng.permutation(n_rows)
    blob = EasyDict()
    blob.description = name
    blob.root = "/mnt/data1/somebody/datasets/attribute/PETA/images"
    blob.image_name = names
    blob.label = labels
    blob.attr_name = raw_names
    if with_label_idx:
        blob.label_idx = EasyDict()
        blob.label_idx.eval = eval_idx
        blob.label_idx.color = range(3)
    blob.partition = EasyDict()
    blob.partition.train = order[:10]
    blob.partition.val = order[10:14]
    blob.partition.test = order[14:]
    blob.partition.trainval = np.concatenate([order[:10], order[10:14]])
    blob.weight_train = [np.mean(labels[order[:10]], axis=0).astype(np.float32)]
    expected = Expected([raw_names[i] for i in eval_idx], {})
    for split, idx in (("train", order[:10]), ("validation", order[10:14]), ("test", order[14:])):
        expected.splits[split] = [names[i] for i in idx]
        expected.labels[split] = labels[idx][:, eval_idx].astype(np.int8)
    return blob, expected


def make_zero_shot(
    root: Path, name: str, partition: int = 0, protocol: int = 4, numpy1_spelling: bool = False, **kwargs
):
    blob, expected = zero_shot_blob(name, **kwargs)
    data = pickle.dumps(blob, protocol=protocol)
    if numpy1_spelling:  # as written by numpy 1.x: numpy.core.multiarray
        assert protocol <= 2, "text GLOBAL opcodes only"
        data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    root.mkdir(parents=True, exist_ok=True)
    (root / f"dataset_zs_run{partition}.pkl").write_bytes(data)
    image_dir = root / ("images" if name == "peta_zs" else "RAP_dataset")
    for names in expected.splits.values():
        for image in names:
            write_image(image_dir / image)
    return expected


# --------------------------------------------------------------------------------- WIDER


WIDER_NAMES = ["Male", "longHair", "sunglass", "Hat", "Tshiirt", "longSleeve", "formal",
               "shorts", "jeans", "longPants", "skirt", "faceMask", "logo", "stripe"]  # fmt: skip


def make_wider(root: Path):
    """The two JSON files + ``Image/{train,val,test}/...jpg``; boxes are cropped."""
    rng = np.random.default_rng(5)
    id_map = {str(i): n for i, n in enumerate(WIDER_NAMES)}
    expected = Expected(WIDER_NAMES, {"train": [], "validation": [], "test": []}, {})
    rows = {"train": [], "validation": [], "test": []}
    crops = {}
    blobs = {"trainval": [], "test": []}
    files = [("train/0--Parade/0_Parade_marchingband_1_5.jpg", "train", 2),
             ("train/1--Handshaking/1_Handshaking_1_2.jpg", "train", 1),
             ("val/0--Parade/0_Parade_1_9.jpg", "validation", 2),
             ("test/2--Demonstration/2_Demonstration_3_1.jpg", "test", 2)]  # fmt: skip
    for file_name, split, n_targets in files:
        write_image(root / "Image" / file_name, size=(80, 60), colour=(10, 200, 30))
        targets = []
        for j in range(n_targets):
            values = rng.choice([1, -1, 0], size=14).tolist()
            x, y, w, h = 5 + 20 * j, 4, 15, 40
            targets.append({"attribute": values, "bbox": [x, y, w, h]})
            # datasets stores the base name of an image's path
            expected.splits[split].append(f"{Path(file_name).name}#{j}")
            rows[split].append([{1: 1, -1: 0, 0: 2}[v] for v in values])
            crops[f"{Path(file_name).name}#{j}"] = (w, h)
        blobs["test" if split == "test" else "trainval"].append(
            {"file_name": file_name, "scene_id": 0, "targets": targets}
        )
    for key in ("trainval", "test"):
        blob = {"images": blobs[key], "attribute_id_map": id_map, "scene_id_map": {"0": "Parade"}}
        (root / f"wider_attribute_{key}.json").write_text(json.dumps(blob))
    expected.labels = {split: np.array(r, dtype=np.int8) for split, r in rows.items()}
    return expected, crops


def corrupt_file(path: Path) -> None:
    """Overwrite an image with bytes no decoder accepts (keeps the file present)."""
    path.write_bytes(b"this is not an image" * 10)


def truncated_jpeg(path: Path) -> None:
    """A JPEG cut in half: it opens but cannot be decoded."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
