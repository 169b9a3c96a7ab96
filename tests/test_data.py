import io
import json
import tarfile

import numpy as np
import torch
import pytest
from PIL import Image

from ebm.config import DataConfig
from ebm.data import load_dataset, write_dataset
from ebm.data.procedural import SHAPE_CLASSES, make_shapes, make_textures
from ebm.data.sources import DatasetFormatError, DatasetUnavailableError, load_local, load_torchvision
from ebm.data.store import build_dataset, interpolations, stratified_subset


def test_shapes_are_deterministic_and_balanced():
    x1, y1 = make_shapes(120, seed=3)
    x2, y2 = make_shapes(120, seed=3)
    x3, _ = make_shapes(120, seed=4)
    assert x1.shape == (120, 32, 32, 3) and x1.dtype == np.uint8
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    assert np.bincount(y1, minlength=10).tolist() == [12] * len(SHAPE_CLASSES)


def test_textures_differ_in_content_from_shapes():
    t = make_textures(64, seed=0)
    x, _ = make_shapes(64, seed=0)
    assert t.shape == (64, 32, 32, 3)
    # textures cover the image with two colours in a pattern: far more edge pixels than one shape
    def edges(a):
        g = a.astype(float).mean(-1)
        return (np.abs(np.diff(g, axis=1)) > 40).mean()
    assert edges(t) > 2 * edges(x)


def test_stratified_subset_is_balanced_and_seeded():
    y = np.repeat(np.arange(5), 40)
    idx = stratified_subset(y, 50, seed=0)
    assert len(idx) == 50 and len(set(idx)) == 50
    assert np.bincount(y[idx]).tolist() == [10] * 5
    assert np.array_equal(idx, stratified_subset(y, 50, seed=0))
    assert len(stratified_subset(y, 0, seed=0)) == 200


def test_interpolations_are_means_of_two_images():
    x = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    xi = interpolations(x, 10, seed=1)
    assert xi.shape == (10, 32, 32, 3)
    assert not any(np.array_equal(xi[i], x[j]) for i in range(10) for j in range(20))
    # each image is the float mean of two different test images (found among all pairs), not rounded down
    for img in xi:
        pairs = [(a, b) for a in range(20) for b in range(20) if a != b
                 and np.array_equal(img, (x[a].astype(np.float64) + x[b]) / 2)]
        assert pairs
    assert (xi % 1 == 0.5).any()  # odd sums keep their half
    # in the model's input space it is exactly the mean of the two images' tensors
    from ebm.augment import to_tensor
    a, b = pairs[0]
    torch.testing.assert_close(to_tensor(xi[-1:]), (to_tensor(x[a:a + 1]) + to_tensor(x[b:b + 1])) / 2)


def _cfg(**kw):
    base = dict(source="procedural", n_train=50, n_test=20, n_ood=10, ood=["textures", "noise"], seed=0)
    return DataConfig(**{**base, **kw})


def test_manifest_checksums_and_corruption(tmp_path):
    arrays, raw = build_dataset("shapes", _cfg(), tmp_path / "raw")
    out = tmp_path / "shapes"
    manifest = write_dataset(arrays, out, {"source": "procedural"})
    assert manifest["counts"] == {"train": 50, "test": 20, "ood_textures": 10, "ood_noise": 10}
    on_disk = json.loads((out / "manifest.json").read_text())
    assert set(on_disk["sha256"]) == {"train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy",
                                      "ood_textures_x.npy", "ood_noise_x.npy"}
    ds = load_dataset(out)
    assert np.array_equal(ds.x_train, arrays.x_train) and list(ds.ood) == ["textures", "noise"]
    # flip one byte of an array: the loader must name the file
    path = out / "test_x.npy"
    b = bytearray(path.read_bytes())
    b[-1] ^= 0xFF
    path.write_bytes(bytes(b))
    with pytest.raises(DatasetFormatError, match="test_x.npy: sha256 mismatch"):
        load_dataset(out)


def test_missing_manifest_is_named(tmp_path):
    with pytest.raises(DatasetFormatError, match="manifest.json: missing"):
        load_dataset(tmp_path)


def _png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buf, format="PNG")
    return buf.getvalue()


def _make_archive(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_local_source_reads_archives(tmp_path):
    raw = tmp_path / "cifar10"
    raw.mkdir()
    members = [(f"{c}/{i:04d}.png", _png((40 * k, 10 * i, 0))) for k, c in enumerate(["cat", "airplane"])
               for i in range(3)]
    _make_archive(raw / "train.tar.gz", members)
    _make_archive(raw / "test.tar.gz", members[:2] + members[3:5])
    split = load_local("cifar10", raw, train=True)
    assert split.classes == ["airplane", "cat"]  # sorted folder names, as ImageFolder
    assert split.x.shape == (6, 32, 32, 3) and split.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert split.x[0, 0, 0].tolist() == [40, 0, 0]  # airplane was k=1
    assert "train.tar.gz" in split.files
    cfg = _cfg(source="local", n_train=4, n_test=0, n_ood=3, ood=["interp"])
    arrays, files = build_dataset("cifar10", cfg, tmp_path)
    assert np.bincount(arrays.y_train).tolist() == [2, 2]
    assert len(arrays.x_test) == 4 and arrays.ood["interp"].shape == (3, 32, 32, 3)
    assert set(files) == {"cifar10/train.tar.gz", "cifar10/test.tar.gz"}


def test_local_source_reads_class_folders(tmp_path):
    for c in ("b", "a"):
        (tmp_path / "ds" / "test" / c).mkdir(parents=True)
        (tmp_path / "ds" / "test" / c / "0.png").write_bytes(_png((1, 2, 3)))
    split = load_local("ds", tmp_path / "ds", train=False)
    assert split.classes == ["a", "b"] and len(split.x) == 2


def test_local_source_refuses_unsafe_archive(tmp_path):
    raw = tmp_path / "cifar10"
    raw.mkdir()
    _make_archive(raw / "train.tar.gz", [("../evil/0.png", _png((0, 0, 0)))])
    with pytest.raises(DatasetFormatError, match="unsafe member path"):
        load_local("cifar10", raw, train=True)


def test_local_source_checks_sha256sums(tmp_path):
    raw = tmp_path / "cifar10"
    raw.mkdir()
    _make_archive(raw / "train.tar.gz", [("a/0.png", _png((0, 0, 0)))])
    (raw / "SHA256SUMS").write_text("0" * 64 + "  train.tar.gz\n")
    with pytest.raises(DatasetFormatError, match="sha256 does not match"):
        load_local("cifar10", raw, train=True)


def test_local_source_corrupt_archive(tmp_path):
    raw = tmp_path / "cifar10"
    raw.mkdir()
    (raw / "train.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DatasetFormatError, match="corrupt or unreadable archive"):
        load_local("cifar10", raw, train=True)


def test_offline_error_names_dataset_files_and_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv("EBM_OFFLINE", "1")
    with pytest.raises(DatasetUnavailableError) as e:
        load_torchvision("cifar10", tmp_path / "cifar10", train=True)
    msg = str(e.value)
    assert "dataset 'cifar10'" in msg
    assert "cifar-10-python.tar.gz" in msg and "train.tar.gz" in msg
    assert "source to local" in msg or "going online" in msg
    with pytest.raises(DatasetUnavailableError, match="found neither"):
        load_local("cifar10", tmp_path / "nothing", train=True)


def test_local_ood_folder_is_named_in_params_and_stored(tmp_path, monkeypatch):
    """`ood: [local:<name>]` reads any image tree under data/raw/ood/<name>/ (any size → 32×32)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "raw" / "ood" / "my_photos" / "nested"
    folder.mkdir(parents=True)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    cfg = DataConfig(source="procedural", n_train=20, n_test=10, n_ood=4, ood=["local:my_photos"], seed=0)
    ds, files = build_dataset("shapes", cfg, tmp_path / "raw")
    assert ds.ood["local:my_photos"].shape == (4, 32, 32, 3)
    assert any(k.startswith("ood/") for k in files)
    write_dataset(ds, tmp_path / "ds", provenance={})
    again = load_dataset(tmp_path / "ds")
    np.testing.assert_array_equal(again.ood["local:my_photos"], ds.ood["local:my_photos"])
    # same call, same images (seeded choice)
    np.testing.assert_array_equal(build_dataset("shapes", cfg, tmp_path / "raw")[0].ood["local:my_photos"],
                                  ds.ood["local:my_photos"])


def test_missing_ood_folder_and_offline_celeba_say_how_to_provide(tmp_path, monkeypatch):
    monkeypatch.setenv("EBM_OFFLINE", "1")
    cfg = DataConfig(source="procedural", n_train=20, n_test=10, n_ood=4, ood=["local:absent"], seed=0)
    with pytest.raises(DatasetUnavailableError, match=r"(?s)ood/absent/ not found.*cp "):
        build_dataset("shapes", cfg, tmp_path / "raw")
    cfg = DataConfig(source="procedural", n_train=20, n_test=10, n_ood=4, ood=["celeba"], seed=0)
    with pytest.raises(DatasetUnavailableError, match=r"celeba.*not available offline"):
        build_dataset("shapes", cfg, tmp_path / "raw")


def test_ood_names_are_validated():
    from ebm.config import ParamsError, parse_params
    import yaml
    from tests.conftest import REPO
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"]["shapes"]["ood"] = ["local:ok-name_1", "celeba"]
    parse_params(raw)
    raw["data"]["shapes"]["ood"] = ["local:../etc"]
    with pytest.raises(ParamsError, match="local:<folder name"):
        parse_params(raw)
