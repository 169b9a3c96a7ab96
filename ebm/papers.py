"""The papers' reported numbers, as ``../shared/METHODS.md`` §7 gives them, with their source tags:
[P] paper, [C] official code/README, [S] secondary source (another paper or a leaderboard), [U] not
verified. Shown beside ours in the report; never used in a computation.

Keys: (objective, dataset) → metric → (value, tag, where). Metrics: ``accuracy`` and ``ece`` as fractions,
``is``, ``fid``, and ``auroc/<ood set>/<score>`` with our set names (svhn, interp, cifar100, celeba) and
score names (logpx, maxprob, pxgrad).
"""
from __future__ import annotations

Number = tuple[float, str, str]


def _ood(score: str, row: tuple[float, float, float, float], tag: str, where: str) -> dict[str, Number]:
    """One row of METHODS.md §7.2 (SVHN / interp / CIFAR-100 / CelebA) for one score."""
    return {f"auroc/{s}/{score}": (v, tag, where) for s, v in zip(("svhn", "interp", "cifar100", "celeba"), row)}


PAPERS: dict[tuple[str, str], dict[str, Number]] = {
    ("softmax", "cifar10"): {
        "accuracy": (0.958, "P", "JEM Table 1, WRN-28-10"),
        **_ood("maxprob", (.93, .77, .85, .62), "S", "HybViT Tab. 11 = JEM Table 3"),
    },
    ("jem", "cifar10"): {
        "accuracy": (0.929, "P", "JEM Table 1"),
        "is": (8.76, "P", "JEM Table 1"),
        "fid": (38.4, "P", "JEM Table 1"),
        **_ood("logpx", (.67, .65, .67, .75), "S", "HybViT; matches JEM Table 2"),
        **_ood("maxprob", (.89, .75, .87, .79), "S", "HybViT"),
        **_ood("pxgrad", (.83, .78, .82, .79), "U", "JEM Table 3"),
    },
    ("jempp", "cifar10"): {
        "accuracy": (0.941, "S", "HybViT Table 1, M=20"),
        "is": (8.11, "S", "HybViT Table 1, M=20"),
        "fid": (38.0, "S", "HybViT Table 1, M=20"),
        **_ood("logpx", (.85, .57, .68, .80), "S", "HybViT"),
        **_ood("maxprob", (.94, .77, .88, .90), "S", "HybViT"),
    },
    ("sada_jem", "cifar10"): {
        "accuracy": (0.955, "S", "wizwand; checkpoint sadajem5_95.5_9.4"),
        "is": (8.77, "U", "wizwand"),
        "fid": (9.41, "S", "wizwand"),
        **_ood("maxprob", (.98, .83, .92, .95), "S", "wizwand; score not stated, probably max p(y|x)"),
    },
    ("hdge", "cifar10"): {
        "accuracy": (0.967, "U", "HDGE Table 1"),
    },
    ("softmax", "cifar100"): {
        "accuracy": (0.742, "U", "JEM calibration figure"),
        "ece": (0.2232, "P", "JEM calibration figure, 20 bins"),
    },
    ("jem", "cifar100"): {
        "accuracy": (0.722, "U", "JEM calibration figure"),
        "ece": (0.0487, "P", "JEM calibration figure, 20 bins"),
    },
    ("hdge", "cifar100"): {
        "accuracy": (0.80, "U", "HDGE, ≈80.x %"),
    },
    ("sada_jem", "cifar100"): {
        "is": (11.63, "S", "wizwand"),
    },
}


def paper_value(objective: str, dataset: str, metric: str) -> Number | None:
    return PAPERS.get((objective, dataset), {}).get(metric)
