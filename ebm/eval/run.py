"""The evaluate stage's computation: classification, calibration and OOD detection for one model."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ebm.config import EvaluateConfig
from ebm.data import DatasetArrays
from ebm.eval.classify import classification_metrics, predict_logits
from ebm.augment import add_noise, to_tensor
from ebm.eval.ood import SCORES, auroc, score_grad_norm


def grad_norm_scores(model: nn.Module, x: np.ndarray, *, batch_size: int, device: torch.device,
                     noise: float, desc: str = "pxgrad", progress: bool = False,
                     generator: torch.Generator | None = None) -> np.ndarray:
    model.eval()
    out = [score_grad_norm(model, add_noise(to_tensor(x[i:i + batch_size]).to(device), noise, generator))
           for i in tqdm(range(0, len(x), batch_size), desc=desc, disable=not progress, leave=False)]
    return np.concatenate(out)


def evaluate(model: nn.Module, data: DatasetArrays, cfg: EvaluateConfig, device: torch.device, *,
             progress: bool = True) -> tuple[dict, list[dict], dict[str, np.ndarray]]:
    """Returns (metrics, reliability bins, raw scores per set and score name for histograms)."""
    # test-time noise: fresh draws on every pass over a set (the JEM code's test transform), seeded
    noise_gen = torch.Generator(device=device).manual_seed(cfg.seed)
    kw = dict(batch_size=cfg.batch_size, device=device, noise=cfg.test_noise, progress=progress, generator=noise_gen)
    logits = predict_logits(model, data.x_test, desc="test", **kw)
    metrics, bins = classification_metrics(logits, data.y_test, cfg.ece_bins)
    scores = {f"test/{s}": fn(logits) for s, fn in SCORES.items()}
    gkw = dict(batch_size=cfg.batch_size, device=device, noise=cfg.test_noise, progress=progress, generator=noise_gen)
    scores["test/pxgrad"] = grad_norm_scores(model, data.x_test, desc="pxgrad test", **gkw)
    ood: dict[str, dict[str, float]] = {}
    for name, x in data.ood.items():
        lo = predict_logits(model, x, desc=f"ood {name}", **kw)
        ood[name] = {}
        for s, fn in SCORES.items():
            scores[f"{name}/{s}"] = fn(lo)
            ood[name][s] = auroc(scores[f"test/{s}"], scores[f"{name}/{s}"])
        scores[f"{name}/pxgrad"] = grad_norm_scores(model, x, desc=f"pxgrad {name}", **gkw)
        ood[name]["pxgrad"] = auroc(scores["test/pxgrad"], scores[f"{name}/pxgrad"])
    metrics["ood_auroc"] = ood
    metrics["n_test"] = int(len(data.y_test))
    return metrics, bins, scores


def attack_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of the ``n`` test images attacked: a seeded shuffle, as SADA-JEM attacks shuffled batches."""
    return np.sort(np.random.default_rng(seed).permutation(len(y))[:n])


def robustness(model: nn.Module, data: DatasetArrays, cfg: EvaluateConfig, device: torch.device, *,
               progress: bool = False) -> dict | None:
    """White-box PGD accuracy under L∞ and L2 at ``cfg``'s budgets (1/255 units); None when pgd_images is 0."""
    from ebm.eval.robustness import robust_accuracy

    if cfg.pgd_images == 0:
        return None
    idx = attack_subset(data.y_test, cfg.pgd_images, cfg.seed)
    x, y = data.x_test[idx], data.y_test[idx]
    kw = dict(steps=cfg.pgd_steps, restarts=cfg.pgd_restarts, batch_size=cfg.batch_size, device=device,
              seed=cfg.seed, progress=progress)
    linf = robust_accuracy(model, x, y, norm="linf", eps_list=[0.0, *cfg.pgd_linf_eps], step=cfg.pgd_linf_step, **kw)
    l2 = robust_accuracy(model, x, y, norm="l2", eps_list=[0.0, *cfg.pgd_l2_eps], step_frac=cfg.pgd_l2_step_frac,
                         **kw)
    return {"linf": linf, "l2": l2, "n_images": int(len(y)), "steps": cfg.pgd_steps, "restarts": cfg.pgd_restarts,
            "units": "eps in 1/255 of the [0, 1] pixel range"}


def sample_quality(samples: dict[str, np.ndarray], data: DatasetArrays, cfg: EvaluateConfig,
                   device: torch.device, progress: bool = False) -> dict[str, dict]:
    """IS and FID (torch-fidelity, standard Inception weights) of each sample set in ``samples.npz``
    (``fresh`` chains; ``buffer`` for models trained with a replay buffer) against the ``fid_reference``
    split (train or test); each result carries its sample sizes ``n_fake`` and ``n_real``.
    Without weights every value is None and ``reason`` says why: nothing is made up."""
    from ebm.eval.fidelity import sample_quality as fidelity

    ref = data.x_train if cfg.fid_reference == "train" else data.x_test
    real = ref if cfg.fid_real_images == 0 else ref[:cfg.fid_real_images]
    return {name: fidelity(samples[name], real, weights=cfg.inception_weights, device=device, progress=progress)
            for name in ("fresh", "buffer") if name in samples}
