"""Divergence recovery and true resume."""
import math
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from ebm.config import parse_params
from ebm.data.store import build_dataset
from ebm.checkpoint import ResumeStore
from ebm.errors import DivergenceError
from ebm.train import train
from tests.conftest import REPO, tiny_params_dict, write_params


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    p = parse_params(tiny_params_dict())
    arrays, _ = build_dataset("shapes", p.data["shapes"], tmp_path_factory.mktemp("raw"))
    return arrays


def _params(**common):
    p = tiny_params_dict()
    p["train"]["common"].update({"steps": 10, **common})
    return parse_params(p)


def _nan_at(k, times=1):
    hits = []

    def fault(step, loss, logs):
        if step == k and len(hits) < times:
            hits.append(step)
            return float("nan"), logs
        return loss, logs
    return fault, hits


def test_nan_at_step_k_is_rolled_back_and_the_run_finishes(data):
    fault, hits = _nan_at(5)
    r = train(_params(), "jem", data, torch.device("cpu"), progress=False, checkpoint_every=3, fault=fault)
    assert hits == [5] and r.retries == 1
    assert r.history[-1]["step"] == 9 and all(math.isfinite(h["loss"]) for h in r.history)
    assert r.history[-1]["retries"] == 1
    assert r.history[-1]["lr"] < _params().train.common.lr  # lowered by retry_lr_factor


def test_energy_blow_up_is_detected_and_recovered(data):
    hits = []

    def fault(step, loss, logs):
        if step == 4 and not hits:
            hits.append(step)
            return loss, {**logs, "e_sample": logs["e_data"] + 1e6}
        return loss, logs
    r = train(_params(), "jem", data, torch.device("cpu"), progress=False, checkpoint_every=3, fault=fault)
    assert hits == [4] and r.retries == 1


def test_a_roll_back_past_px_until_keeps_the_trained_chains(data, capsys):
    """With the p(x) term over (px_until 0.5 of 10 steps: off from step 5), a roll-back to step 6 must not
    re-initialise the replay buffer: nothing would sample it again, and the checkpoint would carry noise.
    Its buffer equals the uninterrupted run's (neither changes after step 4)."""
    p = tiny_params_dict()
    p["train"]["common"].update(steps=10)
    p["train"]["jem"].update(px_until=0.5)
    params = parse_params(p)
    ref = train(params, "jem", data, torch.device("cpu"), progress=False, checkpoint_every=6)
    fault, hits = _nan_at(8)
    r = train(params, "jem", data, torch.device("cpu"), progress=False, checkpoint_every=6, fault=fault)
    assert hits == [8] and r.retries == 1
    assert torch.equal(r.objective.buffer.buffer, ref.objective.buffer.buffer)
    out = capsys.readouterr().out
    assert "rolled back to step 6, lr" in out and "re-initialised" not in out  # the log says what happened


def test_past_the_retry_bound_a_named_error_carries_step_and_values(data):
    fault, _ = _nan_at(6, times=100)
    with pytest.raises(DivergenceError) as e:
        train(_params(max_retries=2), "jem", data, torch.device("cpu"), progress=False, checkpoint_every=3,
              fault=fault)
    assert e.value.step == 6 and math.isnan(e.value.values["loss"])
    assert "2 retries used" in str(e.value)


def test_resume_in_process_equals_uninterrupted(data, tmp_path):
    ref = train(_params(), "jem", data, torch.device("cpu"), progress=False, checkpoint_every=4)
    store = ResumeStore(tmp_path, "h", log=lambda m: None)

    def stop(step, loss, logs):
        if step == 6:
            raise KeyboardInterrupt  # the process dies between checkpoints (last saved: step 4)
        return loss, logs
    with pytest.raises(KeyboardInterrupt):
        train(_params(), "jem", data, torch.device("cpu"), progress=False, checkpoint_every=4, resume=store, fault=stop)
    got = train(_params(), "jem", data, torch.device("cpu"), progress=False, checkpoint_every=4, resume=store)
    assert got.resumed_from == 4
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, got.model.state_dict()[k]), k
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(got.history) == strip(ref.history)
    # a different params hash is refused: fresh start
    other = ResumeStore(tmp_path, "other", log=lambda m: None)
    store.save({"step": 1})
    assert other.load() is None


def _train_cmd(params, out, resume):
    return [sys.executable, "-m", "pipeline.train", "--params", str(params), "--objective", "jem",
            "--dataset", "shapes", "--data", "ds", "--out", str(out), "--resume-dir", str(resume),
            "--checkpoint-every", "2", "--log-every", "1", "--no-progress"]


@pytest.mark.slow  # kept out of `make test`'s 10 minutes; `make test-slow` and CI run it
def test_sigkill_then_restart_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    p = tiny_params_dict()
    p["train"]["common"].update(steps=60)
    params = write_params(tmp_path / "params.yaml", p)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run = lambda cmd: subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)  # noqa: E731
    r = run([sys.executable, "-m", "pipeline.data", "--params", str(params), "--dataset", "shapes", "--out", "ds"])
    assert r.returncode == 0, r.stderr
    r = run(_train_cmd(params, "ref", "ref_resume"))
    assert r.returncode == 0, r.stderr

    state = tmp_path / "res" / "state.pt"
    proc = subprocess.Popen(_train_cmd(params, "out", "res"), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(random.uniform(0.0, 0.5))
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert state.exists() and not (tmp_path / "out" / "model.pt").exists()

    r = run(_train_cmd(params, "out", "res"))
    assert r.returncode == 0, r.stderr
    assert "resume: continuing from step" in r.stdout
    a = torch.load(tmp_path / "ref" / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "out" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda t: [line.rsplit(",", 1)[0] for line in t.splitlines()]  # drop the seconds column  # noqa: E731
    assert strip((tmp_path / "ref" / "history.csv").read_text()) == strip((tmp_path / "out" / "history.csv").read_text())


def test_sada_jem_max_likelihood_branch_sees_unaugmented_images(data):
    from ebm.train import Trainer

    p = tiny_params_dict()
    p["objectives"] = ["sada_jem"]
    p["train"]["common"].update(data_noise=0.03)
    tr = Trainer(parse_params(p), "sada_jem", data, torch.device("cpu"))
    batch = tr.next_batch()
    seen = []
    handle = tr.model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    tr.objective.loss(tr.model, batch)
    handle.remove()
    rows = {tuple(r.flatten().tolist()) for r in tr.x_all}
    clean = [x for x in seen if x.shape == batch.x_px_clean.shape and torch.equal(x, batch.x_px_clean)]
    assert clean, "the p(x) branch did not receive the clean batch"
    assert all(tuple(r.flatten().tolist()) in rows for r in clean[0])  # really training images, untouched
    assert not any(torch.equal(x, batch.x_px) for x in seen)  # the augmented p(x) batch is never used
    assert any(torch.equal(x, batch.x_lab) for x in seen)  # cross-entropy still gets the augmented one


def test_sada_jem_takes_a_sam_step(data):
    from ebm.sam import SAM
    from ebm.train import Trainer, train_step

    p = tiny_params_dict()
    p["train"]["sada_jem"].update(rho=0.05)
    tr = Trainer(parse_params(p), "sada_jem", data, torch.device("cpu"))
    assert isinstance(tr.opt, SAM)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    loss, logs = train_step(tr.model, tr.objective, tr.opt, tr.next_batch())
    assert torch.isfinite(loss) and {"ce", "px", "e_data", "e_sample"} <= set(logs)
    assert any(not torch.equal(before[k], v) for k, v in tr.model.state_dict().items())


def _split_reference(tr, batch) -> tuple[list, list]:
    """The gradients (CE's, rest's) one split step should hand its two optimizer states, written out apart from
    ebm/train.py: on copies of the model and the objective under a forked RNG (the same samples the step draws);
    under SAM at w + ε, ε = ρ g / ‖g‖ from the whole loss's gradient g at w (the perturbed pass reuses the samples)."""
    import copy

    model, twin = copy.deepcopy(tr.model), copy.deepcopy(tr.objective)
    model.train()
    ps = list(model.parameters())
    grad = lambda t: list(torch.autograd.grad(t, ps, retain_graph=True))  # noqa: E731
    with torch.random.fork_rng():
        ce, rest, _ = twin.terms(model, batch)
    if not twin.uses_sam:
        return grad(ce), grad(rest)
    g = grad(ce + rest)
    norm = torch.sqrt(sum((x ** 2).sum() for x in g))
    with torch.no_grad():
        for q, x in zip(ps, g):
            q.add_(twin.sam["rho"] * x / (norm + 1e-12))
    ce, rest = twin.perturbed_terms(model, batch)
    return grad(ce), grad(rest)


@pytest.mark.parametrize("name", ["jem", "hdge_jem", "sada_jem"])
def test_split_optimizer_steps_each_term_with_its_own_state(data, name):
    """split_optimizer s: one step's cross-entropy gradient goes to the CE's Adam alone and the rest's (p(x),
    energy penalty, contrast) to the rest's Adam alone, at s × the lr; weight decay once, in the CE's. Adam's
    first moment after one step is (1 - β1) × the gradient it got (plus decay × w for the CE's). sada_jem: both
    parts at SAM's w + ε, with ε from the whole gradient."""
    from ebm.sam import SAM
    from ebm.train import SplitOptimizer, Trainer, train_step

    p = tiny_params_dict()
    p["train"]["common"]["weight_decay"] = 0.01
    p["train"][name].update(split_optimizer=0.3, px_start=0.0)
    tr = Trainer(parse_params(p), name, data, torch.device("cpu"))
    split = tr.opt.base if isinstance(tr.opt, SAM) else tr.opt
    assert isinstance(split, SplitOptimizer) and isinstance(tr.opt, SAM) == (name == "sada_jem")
    for g in tr.opt.param_groups:
        g["lr"] = 1e-3
    tr.objective.set_step(0)
    batch = tr.next_batch()
    w = [q.detach().clone() for q in tr.model.parameters()]
    g_ce, g_rest = _split_reference(tr, batch)
    train_step(tr.model, tr.objective, tr.opt, batch)
    assert split.rest.param_groups[0]["lr"] == pytest.approx(0.3e-3) and split.ce.param_groups[0]["lr"] == 1e-3
    assert split.rest.param_groups[0]["weight_decay"] == 0 and split.ce.param_groups[0]["weight_decay"] == 0.01
    assert any(g.abs().sum() > 0 for g in g_rest)
    for q, w0, gc, gr in zip(tr.model.parameters(), w, g_ce, g_rest):
        torch.testing.assert_close(split.ce.state[q]["exp_avg"], 0.1 * (gc + 0.01 * w0))
        torch.testing.assert_close(split.rest.state[q]["exp_avg"], 0.1 * gr)


def test_bf16_and_channels_last_flags_train(data, monkeypatch):
    """--bf16 really runs the training forward passes in bfloat16 (autocast), the weights stay float32."""
    import ebm.train as train_mod

    dtypes = set()
    build = train_mod.build_model

    def recording(cfg, n_classes):
        m = build(cfg, n_classes)
        m.fc.register_forward_hook(lambda mod, inp, out: dtypes.add(out.dtype) if torch.is_grad_enabled() else None)
        return m
    monkeypatch.setattr(train_mod, "build_model", recording)
    r = train(_params(steps=3), "jem", data, torch.device("cpu"), progress=False, bf16=True, channels_last=True)
    assert all(math.isfinite(h["loss"]) for h in r.history)
    assert r.model.stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.bfloat16 in dtypes and r.model.fc.weight.dtype == torch.float32
    dtypes.clear()
    train(_params(steps=1), "softmax", data, torch.device("cpu"), progress=False)
    assert dtypes == {torch.float32}  # without the flag: float32


def test_jem_optional_pxy_term_is_logged_and_trains(data):
    p = tiny_params_dict()
    p["train"]["common"].update(steps=3)
    p["train"]["jem"].update(pxy_weight=1.0)
    r = train(parse_params(p), "jem", data, torch.device("cpu"), progress=False, log_every=1)
    assert all("pxy" in h and math.isfinite(h["pxy"]) for h in r.history)


@pytest.mark.parametrize("share", [0.0, 0.1])
@pytest.mark.parametrize("name,reference", [("jem", "softmax"), ("jempp", "softmax"), ("hdge_jem", "hdge")])
def test_px_weight_zero_trains_exactly_like_the_discriminative_objective(data, name, reference, share):
    """px_weight 0: no sampling, no energy penalty (energy_l2 stays 0.1 here), no random numbers drawn for
    a buffer; after N steps the parameters are identical, bit for bit, to the discriminative run. With
    ``split_optimizer`` 0.1 jem and jempp have no rest term, so the split optimizer's CE state is softmax's
    one optimizer; hdge_jem's rest is the contrast, so hdge gets the same split."""
    p = tiny_params_dict()
    p["train"]["common"].update(steps=4)
    p["train"]["softmax"].update(label_smoothing=0.0)
    p["train"][name].update(px_weight=0.0, energy_l2=0.1, split_optimizer=share)
    if "split_optimizer" in p["train"][reference]:
        p["train"][reference]["split_optimizer"] = share
    if "pxy_weight" in p["train"][name]:
        p["train"][name]["pxy_weight"] = 0.0
    params = parse_params(p)
    ref = train(params, reference, data, torch.device("cpu"), progress=False)
    got = train(params, name, data, torch.device("cpu"), progress=False)
    assert "e_sample" not in got.history[0]
    for (k, a), b in zip(ref.model.state_dict().items(), got.model.state_dict().values()):
        assert torch.equal(a, b), k


def _px_schedule(data, name: str, **cfg) -> tuple[list[float], list[bool]]:
    """A 4-step run of ``name`` with ``cfg`` in its block: the p(x) weight factor the objective reports at
    each step, and at which steps training logged a sample energy (sampled)."""
    from ebm.objectives import build_objective

    p = tiny_params_dict()
    p["train"]["common"].update(steps=4)
    p["train"][name].update(init="uniform", **cfg)
    params = parse_params(p)
    obj = build_objective(name, params, n_classes=10)
    jem = getattr(obj, "jem", obj)
    scales = []
    for step in range(4):
        obj.set_step(step)
        scales.append(jem.px_scale)
    r = train(params, name, data, torch.device("cpu"), progress=False, log_every=1)
    return scales, ["e_sample" in h for h in r.history]


@pytest.mark.parametrize("name", ["jem", "sada_jem", "hdge_jem"])
def test_px_schedule_starts_the_likelihood_term_late_and_ramps_it(data, name):
    """px_start 0.5 and px_ramp 0.5 of 4 steps: steps 0-1 sample nothing (no e_sample logged), then the p(x)
    weight is 1/2 of px_weight at step 2 and the full weight from step 3 on."""
    scales, sampled = _px_schedule(data, name, px_start=0.5, px_ramp=0.5, px_until=1.0)
    assert scales == [0.0, 0.0, 0.5, 1.0]
    assert sampled == [False, False, True, True]


@pytest.mark.parametrize("name", ["jem", "jempp", "sada_jem", "hdge_jem"])
def test_px_until_ends_the_likelihood_term_before_the_last_steps(data, name):
    """px_until 0.5 of 4 steps: the p(x) term (and its sampling) is on for steps 0-1 and off for 2-3, which
    then train the classifier alone."""
    scales, sampled = _px_schedule(data, name, px_until=0.5)
    assert scales == [1.0, 1.0, 0.0, 0.0]
    assert sampled == [True, True, False, False]


@pytest.mark.parametrize("dataset,flips", [("svhn", False), ("cifar10", True)])
def test_augmentation_is_per_dataset_and_svhn_is_never_flipped(data, dataset, flips):
    """train.augment.<dataset>: SVHN digits are cropped but never mirrored (the papers' code); CIFAR is."""
    import dataclasses

    from ebm.train import Trainer

    p = tiny_params_dict()
    p["train"]["common"].update(data_noise=0.0)
    params = parse_params(p)
    assert params.train.augment[dataset].flip is flips and params.train.augment[dataset].crop
    tr = Trainer(params, "softmax", dataclasses.replace(data, name=dataset), torch.device("cpu"))
    x = torch.cat([-torch.ones(256, 3, 32, 16), torch.ones(256, 3, 32, 16)], dim=3)  # left dark, right bright
    out = tr.prep(x)
    mirrored = (out[:, :, :, 0] > 0).flatten(1).all(1)  # the bright half moved to the left edge
    assert bool(mirrored.any()) is flips
    assert not torch.equal(out, x)  # still randomly cropped
