"""Strict, typed loading of ``params.yaml``.

``params.yaml`` is the one source of truth for DVC and Snakemake. Loading is strict, as in nanoGPT's
config overrides: an unknown key, a missing key or a wrong type is an error that names the key. There
are no defaults here: every tunable is written in ``params.yaml`` so that ``dvc params diff`` shows it.

Each section is a frozen dataclass; :func:`load_params` validates the whole file and returns a
:class:`Params`. A stage then reads only the sections it declares (see ``pipeline/stages.py``) and
hashes exactly those with :func:`params_hash`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from ebm.errors import ParamsError


# ----------------------------------------------------------------------------------------------------
# Sections

OBJECTIVES = ("softmax", "jem", "jempp", "sada_jem", "hdge", "hdge_jem")
DATASETS = ("shapes", "cifar10", "cifar100", "svhn")
OOD_SETS = ("textures", "interp", "noise", "cifar10", "cifar100", "svhn", "celeba")
# plus "local:<name>": any image folder at data/raw/ood/<name>/ (letters, digits, _ and - in <name>)
_LOCAL_OOD = re.compile(r"local:[A-Za-z0-9_-]+")
# image corruptions of the pretraining evaluation (implemented in ebm/pretrain/corruptions.py)
CORRUPTIONS = ("gaussian_noise", "shot_noise", "gaussian_blur", "contrast", "brightness", "jpeg", "pixelate")


@dataclass(frozen=True)
class DataConfig:
    """One dataset. ``source``: ``procedural`` (the embedded ``shapes`` set, no files), ``torchvision``
    (download when online, checksums verified) or ``local`` (folder of class subfolders or .tar.gz of them)."""
    source: Literal["procedural", "torchvision", "local"]
    n_train: int  # training images kept (0 = all); a stratified, seeded subset
    n_test: int  # test images kept (0 = all)
    n_ood: int  # images per OOD set (0 = as many as the test set)
    ood: list[str]  # OOD sets written beside the dataset: names from OOD_SETS, or local:<name> (data/raw/ood/<name>/)
    seed: int  # seed of the procedural generator and of the subset selection


@dataclass(frozen=True)
class ModelConfig:
    """Wide-ResNet as in the JEM code: pre-activation blocks, LeakyReLU, optional norm/dropout."""
    arch: Literal["wrn"]
    depth: int  # 6n+4 (10, 16, 28, ...)
    width: int  # widen factor k: stage widths 16k, 32k, 64k
    norm: Literal["none", "batch", "group", "instance"]
    dropout: float  # dropout probability between the two convs of a block
    leak: float  # LeakyReLU negative slope (JEM: 0.2)
    init: Literal["pytorch", "kaiming"]  # conv init: PyTorch defaults (JEM code) or Kaiming-normal, zero bias


@dataclass(frozen=True)
class TrainCommon:
    """Settings shared by every objective."""
    seed: int
    steps: int  # optimizer steps
    batch_size: int  # labelled images per step (cross-entropy branch)
    optimizer: Literal["adam", "sgd"]
    lr: float  # peak learning rate
    momentum: float  # SGD momentum (ignored by Adam)
    weight_decay: float
    warmup_steps: int  # linear warm-up from 0 over this many steps
    decay_at: list[float]  # fractions of `steps` at which lr is multiplied by `decay_factor`
    decay_factor: float
    data_noise: float  # std of Gaussian noise added to training images, in [-1, 1] pixel units
    diverge_threshold: float  # |loss| above this counts as divergence
    energy_gap_threshold: float  # |mean E(data) - mean E(samples)| above this counts as divergence
    max_retries: int  # roll-backs after divergence before the run stops with DivergenceError
    retry_lr_factor: float  # lr multiplier applied at each roll-back


@dataclass(frozen=True)
class SoftmaxConfig:
    """Plain classifier: cross-entropy only."""
    label_smoothing: float


@dataclass(frozen=True)
class JemConfig:
    """JEM (Grathwohl et al. 2020): CE + maximum likelihood of p(x) with PCD-SGLD."""
    px_weight: float  # weight of the log p(x) surrogate
    pxy_weight: float  # weight of the optional log p(x|y) term with class-conditional chains (paper: 0)
    sgld_steps: int  # K, SGLD steps per training step
    sgld_lr: float  # alpha, step size on grad_x log p~(x)
    sgld_std: float  # sigma, Langevin noise std
    buffer_size: int  # persistent replay buffer size (images)
    reinit_freq: float  # probability a chain restarts from U(-1, 1)
    sample_batch_size: int  # chains advanced per training step
    energy_l2: float  # weight of (E(x+)^2 + E(x~)^2), 0 = off (JEM default)


@dataclass(frozen=True)
class JemppConfig:
    """JEM++ (Yang & Ji 2021): JEM with informative init and proximal (clipped, projected) SGLD."""
    px_weight: float
    pxy_weight: float  # weight of the optional log p(x|y) term with class-conditional chains (paper: 0)
    sgld_steps: int  # M outer steps (paper script: 10)
    sgld_lr: float  # step per outer step = N inner steps × inner lr (5 × 0.2 = 1.0)
    sgld_std: float  # Langevin noise (released config: 0)
    grad_clip: float  # per-pixel gradient clip (1.0); 0 = off
    buffer_size: int
    reinit_freq: float
    sample_batch_size: int
    energy_l2: float
    init: Literal["informative", "uniform"]  # class-conditional Gaussians fitted on the data, or U(-1, 1)
    init_jitter: float  # added to each class covariance's diagonal (1e-4)
    sample_mode: Literal["train", "eval"]  # model mode while sampling (JEM++: train, BN batch stats)


@dataclass(frozen=True)
class SadaJemConfig:
    """SADA-JEM (Yang, Su & Ji 2023): JEM++'s sampler with K=5, SAM, no augmentation in the p(x) branch."""
    px_weight: float
    pxy_weight: float  # weight of the optional log p(x|y) term with class-conditional chains (paper: 0)
    sgld_steps: int  # K (paper script: 5)
    sgld_lr: float
    sgld_std: float
    grad_clip: float
    buffer_size: int
    reinit_freq: float
    sample_batch_size: int
    energy_l2: float  # code's l2_coeff, 0 in the paper recipe
    init: Literal["informative", "uniform"]
    init_jitter: float
    sample_mode: Literal["train", "eval"]
    rho: float  # SAM neighbourhood radius (code default 2.0)
    adaptive: bool  # ASAM (the code switches it on for rho >= 0.5)


@dataclass(frozen=True)
class HdgeConfig:
    """HDGE (Liu & Abbeel 2020): CE + contrastive approximation of log q(x|y) over a logit memory."""
    ce_weight: float  # weight of cross-entropy (code: --pyxce 1)
    contrast_weight: float  # weight of the contrastive term (code: --pxycontrast 1)
    temperature: float  # tau (paper/code: 0.1)
    queue_size: int  # K stored negatives (paper: 65,536)
    normalisation: Literal["l2", "softmax"]  # of logits over classes before contrasting (code: l2)
    positive: Literal["compressed", "direct"]  # log(e^z_y + C - 1) as paper+code, or z_y as the formula


@dataclass(frozen=True)
class HdgeJemConfig:
    """HDGE + JEM's SGLD maximum-likelihood term ("UDGE + marginal likelihood")."""
    ce_weight: float
    contrast_weight: float
    temperature: float
    queue_size: int
    normalisation: Literal["l2", "softmax"]
    positive: Literal["compressed", "direct"]
    px_weight: float
    sgld_steps: int
    sgld_lr: float
    sgld_std: float
    buffer_size: int
    reinit_freq: float
    sample_batch_size: int
    energy_l2: float


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation of one dataset (both branches; SADA-JEM's p(x) branch never)."""
    crop: bool  # reflect-pad 4 + random crop back to 32 (all four papers)
    flip: bool  # random horizontal flip (CIFAR: yes; SVHN: no, digits are not mirror-symmetric)


@dataclass(frozen=True)
class TrainConfig:
    common: TrainCommon
    augment: dict[str, AugmentConfig]  # per dataset
    softmax: SoftmaxConfig
    jem: JemConfig
    jempp: JemppConfig
    sada_jem: SadaJemConfig
    hdge: HdgeConfig
    hdge_jem: HdgeJemConfig


@dataclass(frozen=True)
class PretrainConfig:
    """Hybrid generative-contrastive pretraining (after Kim, Kim & Lee 2021): a causal ViT over patches
    whose pooled features get NT-Xent over two augmented views, and an autoregressive decoder head whose
    NLL (bits/dim) is the generative loss. loss = w·NT-Xent + (1 − w)·bits/dim for each w in
    ``contrastive_weights`` (w = 1: contrastive only; w = 0: generative only)."""
    seed: int
    steps: int  # optimizer steps per weight
    batch_size: int  # images per step (each seen as two augmented views + once clean)
    lr: float  # AdamW peak learning rate
    weight_decay: float
    warmup_steps: int  # linear warm-up, then cosine decay to 0
    patch_size: int  # pixels per patch side (32 must be a multiple)
    dim: int  # transformer width
    encoder_depth: int  # causal transformer blocks of the encoder
    decoder_depth: int  # causal transformer blocks of the decoder head
    heads: int  # attention heads
    mixtures: int  # discretized-logistic mixture components per sub-pixel
    contrastive_weights: list[float]  # w in [0, 1]; one model per value
    temperature: float  # NT-Xent tau
    crop_scale: float  # smallest area fraction of the random resized crop
    color_jitter: float  # brightness/contrast/saturation jitter strength
    probe_steps: int  # full-batch L-BFGS/Adam steps of the linear probe on frozen features
    probe_lr: float
    knn_k: int  # representation OOD score: mean cosine similarity to the k nearest training features
    corruptions: list[str]  # names from ebm.pretrain.corruptions.CORRUPTIONS
    severities: list[int]  # 1..5
    eval_batch_size: int


@dataclass(frozen=True)
class GenerateConfig:
    """Samples from each trained model, drawn with the model's own sampler and initialisation (JEM: SGLD
    from U(-1, 1); JEM++/SADA-JEM: clipped, projected steps from the class Gaussians; softmax and hdge,
    which train none: JEM's SGLD with ``sgld_lr``/``sgld_std``), plus the replay buffer of models trained
    with one. ``mode``: ``fresh`` runs each of ``n_samples`` chains ``sgld_steps`` steps from the init;
    ``persistent`` is JEM's evaluation recipe: a buffer of ``n_samples`` chains, ``calls`` calls that each
    advance ``batch_size`` chains drawn from it by ``sgld_steps`` steps, re-initialising ``reinit_freq``."""
    seed: int
    mode: Literal["fresh", "persistent"]
    n_samples: int  # fresh chains, or the persistent buffer's size; the IS/FID sample size (papers: 10,000)
    n_per_class: int  # fresh class-conditional chains per class
    calls: int  # persistent mode: sampler calls on the buffer (JEM README: >= 1,000)
    reinit_freq: float  # persistent mode: chance a drawn chain restarts from the init (JEM: 0.05)
    sgld_steps: int  # steps per chain (fresh) or per call (persistent) (JEM README: 40)
    sgld_lr: float  # step size of objectives without a sampler of their own (softmax, hdge)
    sgld_std: float  # noise of those
    batch_size: int  # chains advanced at once


@dataclass(frozen=True)
class EvaluateConfig:
    seed: int
    batch_size: int
    ece_bins: int  # equal-width confidence bins (papers: 20)
    test_noise: float  # std of Gaussian noise added to test and OOD images (JEM code: 0.03)
    pgd_images: int  # test images attacked (SADA-JEM: 1,000); 0 = no robustness evaluation
    pgd_steps: int  # PGD iterations (SADA-JEM: 50, JEM: 40)
    pgd_restarts: int  # random restarts; an image counts as robust only if it survives all of them
    pgd_linf_eps: list[float]  # L-inf budgets in 1/255 of the [0, 1] pixel range (SADA-JEM: 1..30)
    pgd_linf_step: float  # L-inf step, same units (SADA-JEM: 2)
    pgd_l2_eps: list[float]  # L2 budgets in 1/255 of the [0, 1] range (HybViT: 50..400)
    pgd_l2_step_frac: float  # L2 step as a fraction of eps (2.5 · eps / steps is Madry's rule)
    fid_reference: Literal["train", "test"]  # real images FID compares with (JEM++/SADA-JEM: train + test)
    fid_real_images: int  # real images for FID statistics (0 = all of the reference split)
    inception_weights: str  # "" = torch-fidelity's download; else a local weights file (env EBM_INCEPTION_WEIGHTS wins)


@dataclass(frozen=True)
class Params:
    objectives: list[str]
    datasets: list[str]
    data: dict[str, DataConfig]
    model: ModelConfig
    train: TrainConfig
    pretrain: PretrainConfig
    generate: GenerateConfig
    evaluate: EvaluateConfig


# ----------------------------------------------------------------------------------------------------
# Strict conversion


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it converted (int → float where a float is due)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ParamsError(f"{key}: {value!r} is not one of {list(choices)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping, got {type(value).__name__}")
        _, val_tp = typing.get_args(tp)
        return {k: _convert(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key}: expected true/false, got {type(value).__name__} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamsError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            raise ParamsError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"unsupported annotation {_type_name(tp)} at {key}")  # a bug in this module


def _build(cls: type, raw: Any, key: str) -> Any:
    if not isinstance(raw, dict):
        raise ParamsError(f"{key or 'params'}: expected a mapping, got {type(raw).__name__} {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    prefix = f"{key}." if key else ""
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ParamsError(f"unknown key {prefix}{unknown[0]!s} (allowed here: {', '.join(names)})")
    missing = [n for n in names if n not in raw]
    if missing:
        raise ParamsError(f"missing key {prefix}{missing[0]}")
    return cls(**{n: _convert(raw[n], hints[n], prefix + n) for n in names})


def _check_semantics(p: Params) -> None:
    def need(cond: bool, key: str, msg: str) -> None:
        if not cond:
            raise ParamsError(f"{key}: {msg}")

    for i, o in enumerate(p.objectives):
        need(o in OBJECTIVES, f"objectives[{i}]", f"{o!r} is not one of {list(OBJECTIVES)}")
    for i, d in enumerate(p.datasets):
        need(d in DATASETS, f"datasets[{i}]", f"{d!r} is not one of {list(DATASETS)}")
        need(d in p.data, f"datasets[{i}]", f"{d!r} has no section data.{d}")
    need(len(p.objectives) > 0, "objectives", "needs at least one objective")
    need(len(p.datasets) > 0, "datasets", "needs at least one dataset")
    need(len(set(p.objectives)) == len(p.objectives), "objectives", "has duplicates")
    need(len(set(p.datasets)) == len(p.datasets), "datasets", "has duplicates")
    for name, d in p.data.items():
        k = f"data.{name}"
        need(name in DATASETS, k, f"unknown dataset (known: {list(DATASETS)})")
        need((d.source == "procedural") == (name == "shapes"), f"{k}.source",
             "only the embedded 'shapes' dataset is procedural, and it is only procedural")
        for f in ("n_train", "n_test", "n_ood"):
            need(getattr(d, f) >= 0, f"{k}.{f}", "must be >= 0")
        for i, o in enumerate(d.ood):
            need(o in OOD_SETS or _LOCAL_OOD.fullmatch(o) is not None, f"{k}.ood[{i}]",
                 f"{o!r} is not one of {list(OOD_SETS)} or local:<folder name under data/raw/ood/>")
            need(o != name, f"{k}.ood[{i}]", "a dataset cannot be its own OOD set")
        need(len(d.ood) > 0, f"{k}.ood", "needs at least one OOD set")
    m = p.model
    need(m.depth >= 10 and (m.depth - 4) % 6 == 0, "model.depth", f"must be 6n+4 >= 10, got {m.depth}")
    need(m.width >= 1, "model.width", "must be >= 1")
    need(0.0 <= m.dropout < 1.0, "model.dropout", "must be in [0, 1)")
    c = p.train.common
    for f in ("steps", "batch_size"):
        need(getattr(c, f) > 0, f"train.common.{f}", "must be > 0")
    need(c.lr > 0, "train.common.lr", "must be > 0")
    need(c.warmup_steps >= 0, "train.common.warmup_steps", "must be >= 0")
    need(all(0 < f < 1 for f in c.decay_at), "train.common.decay_at", "fractions must be in (0, 1)")
    need(c.diverge_threshold > 0, "train.common.diverge_threshold", "must be > 0")
    need(c.energy_gap_threshold > 0, "train.common.energy_gap_threshold", "must be > 0")
    need(c.max_retries >= 0, "train.common.max_retries", "must be >= 0")
    need(0 < c.retry_lr_factor <= 1, "train.common.retry_lr_factor", "must be in (0, 1]")
    for name in p.train.augment:
        need(name in DATASETS, f"train.augment.{name}", f"unknown dataset (known: {list(DATASETS)})")
    for i, d in enumerate(p.datasets):
        need(d in p.train.augment, f"datasets[{i}]", f"{d!r} has no section train.augment.{d}")
    for name in ("jem", "jempp", "sada_jem", "hdge_jem"):
        j = getattr(p.train, name)
        need(j.sgld_steps > 0, f"train.{name}.sgld_steps", "must be > 0")
        need(j.px_weight >= 0 and getattr(j, "pxy_weight", 0) >= 0, f"train.{name}.px_weight",
             "px_weight and pxy_weight must be >= 0 (0 = the term is off)")
        need(0.0 <= j.reinit_freq <= 1.0, f"train.{name}.reinit_freq", "must be in [0, 1]")
        need(j.buffer_size >= j.sample_batch_size > 0, f"train.{name}.buffer_size",
             "must be >= sample_batch_size > 0")
    need(p.train.sada_jem.rho >= 0, "train.sada_jem.rho", "must be >= 0")
    need(p.train.sada_jem.pxy_weight == 0, "train.sada_jem.pxy_weight",
         "the p(x|y) term is not implemented with SAM's second pass; must be 0")
    for name in ("hdge", "hdge_jem"):
        h = getattr(p.train, name)
        need(h.temperature > 0, f"train.{name}.temperature", "must be > 0")
        need(h.queue_size > 0, f"train.{name}.queue_size", "must be > 0")
    _check_pretrain(p.pretrain, need)
    g = p.generate
    need(g.n_samples > 0 and g.batch_size > 0, "generate.n_samples", "n_samples and batch_size must be > 0")
    need(g.n_per_class >= 0, "generate.n_per_class", "must be >= 0")
    need(g.sgld_steps > 0, "generate.sgld_steps", "must be > 0")
    need(g.calls >= 0, "generate.calls", "must be >= 0")
    need(0.0 <= g.reinit_freq <= 1.0, "generate.reinit_freq", "must be in [0, 1]")
    need(g.mode == "fresh" or g.calls > 0, "generate.calls", "persistent mode needs calls > 0")
    e = p.evaluate
    need(e.ece_bins >= 1, "evaluate.ece_bins", "must be >= 1")
    need(e.batch_size > 0, "evaluate.batch_size", "must be > 0")
    need(e.pgd_images >= 0, "evaluate.pgd_images", "must be >= 0")
    need(e.pgd_steps > 0 and e.pgd_restarts > 0, "evaluate.pgd_steps", "pgd_steps and pgd_restarts must be > 0")
    need(all(v >= 0 for v in [*e.pgd_linf_eps, *e.pgd_l2_eps]), "evaluate.pgd_linf_eps", "budgets must be >= 0")
    need(e.pgd_linf_step > 0 and e.pgd_l2_step_frac > 0, "evaluate.pgd_linf_step", "step sizes must be > 0")
    need(e.fid_real_images >= 0, "evaluate.fid_real_images", "must be >= 0")


def _check_pretrain(t: "PretrainConfig", need) -> None:
    k = "pretrain"
    for f in ("steps", "batch_size", "dim", "encoder_depth", "heads", "mixtures", "probe_steps", "knn_k",
              "eval_batch_size"):
        need(getattr(t, f) > 0, f"{k}.{f}", "must be > 0")
    need(t.decoder_depth >= 0, f"{k}.decoder_depth", "must be >= 0")
    need(t.batch_size >= 2, f"{k}.batch_size", "NT-Xent needs at least 2 images per batch")
    need(t.patch_size > 0 and 32 % t.patch_size == 0, f"{k}.patch_size", "must divide 32")
    need(t.dim % t.heads == 0, f"{k}.dim", f"must be a multiple of heads ({t.heads})")
    need(len(t.contrastive_weights) > 0, f"{k}.contrastive_weights", "needs at least one weight")
    need(all(0.0 <= w <= 1.0 for w in t.contrastive_weights), f"{k}.contrastive_weights", "weights must be in [0, 1]")
    need(len(set(t.contrastive_weights)) == len(t.contrastive_weights), f"{k}.contrastive_weights", "has duplicates")
    need(t.temperature > 0, f"{k}.temperature", "must be > 0")
    need(0.0 < t.crop_scale <= 1.0, f"{k}.crop_scale", "must be in (0, 1]")
    need(all(1 <= s <= 5 for s in t.severities), f"{k}.severities", "must be in 1..5")
    for i, c in enumerate(t.corruptions):
        need(c in CORRUPTIONS, f"{k}.corruptions[{i}]", f"{c!r} is not one of {list(CORRUPTIONS)}")


def parse_params(raw: Any) -> Params:
    """Validate a parsed YAML document; raise :class:`ParamsError` naming the first bad key."""
    params = _build(Params, raw, "")
    _check_semantics(params)
    return params


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ParamsError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                                  "(only one may be given)")
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_raw(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: top level must be a mapping")
    return raw


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load and validate the whole params file (every stage does this before any work)."""
    try:
        return parse_params(load_raw(path))
    except ParamsError as e:
        raise ParamsError(f"{path}: {e}") from None


# ----------------------------------------------------------------------------------------------------
# Section access and hashing


def section(raw: dict, dotted: str) -> Any:
    """The raw value at ``dotted`` (``train.jem``, ``datasets``) in a parsed params document."""
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamsError(f"missing key {dotted}")
        node = node[part]
    return node


def params_hash(raw: dict, sections: list[str]) -> str:
    """sha256 over exactly the sections a stage reads (canonical JSON), for provenance and resume."""
    sub = {s: section(raw, s) for s in sorted(sections)}
    blob = json.dumps(sub, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def to_dict(obj: Any) -> Any:
    """Dataclass tree → plain dict (for checkpoints, which must load with ``weights_only=True``)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    return obj


def from_dict(cls: type, raw: dict) -> Any:
    """Inverse of :func:`to_dict` for one section, with the same strict checks."""
    return _build(cls, raw, cls.__name__)

