"""The restricted unpickler admits split files and refuses anything that could run code."""

from __future__ import annotations

import builtins
import collections
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from par_prompt.data import ParDataError, convert
from par_prompt.data.safe_pickle import AttrDict, UnsafePickleError, load_split_pickle, loads

from . import builders


class _Payload:
    """Unpickling this calls ``func(*args)``: the classic code-execution gadget."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker):
    return {
        "os.system": _Payload(os.system, f"touch {marker}"),
        "builtins.exec": _Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "builtins.eval": _Payload(builtins.eval, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.call": _Payload(subprocess.call, ["touch", str(marker)]),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "builtins.eval", "subprocess.call"])
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_code_running_pickle_is_refused(tmp_path, kind, protocol):
    marker = tmp_path / "pwned"
    payload = _payloads(marker)[kind]
    data = pickle.dumps({"label": np.zeros(3), "x": payload}, protocol=protocol)
    with pytest.raises(UnsafePickleError) as info:
        loads(data, source="evil.pkl")
    message = str(info.value)
    name = f"{payload.func.__module__}.{payload.func.__name__}" if protocol >= 3 else payload.func.__name__
    assert (
        "refused to load global '" in message and f"{name}'" in message
    )  # protocols < 3 spell Python 2 names
    assert "evil.pkl" in message
    assert not marker.exists()


def test_the_payload_really_runs_with_plain_pickle(tmp_path):
    # guards the test above: the payload is live, so only the restriction stops it
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Payload(os.system, f"touch {marker}")))
    assert marker.exists()


def test_malicious_split_file_via_convert(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "dataset_zs_run0.pkl").write_bytes(
        pickle.dumps({"image_name": _Payload(os.system, f"touch {marker}")})
    )
    with pytest.raises(UnsafePickleError, match="system"):
        convert("peta_zs", tmp_path / "src", tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_refused_codec_and_reconstructor():
    # _codecs.encode is admitted for latin-1 only
    with pytest.raises(UnsafePickleError, match="codec 'rot13'"):
        loads(b"c_codecs\nencode\n(Vabc\nVrot13\ntR.")
    assert loads(b"c_codecs\nencode\n(Vabc\nVlatin1\ntR.") == b"abc"
    # copyreg._reconstructor may only build the admitted dict classes
    with pytest.raises(UnsafePickleError):
        loads(b"ccopy_reg\n_reconstructor\n(c__builtin__\nlist\nc__builtin__\nobject\nNtR.")
    with pytest.raises(UnsafePickleError, match="persistent"):
        loads(b"P0\n.")


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_admitted_content_round_trips(protocol, monkeypatch):
    monkeypatch.setitem(sys.modules, "easydict", builders.fake_easydict_module())
    EasyDict = sys.modules["easydict"].EasyDict
    blob = EasyDict()
    blob.label = np.arange(12, dtype=np.uint8).reshape(3, 4)
    blob.weights = [np.float32(0.5), np.int64(3)]
    blob.partition = EasyDict()
    blob.partition.train = np.array([2, 0], dtype=np.int64)
    blob.extra = range(79, 105)
    blob.misc = {
        "t": (1, 2.5, "x", None, True),
        "s": {1, 2},
        "f": frozenset({3}),
        "b": b"\x00\xff",
        "o": collections.OrderedDict(a=1),
    }
    data = pickle.dumps(blob, protocol=protocol)
    monkeypatch.delitem(sys.modules, "easydict")
    out = loads(data)
    assert isinstance(out, AttrDict) and isinstance(out.partition, AttrDict)
    np.testing.assert_array_equal(out.label, blob.label)
    assert out.label.dtype == np.uint8
    np.testing.assert_array_equal(out.partition.train, [2, 0])
    assert out.weights[0] == np.float32(0.5) and out.weights[1] == 3
    assert out.extra == range(79, 105)
    assert out.misc == blob.misc
    with pytest.raises(AttributeError):
        _ = out.nope


def test_load_split_pickle_reads_a_file(tmp_path):
    path = tmp_path / "split.pkl"
    path.write_bytes(pickle.dumps({"a": np.ones(2)}))
    np.testing.assert_array_equal(load_split_pickle(path)["a"], [1, 1])
    assert issubclass(UnsafePickleError, pickle.UnpicklingError)
    assert not issubclass(UnsafePickleError, ParDataError)
