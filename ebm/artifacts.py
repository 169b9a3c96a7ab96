"""The file formats stages hand to each other, each writer beside its reader.

- ``metrics.json`` / ``summary.json``: a JSON object, keys sorted, indented (``dvc metrics`` reads it);
- ``history.csv``: one row per logged step, floats to 6 significant digits; ``reliability.csv``: one row
  per non-empty confidence bin;
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

from ebm.io import atomic_write_bytes, atomic_write_json, atomic_write_text

# ----------------------------------------------------------------------------------------------------
# metrics.json, summary.json


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> None:
    atomic_write_json(path, metrics)


def read_metrics(path: str | Path) -> dict | None:
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


# ----------------------------------------------------------------------------------------------------
# history.csv, reliability.csv


def history_csv(rows: list[dict]) -> str:
    keys: list[str] = []
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
