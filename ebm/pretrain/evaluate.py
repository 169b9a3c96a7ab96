"""Evaluation of a pretrained encoder: linear probe, test bits/dim, OOD AUROC (generative and
representation scores) and accuracy under the project's corruption set."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ebm.augment import to_tensor
from ebm.config import PretrainConfig
from ebm.data import DatasetArrays
from ebm.eval.ood import auroc
from ebm.pretrain.corruptions import corrupt
from ebm.pretrain.losses import bits_per_dim
from ebm.pretrain.model import HybridTransformer


@torch.no_grad()
def embed(model: HybridTransformer, x: np.ndarray, device: torch.device, batch: int,
          with_bpd: bool = True, progress: bool = False, desc: str = "embed") -> tuple[torch.Tensor, np.ndarray | None]:
    """Pooled encoder features (N, D) on the CPU and, if asked, bits/dim (N,) of uint8 images, in one pass."""
    feats, bpd = [], []
    for i in tqdm(range(0, len(x), batch), desc=desc, disable=not progress, leave=False):
        xb = to_tensor(x[i:i + batch]).to(device)
        h = model.encode(xb)  # (B, T+1, D)
        feats.append(h.mean(1).float().cpu())
        if with_bpd:
            bpd.append(bits_per_dim(model.log_prob(xb, model.decode(h)), xb[0].numel()).double().cpu().numpy())
    return torch.cat(feats), (np.concatenate(bpd) if with_bpd else None)


def corruption_set(x: np.ndarray, cfg: PretrainConfig) -> dict[tuple[str, int], np.ndarray]:
    """Every (corruption, severity) of the test images; made once and shared by all weights."""
    return {(name, s): corrupt(x, name, s, cfg.seed) for name in cfg.corruptions for s in cfg.severities}


class LinearProbe:
    """Multinomial logistic regression on standardised frozen features, full-batch Adam."""

    def __init__(self, feats: torch.Tensor, y: np.ndarray, n_classes: int, *, steps: int, lr: float, seed: int):
        self.mu, self.sd = feats.mean(0), feats.std(0) + 1e-6
        z = (feats - self.mu) / self.sd  # (N, D)
        torch.manual_seed(seed)
        self.lin = torch.nn.Linear(z.shape[1], n_classes)
        opt = torch.optim.Adam(self.lin.parameters(), lr=lr)
        yt = torch.as_tensor(y)
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(self.lin(z), yt).backward()
            opt.step()

    @torch.no_grad()
    def accuracy(self, feats: torch.Tensor, y: np.ndarray) -> float:
        pred = self.lin((feats - self.mu) / self.sd).argmax(1).numpy()
        return float((pred == y).mean())


def knn_score(train: torch.Tensor, query: torch.Tensor, k: int, chunk: int = 1024) -> np.ndarray:
    """Mean cosine similarity of each query feature to its k nearest training features (higher = more
    in-distribution), computed in chunks so that 50k × 10k similarities never sit in memory at once."""
    tn = F.normalize(train, dim=1)
    out = [(F.normalize(query[i:i + chunk], dim=1) @ tn.T).topk(min(k, len(tn)), dim=1).values.mean(1)
           for i in range(0, len(query), chunk)]
    return torch.cat(out).double().numpy()


def evaluate_pretrained(model: HybridTransformer, data: DatasetArrays, cfg: PretrainConfig,
                        device: torch.device, corrupted: dict[tuple[str, int], np.ndarray] | None = None,
                        progress: bool = False) -> dict:
    """Linear-probe accuracy, test bits/dim, AUROC of −bpd and of the k-NN score per OOD set, and probe
    accuracy per corruption and severity (``corrupted`` from :func:`corruption_set`, made here if None)."""
    model.eval()
    b = cfg.eval_batch_size
    corrupted = corruption_set(data.x_test, cfg) if corrupted is None else corrupted
    f_train, _ = embed(model, data.x_train, device, b, with_bpd=False, progress=progress, desc="embed train")
    f_test, bpd_test = embed(model, data.x_test, device, b, progress=progress, desc="decode test")
    probe = LinearProbe(f_train, data.y_train, len(data.classes), steps=cfg.probe_steps, lr=cfg.probe_lr,
                        seed=cfg.seed)
    knn_test = knn_score(f_train, f_test, cfg.knn_k)
    ood = {}
    for name, x in data.ood.items():
        f_ood, bpd_ood = embed(model, x, device, b, progress=progress, desc=f"decode {name}")
        ood[name] = {"bpd": auroc(-bpd_test, -bpd_ood), "knn": auroc(knn_test, knn_score(f_train, f_ood, cfg.knn_k))}
    by: dict[str, dict[str, float]] = {}
    for (name, s), xc in corrupted.items():
        f_c, _ = embed(model, xc, device, b, with_bpd=False, progress=progress, desc=f"embed {name} {s}")
        by.setdefault(name, {})[str(s)] = probe.accuracy(f_c, data.y_test)
    accs = [a for d in by.values() for a in d.values()]
    return {"linear_probe_accuracy": probe.accuracy(f_test, data.y_test),
            "test_bpd": float(bpd_test.mean()),
            "ood_auroc": ood,
            "corruption_accuracy": {"mean": float(np.mean(accs)) if accs else None, "by": by}}
