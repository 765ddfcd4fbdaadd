"""Writers for prediction results: a table, JSON, JSON lines or CSV, on a stream.

:class:`PredictionWriter` takes the results one at a time (an
:class:`~par_prompt.inference.AttributePrediction`, or an
:class:`~par_prompt.inference.ImageInputError` standing in for an input that could not
be read) and writes each as it comes, except ``json`` (one array, written at
:meth:`~PredictionWriter.close`). :func:`output_format` picks the format of an output
file from its extension. The writers only need ``index``, ``source``, ``attributes``,
``probabilities`` and ``top(k)`` of a result, so another predictor (ONNX) can use them.

Records (``json`` and ``jsonl``): ``index``, ``source``, ``attributes`` (above the
threshold), ``probabilities`` (every attribute), ``threshold``; with ``top_k`` also
``top_k``: ``[{"attribute", "probability"}, ...]``, most probable first. A failed input
is ``{"index", "source", "error"}``. CSV: one row per input with the columns ``index``,
``image``, ``attributes`` (";"-joined), ``error``, [``top_k`` ("name:0.9312;..."),] then
one column per attribute with its probability.
"""

from __future__ import annotations

import csv
import json
from typing import Any, Optional, TextIO

__all__ = ["FORMATS", "FORMAT_BY_EXTENSION", "PredictionWriter", "is_error", "output_format"]

FORMATS = ("table", "json", "jsonl", "csv")
FORMAT_BY_EXTENSION = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
                       ".txt": "table"}


def output_format(path: Optional[str], requested: Optional[str]) -> str:
    """The format to write: ``requested`` when given, else the one of ``path``'s extension
    (``.jsonl``/``.ndjson``: JSON lines, ``.json``: JSON, ``.csv``: CSV, ``.txt``: table),
    else ``table`` on the console. ``ValueError`` for a file extension without a format."""
    from pathlib import Path

    if requested is not None:
        return requested
    if path is None:
        return "table"
    fmt = FORMAT_BY_EXTENSION.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(
            f"cannot tell the format of --output {path} from its extension; name it .jsonl, .json, .csv or .txt, "
            f"or pass --format ({', '.join(FORMATS)})"
        )
    return fmt


def is_error(result: Any) -> bool:
    """Whether ``result`` stands for an input that could not be read (not a prediction)."""
    return hasattr(result, "reason") and not hasattr(result, "probabilities")


class PredictionWriter:
    """Writes results to ``out`` in one of :data:`FORMATS`.

    Args:
        fmt: the format.
        out: a text stream.
        attributes: the model's attribute names, in order (CSV columns).
        sources: every input's source, for the width of the table's first column.
        top_k: also write the ``top_k`` most probable attributes of each image (0: no).
    """

    def __init__(self, fmt: str, out: TextIO, attributes: list[str], sources: list[str], top_k: int = 0) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self.fmt, self.out, self.attributes, self.top_k = fmt, out, list(attributes), int(top_k)
        self.records: list[dict] = []
        self.width = max([len("image")] + [len(str(s)) for s in sources])
        if fmt == "csv":
            self.csv = csv.writer(out)
            extra = ["top_k"] if self.top_k else []
            self.csv.writerow(["index", "image", "attributes", "error", *extra, *self.attributes])
        elif fmt == "table":
            extra = f"; top {self.top_k}" if self.top_k else ""
            out.write(f"{'image':<{self.width}}  attributes above threshold (probability){extra}\n")

    def record(self, result: Any) -> dict[str, Any]:
        """The JSON record of one result."""
        if is_error(result):
            return {"index": result.index, "source": result.source, "error": result.reason}
        record = result.to_dict()
        if self.top_k:
            record["top_k"] = [{"attribute": name, "probability": p} for name, p in result.top(self.top_k)]
        return record

    def write(self, result: Any) -> None:
        """Write one result (or keep it, for ``json``)."""
        failed = is_error(result)
        if self.fmt == "json":
            self.records.append(self.record(result))
            return
        if self.fmt == "jsonl":
            self.out.write(json.dumps(self.record(result)) + "\n")
        elif self.fmt == "csv":
            top = [] if not self.top_k else [
                "" if failed else ";".join(f"{name}:{p:.4f}" for name, p in result.top(self.top_k))]
            if failed:
                empty = [""] * len(self.attributes)
                self.csv.writerow([result.index, result.source, "", result.reason, *top, *empty])
            else:
                row = [f"{result.probabilities[name]:.4f}" for name in self.attributes]
                self.csv.writerow([result.index, result.source, ";".join(result.attributes), "", *top, *row])
        else:
            if failed:
                text = f"ERROR: {result.reason}"
            else:
                text = ", ".join(f"{name} ({result.probabilities[name]:.2f})" for name in result.attributes) or "(none)"
                if self.top_k:
                    text += "; top: " + ", ".join(f"{name} ({p:.2f})" for name, p in result.top(self.top_k))
            self.out.write(f"{str(result.source):<{self.width}}  {text}\n")
        self.out.flush()

    def close(self) -> None:
        """Finish the output (``json``: write the array). The stream stays open."""
        if self.fmt == "json":
            json.dump(self.records, self.out, indent=2)
            self.out.write("\n")
        self.out.flush()
