"""Out-of-distribution detection: scores where larger means "more in-distribution", and AUROC."""
from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata


def score_logpx(logits: torch.Tensor) -> np.ndarray:
    """log p~(x) = logsumexp_y f(x)[y], the JEM "px" score."""
    return torch.logsumexp(logits, 1).double().numpy()


def score_maxprob(logits: torch.Tensor) -> np.ndarray:
    """max_y p(y|x), the "py" score."""
    return logits.softmax(1).max(1).values.double().numpy()


SCORES = {"logpx": score_logpx, "maxprob": score_maxprob}


def auroc(score_in: np.ndarray, score_out: np.ndarray) -> float:
    """Area under the ROC curve with in-distribution as positives: P(s_in > s_out) + ½ P(tie),
    computed exactly from average ranks (Mann–Whitney U)."""
    n_in, n_out = len(score_in), len(score_out)
    if n_in == 0 or n_out == 0:
        raise ValueError("AUROC needs at least one in- and one out-of-distribution score")
    ranks = rankdata(np.concatenate([score_in, score_out]))
    u = ranks[:n_in].sum() - n_in * (n_in + 1) / 2
    return float(u / (n_in * n_out))


def score_grad_norm(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """JEM's "pxgrad" score: -‖∇_x log p~(x)‖₂ per image (in-distribution images sit where the density
    is flat). ``x`` (B, 3, H, W) on the model's device; returns (B,) on the host."""
    x = x.detach().clone().requires_grad_(True)
    lp = torch.logsumexp(model(x), 1)  # (B,)
    (g,) = torch.autograd.grad(lp.sum(), x)  # images are independent: the sum's gradient is per image
    return (-g.flatten(1).norm(dim=1)).double().cpu().numpy()


def roc_curve(score_in: np.ndarray, score_out: np.ndarray, max_points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) of "in-distribution if score >= t" over every distinct threshold t (or ``max_points``
    thresholds at the scores' quantiles), from (0, 0) to (1, 1). In-distribution scores are the positives."""
    both = np.concatenate([score_in, score_out])
    t = np.unique(both if max_points is None else np.quantile(both, np.linspace(0, 1, max_points)))[::-1]
    tpr = np.searchsorted(np.sort(-score_in), -t, side="right") / len(score_in)  # share of s_in >= t
    fpr = np.searchsorted(np.sort(-score_out), -t, side="right") / len(score_out)
    return np.r_[0.0, fpr, 1.0], np.r_[0.0, tpr, 1.0]
