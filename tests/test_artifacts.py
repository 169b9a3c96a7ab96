"""Each stage-to-stage file format: what its writer writes, its reader reads back."""
import json
import math

import numpy as np

from ebm.artifacts import (read_captions, read_history, read_metrics, read_reliability, read_samples, read_scores,
                           write_captions, write_history, write_metrics, write_reliability, write_samples,
                           write_scores)
from pipeline.stages import STAGES, report_inputs


def test_metrics_round_trip_and_missing(tmp_path):
    m = {"accuracy": 0.25, "ood_auroc": {"noise": {"logpx": 0.5}}, "eps": [0, 2],
         "sample_quality": {"fresh": {"is": None, "n_fake": 4, "reason": "no weights"}},
         "objective": "jem", "provenance": {"seed": 0, "device": "cpu", "bf16": False}}
    write_metrics(tmp_path / "a" / "metrics.json", m)
    assert read_metrics(tmp_path / "a" / "metrics.json") == m
    assert read_metrics(tmp_path / "none.json") is None


def test_metrics_file_holds_numbers_only_and_info_the_rest(tmp_path):
    """`dvc metrics diff` compares metrics.json: names, provenance and reasons live in info.json."""
    m = {"accuracy": 0.25, "sample_quality": {"fresh": {"is": None, "n_fake": 4, "reason": "no weights"}},
         "objective": "jem", "provenance": {"seed": 0, "device": "cpu", "bf16": False}, "mixed": [1, "a"]}
    write_metrics(tmp_path / "metrics.json", m)
    numbers = json.loads((tmp_path / "metrics.json").read_text())
    info = json.loads((tmp_path / "info.json").read_text())
    assert numbers == {"accuracy": 0.25, "sample_quality": {"fresh": {"n_fake": 4}}, "provenance": {"seed": 0}}
    assert info == {"sample_quality": {"fresh": {"is": None, "reason": "no weights"}}, "objective": "jem",
                    "provenance": {"device": "cpu", "bf16": False}, "mixed": [1, "a"]}


def test_history_round_trip_with_uneven_rows(tmp_path):
    rows = [{"step": 0, "loss": 2.5, "acc": 0.125}, {"step": 10, "loss": 1.0, "acc": 0.5, "px": -0.75}]
    write_history(tmp_path / "history.csv", rows)
    back = read_history(tmp_path / "history.csv")
    assert back[0] == {"step": 0.0, "loss": 2.5, "acc": 0.125, "px": None} and back[1]["px"] == -0.75
    assert read_history(tmp_path / "none.csv") == []


def test_reliability_keeps_the_non_empty_bins(tmp_path):
    bins = [{"lo": 0.0, "hi": 0.5, "count": 0, "confidence": math.nan, "accuracy": math.nan},
            {"lo": 0.5, "hi": 1.0, "count": 3, "confidence": 0.75, "accuracy": 2 / 3}]
    write_reliability(tmp_path / "r.csv", bins)
    (row,) = read_reliability(tmp_path / "r.csv")
    assert row["bin_lo"] == 0.5 and row["count"] == 3 and abs(row["accuracy"] - 2 / 3) < 1e-6


def test_scores_keys_survive_the_npz_encoding(tmp_path):
    scores = {"test/logpx": np.arange(4.0), "local:my_set/pxgrad": -np.ones(3)}
    write_scores(tmp_path / "scores.npz", scores)
    back = read_scores(tmp_path / "scores.npz")
    assert sorted(back) == sorted(scores) and all(np.array_equal(back[k], v) for k, v in scores.items())
    assert read_scores(tmp_path / "none.npz") == {}


def test_samples_round_trip(tmp_path):
    s = {"fresh": np.zeros((2, 32, 32, 3), np.uint8), "fresh_pred": np.array([1, 0]), "cond_y": np.array([0, 1])}
    write_samples(tmp_path / "samples.npz", s, classes=["a", "b"], params_hash="h")
    back = read_samples(tmp_path / "samples.npz")
    assert list(back["classes"]) == ["a", "b"] and str(back["params_hash"]) == "h"
    assert all(np.array_equal(back[k], v) and back[k].dtype == v.dtype for k, v in s.items())


def test_captions_round_trip_and_missing(tmp_path):
    write_captions(tmp_path, {"fresh": "jem sampler: SGLD lr 1; 8 chains × 2 steps", "cond": "ü"})
    assert read_captions(tmp_path) == {"fresh": "jem sampler: SGLD lr 1; 8 chains × 2 steps", "cond": "ü"}
    assert read_captions(tmp_path / "none") == {}


def test_the_report_reads_what_the_stages_declare():
    from ebm.report import INPUTS
    inputs = report_inputs()
    assert sorted(inputs) == sorted(INPUTS)
    declared = {p for s in STAGES.values() for p in s.declared_outputs()}
    assert set(inputs.values()) <= declared
