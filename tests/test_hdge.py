import math

import numpy as np
import pytest
import torch

from ebm.objectives import build_objective
from ebm.objectives.base import Batch
from ebm.objectives.hdge import LogitQueue, contrastive_loss
from ebm.config import parse_params
from ebm.models import build_model
from tests.conftest import tiny_params_dict


def _hand_loss(z, y, neg, tau, positive):
    """Plain-Python HDGE contrastive loss for one query."""
    zn = [v / math.sqrt(sum(u * u for u in z)) for v in z]
    C = len(z)
    def s(v):
        return math.log(math.exp(v) + C - 1) if positive == "compressed" else v
    pos = s(zn[y])
    negs = []
    for q in neg:
        qn = [v / math.sqrt(sum(u * u for u in q)) for v in q]
        negs.append(s(qn[y]))
    logits = [pos / tau] + [n / tau for n in negs]
    m = max(logits)
    return -(logits[0] - (m + math.log(sum(math.exp(l - m) for l in logits))))


@pytest.mark.parametrize("positive", ["compressed", "direct"])
def test_contrastive_loss_equals_hand_computation(positive):
    z = [[2.0, -1.0, 0.5], [0.1, 0.3, -0.2]]
    y = [0, 2]
    neg = [[1.0, 1.0, 1.0], [-1.0, 2.0, 0.0], [0.5, -0.5, 3.0], [3.0, 0.0, -1.0]]
    got = contrastive_loss(torch.tensor(z), torch.tensor(y), torch.tensor(neg), temperature=0.1,
                           normalisation="l2", positive=positive)
    want = np.mean([_hand_loss(z[i], y[i], neg, 0.1, positive) for i in range(2)])
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_compressed_positive_is_log_exp_plus_c_minus_one():
    z = torch.tensor([[3.0, 4.0]])  # l2-normalised: (0.6, 0.8)
    neg = torch.tensor([[0.0, 1.0]])  # normalised (0, 1): class-0 entry 0
    got = contrastive_loss(z, torch.tensor([0]), neg, temperature=1.0, normalisation="l2", positive="compressed")
    pos, ng = math.log(math.exp(0.6) + 1), math.log(math.exp(0.0) + 1)
    assert got.item() == pytest.approx(-pos + math.log(math.exp(pos) + math.exp(ng)), rel=1e-6)


def test_temperature_scales_the_logits():
    z, y = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([0])
    neg = torch.tensor([[0.0, 1.0, 0.0]] * 5)  # class-0 entry 0 < positive 1
    losses = [contrastive_loss(z, y, neg, temperature=t, normalisation="l2", positive="direct").item()
              for t in (10.0, 1.0, 0.1, 0.01)]
    # loss = log(1 + 5 e^{-1/τ}): falls as τ shrinks when the positive beats every negative
    for t, l in zip((10.0, 1.0, 0.1, 0.01), losses):
        assert l == pytest.approx(math.log1p(5 * math.exp(-1 / t)), rel=1e-5, abs=1e-6)
    assert losses == sorted(losses, reverse=True)
    # and at large τ it tends to log(K + 1): every candidate alike
    assert contrastive_loss(z, y, neg, temperature=1e6, normalisation="l2", positive="direct").item() == \
        pytest.approx(math.log(6), rel=1e-4)


def test_queue_fifo_order_size_wraparound_and_no_grad():
    q = LogitQueue(5, 2)
    a = torch.arange(6.0).view(3, 2).requires_grad_(True)  # rows 0..2
    q.push(a * 1)
    assert not q.data.requires_grad and q.data.shape == (5, 2)
    assert torch.equal(q.data[:3], a.detach()) and q.ptr == 3
    b = torch.full((4, 2), -1.0)
    b[:, 0] = torch.arange(10.0, 14.0)
    q.push(b)  # fills slots 3, 4, then wraps to 0, 1: the two oldest rows are dropped first
    assert q.data[:, 0].tolist() == [12.0, 13.0, 4.0, 10.0, 11.0] and q.ptr == 2
    q.push(torch.arange(14.0).view(7, 2))  # larger than the queue: keeps the newest 5
    assert sorted(q.data[:, 0].tolist()) == [4.0, 6.0, 8.0, 10.0, 12.0]
    state = q.state_dict()
    q2 = LogitQueue(5, 2)
    q2.load_state_dict(state)
    assert torch.equal(q2.data, q.data) and q2.ptr == q.ptr


@pytest.mark.parametrize("name", ["hdge", "hdge_jem"])
def test_hdge_objectives_step_and_log_every_term(name):
    torch.manual_seed(0)
    p = parse_params(tiny_params_dict())
    model = build_model(p.model, 10)
    obj = build_objective(name, p, n_classes=10)
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    batch = Batch(x_lab=x, y=torch.arange(8) % 10, x_px=x)
    before = obj.queue.data.clone()
    loss, logs = obj.loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert {"loss", "ce", "contrast", "acc"} <= set(logs)
    if name == "hdge_jem":
        assert {"px", "e_data", "e_sample"} <= set(logs)
    assert not torch.equal(before, obj.queue.data)  # the batch was enqueued
    assert all(p.grad is not None for p in model.parameters())
