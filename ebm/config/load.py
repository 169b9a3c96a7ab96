"""Loading ``params.yaml``: parse, convert strictly, check across fields; hash a stage's sections.

:func:`load_params` validates the whole file and returns a :class:`~ebm.config.schema.Params`. A stage
then reads only the sections it declares (see ``pipeline/stages.py``) and hashes exactly those with
:func:`params_hash`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from ebm.config.convert import build
from ebm.config.runs import run_raw
from ebm.config.schema import CORRUPTIONS, DATASETS, LOCAL_OOD, OBJECTIVES, OOD_SETS, Params, PretrainConfig
from ebm.config.train_schema import PxSchedule, SplitStep
from ebm.errors import ParamsError


def _check_semantics(p: Params) -> None:
    def need(cond: bool, key: str, msg: str) -> None:
        if not cond:
            raise ParamsError(f"{key}: {msg}")

    for i, o in enumerate(p.objectives):
        need(o in OBJECTIVES, f"objectives[{i}]", f"{o!r} is not one of {list(OBJECTIVES)}")
    for i, d in enumerate(p.datasets):
        need(d in DATASETS, f"datasets[{i}]", f"{d!r} is not one of {list(DATASETS)}")
        need(d in p.data, f"datasets[{i}]", f"{d!r} has no section data.{d}")
    need(len(p.objectives) > 0 or len(p.runs) > 0, "objectives", "needs at least one objective, or a named run")
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
            need(o in OOD_SETS or LOCAL_OOD.fullmatch(o) is not None, f"{k}.ood[{i}]",
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
    sections = {f.name: getattr(p.train, f.name) for f in dataclasses.fields(p.train)}
    for name, j in sections.items():
        if not isinstance(j, PxSchedule):  # the sampling objectives' sections (jem, jempp, sada_jem, hdge_jem)
            continue
        need(j.sgld_steps > 0, f"train.{name}.sgld_steps", "must be > 0")
        need(j.px_weight >= 0 and getattr(j, "pxy_weight", 0) >= 0, f"train.{name}.px_weight",
             "px_weight and pxy_weight must be >= 0 (0 = the term is off)")
        need(0.0 <= j.reinit_freq <= 1.0, f"train.{name}.reinit_freq", "must be in [0, 1]")
        eg = f"a fraction of train.common.steps, not a step: e.g. 0.2 = step {round(0.2 * c.steps)} of {c.steps}"
        for key in ("px_start", "px_ramp"):  # < 1: a step count (what both were before) does not pass
            need(0 <= getattr(j, key) < 1, f"train.{name}.{key}", f"must be in [0, 1) ({eg})")
        need(0 < j.px_until <= 1, f"train.{name}.px_until", "must be in (0, 1] (1 = the p(x) term stays on to the end)")
        on, _, off = j.px_steps(c.steps)
        need(on < off, f"train.{name}.px_until",
             f"the p(x) term would end (step {off}) before it starts (step {on}, px_start {j.px_start:g} "
             f"of {c.steps} steps)")
        need(j.buffer_size >= j.sample_batch_size > 0, f"train.{name}.buffer_size",
             "must be >= sample_batch_size > 0")
    need(p.train.sada_jem.rho >= 0, "train.sada_jem.rho", "must be >= 0")
    need(p.train.sada_jem.pxy_weight == 0, "train.sada_jem.pxy_weight",
         "the p(x|y) term is not implemented with SAM's second pass; must be 0")
    for name, h in sections.items():
        if not hasattr(h, "queue_size"):  # HDGE's contrastive term (hdge, hdge_jem)
            continue
        need(h.temperature > 0, f"train.{name}.temperature", "must be > 0")
        need(h.queue_size > 0, f"train.{name}.queue_size", "must be > 0")
    for name, s in sections.items():
        if isinstance(s, SplitStep):  # every objective with a term besides the cross-entropy
            need(s.split_optimizer >= 0, f"train.{name}.split_optimizer",
                 "must be >= 0 (0 = one optimizer for the whole loss; s > 0 = the rest's lr is s × the CE's)")
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


def _check_pretrain(t: PretrainConfig, need) -> None:
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
    params = build(Params, raw, "")
    _check_semantics(params)
    for name in params.runs:  # each named run's own params are valid too (run_raw names structural errors)
        try:
            parse_params(run_raw(raw, name))
        except ParamsError as e:
            raise ParamsError(str(e) if str(e).startswith(("unknown key runs.", "missing key runs.", "runs."))
                              else f"runs.{name}: {e}") from None
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


def load_run_params(path: str | Path, run: str) -> Params:
    """The params of named run ``run``: the whole file validated, then its overrides merged in."""
    load_params(path)
    try:
        return parse_params(run_raw(load_raw(path), run))
    except ParamsError as e:
        raise ParamsError(f"{path}: {e}") from None


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
