"""The on-disk form of a dataset: compact ``.npy`` arrays plus a ``manifest.json`` of sha256 checksums.

Layout of ``data/datasets/<name>/``::

    train_x.npy  (N, 32, 32, 3) uint8     train_y.npy  (N,) int64
    test_x.npy   (M, 32, 32, 3) uint8     test_y.npy   (M,) int64
    ood_<set>_x.npy  (K, 32, 32, 3) uint8, one per OOD set (interp: float32 means, same 0-255 units)
    manifest.json  classes, counts, sha256 of every array and of the raw files read

:func:`load_dataset` verifies every checksum before returning, so a corrupt file is named, not trained on.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebm.config import DataConfig
from ebm.data.procedural import SHAPE_CLASSES, make_shapes, make_textures
from ebm.data.sources import (DatasetFormatError, Split, has_local_copy, load_celeba, load_image_folder,
                              load_source)
from ebm.io import atomic_dir, atomic_write_json, sha256_file

MANIFEST_VERSION = 1


@dataclass
class DatasetArrays:
    name: str
    classes: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    ood: dict[str, np.ndarray]  # OOD set name → (K, 32, 32, 3) uint8 (interp: float32, 0-255 units)


def stratified_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of a seeded subset of size ``n`` with classes as balanced as possible (0 or ≥ len → all)."""
    if n <= 0 or n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    # rank of each example within its class in the shuffled order; take lowest ranks first
    rank = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        members = order[y[order] == c]
        rank[members] = np.arange(len(members))
    keep = order[np.argsort(rank[order], kind="stable")[:n]]
    return np.sort(keep)


def interpolations(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    """CIFAR-10 "interp" OOD set as the JEM code builds it: means of two different shuffled test images
    (needs at least 2 images; for n > len(x) pairs repeat). The mean is taken in float, as the JEM code
    averages its normalised tensors: float32 (n, 32, 32, 3) in the 0-255 units of the uint8 sets, so
    ``to_tensor`` maps it to exactly the mean of the two images in the model's [-1, 1] input space."""
    perm = np.random.default_rng(seed).permutation(len(x))
    i = np.arange(n) % len(x)
    a, b = perm[i], perm[(i + 1) % len(x)]  # neighbours in a shuffled order: never the same image
    return (x[a].astype(np.float32) + x[b].astype(np.float32)) / 2


def _ood_set(name: str, ood: str, n: int, test: Split, raw_root: Path, seed: int) -> tuple[np.ndarray, dict]:
    if ood == "textures":
        return make_textures(n, seed + 1), {}
    if ood == "noise":
        return np.random.default_rng(seed + 2).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), {}
    if ood == "interp":
        return interpolations(test.x, n, seed + 3), {}
    if ood == "celeba":
        split = load_celeba(raw_root / "celeba", n, seed + 5)
        return split.x, split.files
    if ood.startswith("local:"):  # a user's image folder: data/raw/ood/<name>/
        folder = raw_root / "ood" / ood.removeprefix("local:")
        split = load_image_folder(ood, folder, n, seed + 6)
        return split.x, {f"ood/{k}": v for k, v in split.files.items()}
    raw = raw_root / ood  # another real dataset's test split
    source = "local" if has_local_copy(raw, train=False) else "torchvision"
    split = load_source(ood, source, raw, train=False)
    idx = np.random.default_rng(seed + 4).permutation(len(split.x))[:n]
    return split.x[np.sort(idx)], {f"{ood}/{k}": v for k, v in split.files.items()}


def build_dataset(name: str, cfg: DataConfig, raw_root: Path) -> tuple[DatasetArrays, dict]:
    """Make or read dataset ``name``; returns the arrays and the raw files read (name → sha256)."""
    raw_files: dict[str, str] = {}
    if cfg.source == "procedural":
        n_train = cfg.n_train or 5000
        n_test = cfg.n_test or 1000
        xtr, ytr = make_shapes(n_train, cfg.seed)
        xte, yte = make_shapes(n_test, cfg.seed + 1_000_003)  # disjoint stream from the train seed
        train, test = Split(xtr, ytr, list(SHAPE_CLASSES)), Split(xte, yte, list(SHAPE_CLASSES))
    else:
        raw = raw_root / name
        train = load_source(name, cfg.source, raw, train=True)
        test = load_source(name, cfg.source, raw, train=False)
        if train.classes != test.classes:
            raise DatasetFormatError(f"dataset '{name}': train classes {train.classes} != test {test.classes}")
        raw_files.update({f"{name}/{k}": v for k, v in {**train.files, **test.files}.items()})
        itr = stratified_subset(train.y, cfg.n_train, cfg.seed)
        ite = stratified_subset(test.y, cfg.n_test, cfg.seed + 1)
        train = Split(train.x[itr], train.y[itr], train.classes)
        test = Split(test.x[ite], test.y[ite], test.classes)
    n_ood = cfg.n_ood or len(test.x)
    ood = {}
    for o in cfg.ood:
        ood[o], files = _ood_set(name, o, n_ood, test, raw_root, cfg.seed)
        raw_files.update(files)
    arrays = DatasetArrays(name, train.classes, train.x, train.y, test.x, test.y, ood)
    return arrays, raw_files


def ood_file(name: str) -> str:
    """``local:<name>`` sets are stored as ``ood_local-<name>_x.npy`` (no colon in file names)."""
    return f"ood_{name.replace(':', '-')}_x.npy"


def _arrays_to_files(ds: DatasetArrays) -> dict[str, np.ndarray]:
    files = {"train_x.npy": ds.x_train, "train_y.npy": ds.y_train, "test_x.npy": ds.x_test, "test_y.npy": ds.y_test}
    files.update({ood_file(k): v for k, v in ds.ood.items()})
    return files


def write_dataset(ds: DatasetArrays, out: Path, provenance: dict) -> dict:
    """Write arrays + manifest into ``out`` atomically (the whole folder appears at once)."""
    with atomic_dir(out) as tmp:
        sums = {}
        for fname, arr in _arrays_to_files(ds).items():
            np.save(tmp / fname, np.ascontiguousarray(arr), allow_pickle=False)
            sums[fname] = sha256_file(tmp / fname)
        manifest = {
            "version": MANIFEST_VERSION,
            "name": ds.name,
            "classes": ds.classes,
            "counts": {"train": int(len(ds.y_train)), "test": int(len(ds.y_test)),
                       **{f"ood_{k}": int(len(v)) for k, v in ds.ood.items()}},
            "ood": list(ds.ood),
            "sha256": sums,
            **provenance,
        }
        atomic_write_json(tmp / "manifest.json", manifest)
    return manifest


def load_dataset(folder: str | Path, verify: bool = True) -> DatasetArrays:
    """Read a dataset folder written by :func:`write_dataset`, checking every array's sha256."""
    folder = Path(folder)
    mpath = folder / "manifest.json"
    if not mpath.is_file():
        raise DatasetFormatError(f"{mpath}: missing; run the data stage (dvc repro data@<name>)")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise DatasetFormatError(f"{mpath}: not valid JSON ({e})") from None
    if manifest.get("version") != MANIFEST_VERSION:
        raise DatasetFormatError(f"{mpath}: manifest version {manifest.get('version')} != {MANIFEST_VERSION}")
    arrays = {}
    for fname, digest in manifest["sha256"].items():
        path = folder / fname
        if not path.is_file():
            raise DatasetFormatError(f"{path}: listed in the manifest but missing")
        if verify and sha256_file(path) != digest:
            raise DatasetFormatError(f"{path}: sha256 mismatch with {mpath} (corrupt or modified)")
        arrays[fname] = np.load(path, allow_pickle=False)
    ood = {k: arrays[ood_file(k)] for k in manifest["ood"]}
    return DatasetArrays(manifest["name"], manifest["classes"], arrays["train_x.npy"], arrays["train_y.npy"],
                         arrays["test_x.npy"], arrays["test_y.npy"], ood)
