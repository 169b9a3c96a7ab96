"""Where images come from: torchvision (online, checksummed) or a local folder / .tar.gz archives.

Every source returns uint8 arrays x (N, 32, 32, 3) and int64 labels y (N,), plus the class names and
a record of the raw files it read (name → sha256) for the dataset manifest.

Offline, a missing dataset raises :class:`DatasetUnavailableError` naming the dataset, the files that
were looked for and how to provide them. Set ``EBM_OFFLINE=1`` to never attempt a download.
"""
from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ebm import env
from ebm.errors import DatasetFormatError, DatasetUnavailableError
from ebm.io import sha256_file

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp")

# What torchvision expects under the dataset's raw folder (checked by torchvision with md5).
TORCHVISION_FILES = {
    "cifar10": ["cifar-10-python.tar.gz (md5 c58f30108f718f92721af3b95e9d8dcd) or cifar-10-batches-py/"],
    "cifar100": ["cifar-100-python.tar.gz (md5 eb9058c3a382ffc7106e4002c42a8d85) or cifar-100-python/"],
    "svhn": ["train_32x32.mat (md5 e26dedcc434d2e4c54c9b2d4a06d8373)",
             "test_32x32.mat (md5 eb5a983be6a315427106f1b164d9cef3)"],
}


@dataclass
class Split:
    x: np.ndarray  # (N, 32, 32, 3) uint8
    y: np.ndarray  # (N,) int64
    classes: list[str]
    files: dict[str, str] = field(default_factory=dict)  # raw file → sha256


def _offline() -> bool:
    return env.flag("EBM_OFFLINE")


def _how_to_provide(name: str, raw: Path) -> str:
    expected = "\n  ".join(f"{raw}/{f}" for f in TORCHVISION_FILES.get(name, []))
    return (
        f"dataset '{name}' is not available offline.\n"
        f"Looked for (torchvision source):\n  {expected}\n"
        f"and for a local copy (source: local): {raw}/train.tar.gz and {raw}/test.tar.gz, or {raw}/train/ "
        f"and {raw}/test/ with one subfolder of images per class.\n"
        f"Provide them by going online once (the data stage downloads through torchvision), or by copying "
        f"the files there, e.g. `mkdir -p {raw} && cp /path/to/cifar10-jpeg/*.tar.gz {raw}/` and setting "
        f"data.{name}.source to local."
    )


# ----------------------------------------------------------------------------------------------------
# torchvision


def load_torchvision(name: str, raw: Path, train: bool) -> Split:
    """CIFAR-10/100 or SVHN through torchvision; download only when online and the files are missing."""
    import torchvision.datasets as tvd

    raw.mkdir(parents=True, exist_ok=True)

    def build(download: bool):
        if name == "cifar10":
            return tvd.CIFAR10(str(raw), train=train, download=download)
        if name == "cifar100":
            return tvd.CIFAR100(str(raw), train=train, download=download)
        if name == "svhn":
            return tvd.SVHN(str(raw), split="train" if train else "test", download=download)
        raise DatasetFormatError(f"torchvision source does not know dataset '{name}'")

    try:
        ds = build(download=False)
    except RuntimeError:
        if _offline():
            raise DatasetUnavailableError(_how_to_provide(name, raw)) from None
        try:
            ds = build(download=True)
        except (OSError, RuntimeError) as e:  # URLError is an OSError; torchvision raises RuntimeError on md5
            raise DatasetUnavailableError(f"download failed ({e}).\n" + _how_to_provide(name, raw)) from None
    if name == "svhn":
        x = np.ascontiguousarray(ds.data.transpose(0, 2, 3, 1))  # (N, 3, 32, 32) → (N, 32, 32, 3)
        y = np.asarray(ds.labels, dtype=np.int64)
        classes = [str(i) for i in range(10)]
    else:
        x, y, classes = np.asarray(ds.data), np.asarray(ds.targets, dtype=np.int64), list(ds.classes)
    files = {str(p.relative_to(raw)): sha256_file(p) for p in sorted(raw.iterdir()) if p.is_file()}
    return Split(x=x, y=y, classes=classes, files=files)


# ----------------------------------------------------------------------------------------------------
# local folder or archives


def _decode(data: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data)).convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise DatasetFormatError(f"{where}: not a readable image ({e})") from None
    if img.size != (32, 32):
        side = min(img.size)  # centre crop to a square, then resize to 32×32
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((32, 32), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def _safe_member(name: str, archive: Path) -> PurePosixPath:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts:
        raise DatasetFormatError(f"{archive}: unsafe member path {name!r} (absolute or contains '..')")
    return p


def _read_archive(archive: Path) -> tuple[list[tuple[str, str, bytes]], list[PurePosixPath]]:
    """(class, member name, bytes) for each image in a .tar.gz of CLASS/file images, and the archive's
    folders. Nothing is extracted to disk; links, devices and unsafe paths are refused."""
    out, dirs = [], []
    try:
        with tarfile.open(archive, "r:*") as tar:
            for m in tar:
                p = _safe_member(m.name, archive)
                if m.isdir():
                    dirs.append(PurePosixPath(*[q for q in p.parts if q not in (".", "")] or ["."]))
                    continue
                if not m.isfile():
                    raise DatasetFormatError(f"{archive}: member {m.name!r} is not a regular file")
                if p.suffix.lower() not in IMAGE_EXTS:
                    continue
                parts = [q for q in p.parts if q not in (".", "")]
                if len(parts) < 2:
                    raise DatasetFormatError(f"{archive}: member {m.name!r} is not inside a class folder")
                out.append((parts[-2], m.name, tar.extractfile(m).read()))
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DatasetFormatError(f"{archive}: corrupt or unreadable archive ({e})") from None
    return out, dirs


def _read_folder(folder: Path) -> tuple[list[tuple[str, str, bytes]], list[PurePosixPath]]:
    out = []
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
    for cls_dir in class_dirs:
        for f in sorted(cls_dir.iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTS:
                out.append((cls_dir.name, f.relative_to(folder).as_posix(), f.read_bytes()))
    return out, [PurePosixPath(p.name) for p in class_dirs]


def _check_no_empty_class(items: list[tuple[str, str, bytes]], dirs: list[PurePosixPath], where: Path) -> None:
    """A class folder without images would silently shrink the label set (torchvision's ImageFolder
    refuses it too). Class folders are the folders beside those that hold images."""
    full = {PurePosixPath(n).parent for _, n, _ in items}
    parents = {d.parent for d in full}
    empty = sorted(str(d) for d in set(dirs) - full if d.parent in parents)
    if empty:
        raise DatasetFormatError(f"{where}: class folder(s) without images: {', '.join(empty)} "
                                 f"(image types: {', '.join(IMAGE_EXTS)})")


def _verify_sums(raw: Path) -> None:
    sums = raw / "SHA256SUMS"
    if not sums.is_file():
        return
    for number, line in enumerate(sums.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        digest, _, fname = line.strip().partition(" ")
        if len(digest) != 64 or any(ch not in "0123456789abcdefABCDEF" for ch in digest) or not fname.strip():
            raise DatasetFormatError(f"{sums}, line {number}: expected '<64 hex digits>  <file name>', "
                                     f"got {line[:80]!r}")
        target = raw / fname.strip().lstrip("*")
        if target.is_file() and sha256_file(target) != digest:
            raise DatasetFormatError(f"{target}: sha256 does not match {sums} (corrupt or changed file)")


def load_local(name: str, raw: Path, train: bool) -> Split:
    """Images from ``raw/{train,test}.tar.gz`` or ``raw/{train,test}/CLASS/*``; labels from sorted
    class-folder names (the torchvision ImageFolder convention). Verifies ``raw/SHA256SUMS`` if present."""
    split = "train" if train else "test"
    archive, folder = raw / f"{split}.tar.gz", raw / split
    if archive.is_file():
        _verify_sums(raw)
        items, dirs = _read_archive(archive)
        files = {archive.name: sha256_file(archive)}
    elif folder.is_dir():
        items, dirs = _read_folder(folder)
        files = {}
    else:
        raise DatasetUnavailableError(
            f"dataset '{name}' (source: local): found neither {archive} nor {folder}/.\n"
            + _how_to_provide(name, raw))
    if not items:
        raise DatasetFormatError(f"dataset '{name}': no images in {archive if archive.is_file() else folder}")
    _check_no_empty_class(items, dirs, archive if archive.is_file() else folder)
    items.sort(key=lambda t: (t[0], t[1]))
    classes = sorted({c for c, _, _ in items})
    index = {c: i for i, c in enumerate(classes)}
    x = np.stack([_decode(b, f"{name}:{n}") for _, n, b in items])
    y = np.asarray([index[c] for c, _, _ in items], dtype=np.int64)
    return Split(x=x, y=y, classes=classes, files=files)


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def load_image_folder(name: str, folder: Path, n: int, seed: int) -> Split:
    """``n`` seeded images (0 = all) from any folder tree of images, for OOD sets: CelebA's
    ``img_align_celeba/`` or a user's folder. Non-square images are centre-cropped, then resized to 32×32
    (the JEM code resizes CelebA's shorter side to 32 without a crop; a batch needs square images).
    Labels are all 0: OOD sets are unlabelled."""
    if not folder.is_dir():
        raise DatasetUnavailableError(
            f"OOD set '{name}': folder {folder}/ not found.\nProvide it by copying images (png/jpg, any size, "
            f"any sub-folders) there, e.g. `mkdir -p {folder} && cp /path/to/images/*.jpg {folder}/`"
            + (", or by going online once (torchvision downloads CelebA's test split)." if name == "celeba" else "."))
    files = _image_files(folder)
    if not files:
        raise DatasetFormatError(f"OOD set '{name}': no images ({', '.join(IMAGE_EXTS)}) under {folder}/")
    if 0 < n < len(files):
        pick = np.sort(np.random.default_rng(seed).choice(len(files), size=n, replace=False))
        files = [files[i] for i in pick]
    digest = hashlib.sha256()  # one checksum over the names and bytes of the images read
    images = []
    for f in files:
        data = f.read_bytes()
        digest.update(str(f.relative_to(folder)).encode() + b"\0" + data)
        images.append(_decode(data, f"{name}:{f}"))
    return Split(x=np.stack(images), y=np.zeros(len(images), dtype=np.int64), classes=["ood"],
                 files={f"{folder.name}/<{len(files)} images>": digest.hexdigest()})


def load_celeba(raw: Path, n: int, seed: int) -> Split:
    """CelebA's test split through torchvision (download when online), or any local image folder at
    ``raw`` (e.g. ``raw/img_align_celeba/``). Only ``n`` images are decoded."""
    tv_images = raw / "celeba" / "img_align_celeba"
    if not tv_images.is_dir() and raw.is_dir() and _image_files(raw):
        return load_image_folder("celeba", raw, n, seed)
    if _offline() and not tv_images.is_dir():
        raise DatasetUnavailableError(
            f"OOD set 'celeba' is not available offline: no images under {raw}/ and no torchvision copy at "
            f"{raw}/celeba/.\nProvide it by copying CelebA images (any size) into {raw}/, or go online once.")
    try:
        import torchvision.datasets as tvd

        ds = tvd.CelebA(str(raw), split="test", download=not _offline() and not tv_images.is_dir())
    except (OSError, RuntimeError) as e:
        raise DatasetUnavailableError(
            f"OOD set 'celeba' is not available ({type(e).__name__}: {e}).\nLooked for torchvision's "
            f"{raw}/celeba/ (img_align_celeba/ + list_eval_partition.txt) and for images under {raw}/.\n"
            f"Provide them by going online once, or by copying CelebA images into {raw}/.") from None
    idx = np.arange(len(ds))
    if 0 < n < len(ds):
        idx = np.sort(np.random.default_rng(seed).choice(len(ds), size=n, replace=False))
    x = np.stack([_decode(_png_bytes(ds[int(i)][0]), f"celeba:{i}") for i in idx])
    return Split(x=x, y=np.zeros(len(x), dtype=np.int64), classes=["ood"],
                 files={"celeba/list_eval_partition.txt": sha256_file(raw / "celeba" / "list_eval_partition.txt")})


def _png_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def has_local_copy(raw: Path, train: bool) -> bool:
    split = "train" if train else "test"
    return (raw / f"{split}.tar.gz").is_file() or (raw / split).is_dir()


def load_source(name: str, source: str, raw: Path, train: bool) -> Split:
    if source == "local":
        return load_local(name, raw, train)
    if source == "torchvision":
        return load_torchvision(name, raw, train)
    raise DatasetFormatError(f"unknown source {source!r} for dataset '{name}'")
