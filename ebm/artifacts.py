"""The file formats stages hand to each other, each writer beside its reader.

- ``metrics.json`` / ``summary.json``: a JSON object of numbers only, keys sorted, indented (``dvc metrics``
  reads it); everything else that the stage reports (names, provenance, params, reasons) in the sibling
  ``info.json``;
- ``history.csv``: one row per logged step, floats to 6 significant digits; ``reliability.csv``: one row
  per non-empty confidence bin; plots folders (``robustness/``, ``roc/``, pretraining's ``history/``): one
  such CSV per series;
- ``scores.npz``: per-image OOD scores under ``"<set>/<score>"`` keys (``/`` is stored as ``__``,
  because npz keys are file names in a zip);
- ``samples.npz``: the generate stage's arrays (:func:`ebm.generate.generate`) plus ``classes`` and
  ``params_hash``; ``grids/captions.json``: grid name → how its samples were drawn (the report's captions).

Writes are atomic (:mod:`ebm.io`). The report's readers (metrics, history, scores) return None or an
empty container for a missing file, so that the run shows as missing.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ebm.io import atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text

# ----------------------------------------------------------------------------------------------------
# metrics.json, summary.json


INFO = "info.json"  # the sibling of every metrics file: what is not a number


def info_path(path: str | Path) -> Path:
    """Where the non-numbers of the metrics file ``path`` go: ``info.json`` in the same folder."""
    return Path(path).with_name(INFO)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_NONE = object()  # "this side has nothing here" (None itself is a value: a metric not computed)


def split_numbers(obj: Any) -> tuple[Any, Any]:
    """``(numbers, rest)``: the numeric leaves of a JSON-like tree (ints, floats and lists of them, in
    their dicts) and everything else (strings, None, booleans, mixed lists) in the same structure;
    an empty dict where a side has nothing."""
    nums, rest = _split(obj)
    return ({} if nums is _NONE else nums), ({} if rest is _NONE else rest)


def _split(obj: Any) -> tuple[Any, Any]:
    if isinstance(obj, dict):
        nums, rest = {}, {}
        for k, v in obj.items():
            n, r = _split(v)
            if n is not _NONE:
                nums[k] = n
            if r is not _NONE:
                rest[k] = r
        return (nums or _NONE), (rest or _NONE)
    if _is_number(obj) or (isinstance(obj, list) and obj and all(_is_number(v) for v in obj)):
        return obj, _NONE
    return _NONE, obj


def merge_numbers(numbers: Any, rest: Any) -> Any:
    """The inverse of :func:`split_numbers`."""
    if isinstance(numbers, dict) and isinstance(rest, dict):
        return {**rest, **{k: merge_numbers(v, rest.get(k, _NONE)) for k, v in numbers.items()}}
    return rest if numbers is _NONE else numbers


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> None:
    """``path`` (metrics.json, summary.json) gets the numbers only, so that ``dvc metrics show/diff``
    compares measurements; provenance, params echoes, names, and the reasons of values not computed
    (None) go to the sibling ``info.json``. Both are always written (``{}`` where empty)."""
    numbers, rest = split_numbers(metrics)
    atomic_write_json(info_path(path), rest)
    atomic_write_json(path, numbers)


def read_metrics(path: str | Path) -> dict | None:
    """The metrics file and its ``info.json``, merged back into one tree; None when ``path`` is missing."""
    path = Path(path)
    if not path.is_file():
        return None
    info = info_path(path)
    return merge_numbers(json.loads(path.read_text()), json.loads(info.read_text()) if info.is_file() else {})


# ----------------------------------------------------------------------------------------------------
# history.csv, reliability.csv


def history_csv(rows: list[dict], columns: tuple[str, ...] = ()) -> str:
    keys: list[str] = list(columns)
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def write_history(path: str | Path, rows: list[dict]) -> None:
    atomic_write_text(path, history_csv(rows))


def read_history(path: str | Path) -> list[dict]:
    """Rows with every value as a float (None where empty); [] when the file is missing."""
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in csv.DictReader(f)]


def write_series(folder: str | Path, series: dict[str, list[dict]], columns: tuple[str, ...] = ()) -> None:
    """A plots folder: one ``<name>.csv`` per series (``dvc plots`` draws each file as one line), the
    folder replaced whole. ``columns`` head a series that has no rows."""
    with atomic_dir(folder) as tmp:
        for name, rows in series.items():
            (tmp / f"{name}.csv").write_text(history_csv(rows, columns))


def read_series(folder: str | Path) -> dict[str, list[dict]]:
    """Each ``<name>.csv`` of a plots folder as :func:`read_history` rows; {} when the folder is missing."""
    folder = Path(folder)
    return {f.stem: read_history(f) for f in sorted(folder.glob("*.csv"))} if folder.is_dir() else {}


def write_reliability(path: str | Path, bins: list[dict]) -> None:
    """reliability.csv: the non-empty confidence bins of :func:`ebm.eval.classify.reliability_bins`."""
    atomic_write_text(path, reliability_csv(bins))


def reliability_csv(bins: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["bin_lo", "bin_hi", "count", "confidence", "accuracy"])
    for b in bins:
        if b["count"]:  # empty bins have no confidence or accuracy; plots skip them
            w.writerow([f"{b['lo']:.4f}", f"{b['hi']:.4f}", b["count"], f"{b['confidence']:.6f}",
                        f"{b['accuracy']:.6f}"])
    return buf.getvalue()


def read_reliability(path: str | Path) -> list[dict]:
    """Rows of bin_lo, bin_hi, count, confidence, accuracy as floats; [] when the file is missing."""
    return read_history(path)


# ----------------------------------------------------------------------------------------------------
# scores.npz


def write_scores(path: str | Path, scores: dict[str, np.ndarray]) -> None:
    """``scores``: ``"<set>/<score>"`` (e.g. ``"test/logpx"``) → per-image scores."""
    _write_npz(path, {k.replace("/", "__"): v for k, v in scores.items()})


def read_scores(path: str | Path) -> dict[str, np.ndarray]:
    """{} when the file is missing."""
    return {k.replace("__", "/"): v for k, v in _read_npz(path).items()} if Path(path).is_file() else {}


# ----------------------------------------------------------------------------------------------------
# samples.npz


def write_samples(path: str | Path, samples: dict[str, np.ndarray], *, classes: list[str], params_hash: str) -> None:
    _write_npz(path, {**samples, "classes": np.array(classes), "params_hash": np.array(params_hash)})


def read_samples(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of the file, ``classes`` and ``params_hash`` included."""
    return _read_npz(path)


def write_captions(grids: str | Path, captions: dict[str, str]) -> None:
    """Into the grids folder, while the stage assembles it (inside :func:`ebm.io.atomic_dir`)."""
    (Path(grids) / "captions.json").write_text(json.dumps(captions, indent=1) + "\n")


def read_captions(grids: str | Path) -> dict[str, str]:
    return read_metrics(Path(grids) / "captions.json") or {}


def _write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _read_npz(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
