"""The evaluate stage's computation: classification, calibration and OOD detection for one model."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ebm.config import EvaluateConfig
from ebm.data import DatasetArrays
from ebm.eval.classify import classification_metrics, predict_logits
from ebm.augment import add_noise, to_tensor
from ebm.eval.ood import SCORES, auroc, score_grad_norm


def grad_norm_scores(model: nn.Module, x: np.ndarray, *, batch_size: int, device: torch.device,
                     noise: float) -> np.ndarray:
    model.eval()
    out = [score_grad_norm(model, add_noise(to_tensor(x[i:i + batch_size]).to(device), noise))
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out)


def evaluate(model: nn.Module, data: DatasetArrays, cfg: EvaluateConfig, device: torch.device, *,
             progress: bool = True) -> tuple[dict, list[dict], dict[str, np.ndarray]]:
    """Returns (metrics, reliability bins, raw scores per set and score name for histograms)."""
    torch.manual_seed(cfg.seed)  # the test-noise draw
    kw = dict(batch_size=cfg.batch_size, device=device, noise=cfg.test_noise, progress=progress)
    logits = predict_logits(model, data.x_test, desc="test", **kw)
    metrics, bins = classification_metrics(logits, data.y_test, cfg.ece_bins)
    scores = {f"test/{s}": fn(logits) for s, fn in SCORES.items()}
    gkw = dict(batch_size=cfg.batch_size, device=device, noise=cfg.test_noise)
    scores["test/pxgrad"] = grad_norm_scores(model, data.x_test, **gkw)
    ood: dict[str, dict[str, float]] = {}
    for name, x in data.ood.items():
        lo = predict_logits(model, x, desc=f"ood {name}", **kw)
        ood[name] = {}
        for s, fn in SCORES.items():
            scores[f"{name}/{s}"] = fn(lo)
            ood[name][s] = auroc(scores[f"test/{s}"], scores[f"{name}/{s}"])
        scores[f"{name}/pxgrad"] = grad_norm_scores(model, x, **gkw)
        ood[name]["pxgrad"] = auroc(scores["test/pxgrad"], scores[f"{name}/pxgrad"])
    metrics["ood_auroc"] = ood
    metrics["n_test"] = int(len(data.y_test))
    return metrics, bins, scores
