"""Sample quality: Inception Score and Fréchet Inception Distance through torch-fidelity.

IS and FID are only meaningful with the standard Inception weights (the TF-2015 InceptionV3 that
torch-fidelity ships as ``weights-inception-2015-12-05-6726825d.pth``). Where they come from, in order:

1. env ``EBM_INCEPTION_WEIGHTS`` (a local file),
2. the params value ``evaluate.inception_weights`` (a local file; ``""`` = none given),
3. torch-fidelity's own copy in the torch hub cache (``$TORCH_HOME/hub/checkpoints``), downloaded once
   when online (bounded by timeouts; never attempted with ``EBM_OFFLINE=1``).

Without weights, :func:`sample_quality` returns ``None`` for IS and FID together with a ``reason``:
nothing is made up. :func:`frechet_distance` is our own implementation of the Fréchet distance between
Gaussians, independent of torch-fidelity (the tests check one against the other).

Nothing here touches the network or imports torch-fidelity at import time.
"""
from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
from scipy import linalg

from ebm import env
from ebm.data.sources import _offline

ENV_WEIGHTS = "EBM_INCEPTION_WEIGHTS"
WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
# torch-fidelity 0.4's URL_INCEPTION_V3, used only if torch-fidelity does not expose it itself.
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_FILE}"
HOW_TO_PROVIDE = (f"set {ENV_WEIGHTS}=/path/to/{WEIGHTS_FILE} or evaluate.inception_weights "
                  f"(the file is {WEIGHTS_URL})")
CONNECT_TIMEOUT_S = 15.0  # per blocking socket operation (connect, each read): a stalled download fails fast
DOWNLOAD_DEADLINE_S = 300.0  # the whole ~92 MB download
ISC_SPLITS = 10  # the standard 10 splits of the samples for IS mean ± std (fewer for < 20 samples)


# --------------------------------------------------------------------------------------------- Fréchet distance

def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet (2-Wasserstein²) distance between N(mu1, sigma1) and N(mu2, sigma2):
    ‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2}).

    ``mu*`` (D,), ``sigma*`` (D, D) covariances (in float64 internally). When Σ1 Σ2 is singular and its
    square root is numerically unusable, ``eps`` · I is added to both covariances (as in pytorch-fid);
    tiny imaginary parts of the square root (numerical noise) are dropped, large ones raise ValueError.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    diff = mu1 - mu2  # (D,)
    covmean = _sqrtm_product(s1, s2)
    if covmean is None:  # singular product: regularise
        offset = np.eye(s1.shape[0]) * eps  # (D, D)
        covmean = _sqrtm_product(s1 + offset, s2 + offset, strict=True)
    if np.iscomplexobj(covmean):
        imag = np.max(np.abs(np.diagonal(covmean).imag))
        if imag > 1e-3 * max(1.0, np.max(np.abs(np.diagonal(covmean).real))):
            raise ValueError(f"(Σ1 Σ2)^(1/2) has a large imaginary component ({imag:.3g})")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def _sqrtm_product(s1: np.ndarray, s2: np.ndarray, *, strict: bool = False) -> np.ndarray | None:
    """(s1 s2)^{1/2} (D, D), or None when it is not finite or its relative error is large (unless strict)."""
    a = s1 @ s2  # (D, D)
    with np.errstate(all="ignore"):
        root = linalg.sqrtm(a)
        finite = np.isfinite(root).all()
        err = np.linalg.norm(root @ root - a) / max(np.linalg.norm(a), 1e-300) if finite else np.inf
    if strict or (finite and err < 1e-5):
        return root
    return None


# ------------------------------------------------------------------------------------------ Inception weights

def _default_weights() -> tuple[str, str]:
    """(URL, cache path) of torch-fidelity's own Inception weights: where its ``load_state_dict_from_url``
    looks (``torch.hub.get_dir()/checkpoints/<file name>``) before downloading."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3 as url
    except ImportError:
        url = WEIGHTS_URL
    return url, os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))


def _download(url: str, dst: str, *, timeout: float, deadline: float) -> None:
    """Fetch ``url`` to ``dst`` through a temporary file and an atomic rename, failing after ``timeout``
    seconds without progress on any socket operation or ``deadline`` seconds in all (torch.hub's own
    download has no timeout and can hang indefinitely)."""
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{dst}.{os.getpid()}.partial"
    start = time.monotonic()
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "torch.hub"})
        with urllib.request.urlopen(req, timeout=timeout) as u, open(tmp, "wb") as f:
            while chunk := u.read(1 << 20):
                f.write(chunk)
                if time.monotonic() - start > deadline:
                    raise TimeoutError(f"download took longer than {deadline:g} s")
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def resolve_inception_weights(param: str, *, timeout: float = CONNECT_TIMEOUT_S,
                              deadline: float = DOWNLOAD_DEADLINE_S) -> tuple[str | None, str | None]:
    """Where the Inception weights come from: ``(path, reason)``.

    Precedence: env ``EBM_INCEPTION_WEIGHTS`` > ``param`` (``evaluate.inception_weights``; ``""`` = none)
    > torch-fidelity's default (its torch hub cache, downloaded there now if missing and online).

    - ``(path, None)``: use this local file (``feature_extractor_weights_path``);
    - ``(None, None)``: use torch-fidelity's default, which is in its cache;
    - ``(None, reason)``: no weights; ``reason`` says why and how to provide them. A named file that does
      not exist, ``EBM_OFFLINE=1`` with an empty cache, or a failed download are reasons, not errors.
    """
    for source, value in ((f"env {ENV_WEIGHTS}", env.text_var(ENV_WEIGHTS)),
                          ("evaluate.inception_weights", param or "")):
        if value.strip():
            path = str(Path(value.strip()).expanduser())
            if not os.path.isfile(path):
                return None, f"Inception weights not available: {source} names {path}, which does not exist; " \
                             f"{HOW_TO_PROVIDE}"
            return path, None
    url, cached = _default_weights()
    if os.path.isfile(cached):
        return None, None
    if _offline():
        return None, (f"Inception weights not available: offline (EBM_OFFLINE=1) and not in torch-fidelity's "
                      f"cache ({cached}); {HOW_TO_PROVIDE}")
    try:
        _download(url, cached, timeout=timeout, deadline=deadline)
    except Exception as e:  # noqa: BLE001 - any failure (DNS, HTTP, timeout, disk) means "no weights"
        return None, (f"Inception weights not available: download of {url} failed ({type(e).__name__}: {e}); "
                      f"{HOW_TO_PROVIDE}")
    return None, None


# ------------------------------------------------------------------------------------------------- IS and FID

class _UInt8Images(torch.utils.data.Dataset):
    """In-memory images as torch-fidelity expects them: item i is a uint8 (3, H, W) tensor."""

    def __init__(self, x: np.ndarray):
        self.x = x  # (N, H, W, 3) uint8

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.x[i])).permute(2, 0, 1).contiguous()  # (3, H, W)


def _check_images(x: np.ndarray, name: str) -> None:
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"{name}: expected uint8 images (N, H, W, 3), got "
                         f"{getattr(x, 'dtype', type(x))} {getattr(x, 'shape', '')}")


def sample_quality(fake: np.ndarray, real: np.ndarray, *, weights: str, device: torch.device | str,
                   batch_size: int = 100, progress: bool = False) -> dict:
    """Inception Score of ``fake`` (mean ± std over 10 splits, or N // 2 splits for N < 20 images: a
    one-image split has IS 1 by construction) and FID of ``fake`` against ``real``.

    ``fake``, ``real``: uint8 (N, 32, 32, 3). ``weights``: ``evaluate.inception_weights`` (see
    :func:`resolve_inception_weights`). ``progress``: torch-fidelity's own bars over the feature
    extraction of each image set (its ``verbose``). Returns ``{"is", "is_std", "fid", "n_fake", "n_real", "reason"}``;
    without weights, or when torch-fidelity fails, the three metrics are None and ``reason`` says why.
    """
    _check_images(fake, "fake")
    _check_images(real, "real")
    out = {"is": None, "is_std": None, "fid": None, "n_fake": int(len(fake)), "n_real": int(len(real)),
           "reason": None}
    if len(fake) < 2 or len(real) < 2:
        out["reason"] = f"IS/FID need at least 2 images per set (fake {len(fake)}, real {len(real)})"
        return out
    path, reason = resolve_inception_weights(weights)
    if reason is not None:
        out["reason"] = reason
        return out
    try:
        m = _calculate(fake, real, path=path, device=torch.device(device), batch_size=batch_size,
                       progress=progress)
    except Exception as e:  # noqa: BLE001 - a failed metric is reported, never replaced by a number
        out["reason"] = f"torch-fidelity failed: {type(e).__name__}: {e}"
        return out
    out.update({"is": float(m["inception_score_mean"]), "is_std": float(m["inception_score_std"]),
                "fid": float(m["frechet_inception_distance"])})
    return out


def isc_splits(n: int) -> int:
    """Splits for the IS of ``n`` images: the standard 10, but at least 2 images in each."""
    return max(1, min(ISC_SPLITS, n // 2))


def _calculate(fake: np.ndarray, real: np.ndarray, *, path: str | None, device: torch.device,
               batch_size: int, progress: bool) -> dict:
    """torch-fidelity's ``calculate_metrics`` (isc on ``fake``; fid of ``fake`` vs ``real``), in memory,
    without its on-disk feature cache or DataLoader worker processes."""
    import contextlib

    import torch_fidelity

    cuda = device.type == "cuda"
    ctx = torch.cuda.device(device) if cuda else contextlib.nullcontext()  # torch-fidelity uses .cuda()
    with ctx:
        return torch_fidelity.calculate_metrics(
            input1=_UInt8Images(fake), input2=_UInt8Images(real), isc=True, fid=True, cuda=cuda,
            batch_size=batch_size, feature_extractor_weights_path=path, isc_splits=isc_splits(len(fake)),
            cache=False, save_cpu_ram=True, verbose=progress)
