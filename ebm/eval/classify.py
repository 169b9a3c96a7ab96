"""Accuracy, negative log-likelihood and calibration (ECE with a reliability diagram's bins)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ebm.augment import add_noise, to_tensor


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray, *, batch_size: int, device: torch.device,
                   noise: float = 0.0, desc: str = "logits", progress: bool = True,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Logits (N, C) for images (N, 32, 32, 3) in 0-255 units, on the CPU. Test-time noise (std ``noise``)
    is drawn afresh on every call, from ``generator`` (on ``device``), as the JEM code's test transform does."""
    model.eval()
    out = []
    for i in tqdm(range(0, len(x), batch_size), desc=desc, disable=not progress, leave=False):
        xb = add_noise(to_tensor(x[i:i + batch_size]).to(device), noise, generator)
        out.append(model(xb).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> list[dict]:
    """Equal-width confidence bins on [0, 1]; each bin: its edges, count, mean confidence, accuracy."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        m = which == b
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": int(m.sum()),
                     "confidence": float(confidence[m].mean()) if m.any() else None,
                     "accuracy": float(correct[m].mean()) if m.any() else None})
    return bins


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    """ECE = Σ_b |B_b|/n · |acc(B_b) − conf(B_b)| over equal-width bins (the papers use 20)."""
    n = len(confidence)
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"])
                     for b in reliability_bins(confidence, correct, n_bins) if b["count"]))


def classification_metrics(logits: torch.Tensor, y: np.ndarray, n_bins: int) -> tuple[dict, list[dict]]:
    yt = torch.from_numpy(y)
    probs = logits.softmax(1)
    conf, pred = probs.max(1)
    correct = (pred == yt).numpy().astype(np.float64)
    nll = torch.nn.functional.cross_entropy(logits, yt).item()
    conf_np = conf.double().numpy()
    metrics = {"accuracy": float(correct.mean()), "nll": nll,
               "ece": expected_calibration_error(conf_np, correct, n_bins)}
    return metrics, reliability_bins(conf_np, correct, n_bins)
