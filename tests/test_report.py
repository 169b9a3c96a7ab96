"""The report on a synthetic data/ tree: a row per run, the papers' numbers beside ours, honest gaps."""
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ebm.config import run_items
from ebm.report import differing_params, write_report
from pipeline.stages import report_inputs

OBJECTIVES, DATASETS = ["softmax", "jem", "sada_jem"], ["shapes", "cifar10"]
GRID = run_items({"objectives": OBJECTIVES, "datasets": DATASETS})
MISSING = "sada_jem/shapes"  # one run without outputs


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (34, 68, 3), dtype=np.uint8)).save(path)


def _run(root: Path, o: str, d: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    tr, ge, ev = root / "train" / o / d, root / "generate" / o / d, root / "evaluate" / o / d
    for p in (tr, ev):
        p.mkdir(parents=True, exist_ok=True)
    params = {"model": {"depth": 10}, "train.common": {"steps": 100, "lr": 0.001},
              f"train.{o}": {"sgld_steps": 5 if o != "softmax" else None}}
    (tr / "summary.json").write_text(json.dumps({"objective": o, "dataset": d, "steps": 100, "train_seconds": 12.3,
                                                  "params": params}))
    (tr / "history.csv").write_text("step,loss,ce,acc,lr\n0,2.3,2.3,0.1,0.001\n50,1.0,0.9,0.6,0.001\n")
    for g in ("fresh", "cond") + (("buffer",) if o != "softmax" else ()):
        _png(ge / "grids" / f"{g}.png", seed)
    ood = {"interp": {"logpx": 0.61, "maxprob": 0.7, "pxgrad": 0.55}, "noise": {"logpx": 0.9, "maxprob": 0.8, "pxgrad": 0.5}}
    reason = "Inception weights not available: offline (EBM_OFFLINE=1)"
    (ev / "metrics.json").write_text(json.dumps({
        "accuracy": 0.4321, "nll": 1.7, "ece": 0.0612, "n_test": 100, "ood_auroc": ood,
        "robustness": {"linf": {"0": 0.43, "2": 0.2, "8": 0.01}, "l2": {"0": 0.43, "100": 0.1, "50": 0.3}, "n_images": 50,
                       "steps": 10, "restarts": 1},
        "sample_quality": {"fresh": {"is": None, "is_std": None, "fid": None, "n_fake": 10, "n_real": 100,
                                     "reason": reason} if o != "softmax" else
                           {"is": 3.21, "is_std": 0.1, "fid": 99.5, "n_fake": 10, "n_real": 100, "reason": None}}}))
    (ge / "grids" / "captions.json").write_text(json.dumps({"fresh": f"{o} sampler: made by test"}))
    buf = io.BytesIO()
    np.savez(buf, **{f"{s}__{k}": rng.normal(size=40) for s in ("test", "interp", "noise")
                     for k in ("logpx", "maxprob", "pxgrad")})
    (ev / "scores.npz").write_bytes(buf.getvalue())
    (ev / "reliability.csv").write_text("bin_lo,bin_hi,count,confidence,accuracy\n0.0,0.5,10,0.3,0.4\n0.5,1.0,5,0.8,0.6\n")


def make_tree(root: Path) -> None:
    for i, d in enumerate(DATASETS):
        for j, o in enumerate(OBJECTIVES):
            if f"{o}/{d}" != MISSING:
                _run(root, o, d, 10 * i + j)
    pre = root / "pretrain" / "cifar10"
    pre.mkdir(parents=True)
    runs = {f"w{w:g}": {"contrastive_weight": w, "linear_probe_accuracy": 0.3 + w / 10, "test_bpd": 7.0 + w,
                        "ood_auroc": {"interp": {"bpd": 0.3, "knn": 0.5}}, "train_seconds": 20, "steps": 200,
                        "corruption_accuracy": {"mean": 0.33, "by": {"jpeg": {"1": 0.33}}}} for w in (0, 0.5, 1)}
    (pre / "metrics.json").write_text(json.dumps({"dataset": "cifar10", "runs": runs}))
    (pre / "history").mkdir()
    (pre / "history" / "w0.csv").write_text("weight,step,loss,ntxent,bpd,lr\n0,0,8,nan,8,0.001\n")
    (pre / "history" / "w0.5.csv").write_text("weight,step,loss,ntxent,bpd,lr\n0.5,0,6,4,8,0.001\n")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("report")
    make_tree(tmp_path / "data")
    out = tmp_path / "report"
    out.mkdir()
    info = write_report(tmp_path, out, GRID, DATASETS, inputs=report_inputs(), provenance={"params_hash": "x"})
    assert info == {"runs": 6, "missing": [MISSING]}
    return out


def test_tables_have_a_row_per_run_and_papers_beside_ours(report):
    page = (report / "index.html").read_text()
    for d in DATASETS:
        table = re.search(rf"<table id='results-{d}'>.*?</table>", page).group(0)
        assert re.findall(r"<tr data-run='([^']+)'>", table) == [f"{o}/{d}" for o in OBJECTIVES]
    jem = re.search(r"<tr data-run='jem/cifar10'>(.*?)</tr>", page).group(1)
    assert "43.21 (paper 92.9 [P])" in jem  # JEM Table 1 accuracy beside ours
    assert "not computed (paper 38.4 [P])" in jem  # FID: ours not computed, the paper's value shown
    assert "0.610 (paper 0.65 [S])" in jem  # AUROC interp, logpx
    assert "43.21" in re.search(r"<tr data-run='jem/shapes'>(.*?)</tr>", page).group(1)
    assert "paper" not in re.search(r"<tr data-run='jem/shapes'>(.*?)</tr>", page).group(1)  # no paper numbers
    assert "Missing runs (no metrics.json): sada_jem/shapes" in page
    assert "IS/FID not computed: Inception weights not available" in page
    pgd = re.findall(r"<th>(PGD [^<]+)</th>", page)  # 4 per results table, L∞ first, budgets ascending
    assert pgd[:4] == ["PGD L∞ 2/255 %", "PGD L∞ 8/255 %", "PGD L2 50/255 %", "PGD L2 100/255 %"]
    md = (report / "report.md").read_text()
    assert "| jem | cifar10 | 43.21 (paper 92.9 [P])" in md


def test_pretraining_table_over_the_loss_weight(report):
    page = (report / "index.html").read_text()
    table = re.search(r"<table id='pretrain-cifar10'>.*?</table>", page).group(0)
    assert re.findall(r"<tr data-run='([^']+)'>", table) == ["w0", "w0.5", "w1"]
    assert "<td>35.00</td>" in table and "0.300 / 0.500" in table


def test_every_image_referenced_exists_and_figures_are_there(report):
    page = (report / "index.html").read_text()
    imgs = re.findall(r"<img src='([^']+)'", page)
    assert all((report / i).is_file() for i in imgs)
    names = set(imgs)
    for d in DATASETS:
        assert {f"reliability_{d}.png", f"robustness_{d}.png", f"curves_{d}.png", f"ood_jem_{d}.png",
                f"samples_fresh_jem_{d}.png", f"samples_cond_jem_{d}.png", f"samples_buffer_jem_{d}.png"} <= names
    assert "samples_buffer_softmax_shapes.png" not in names and "pretrain_cifar10.png" in names


def test_differing_params_lists_only_keys_that_differ(report):
    page = (report / "index.html").read_text()
    table = re.search(r"<table id='params-diff'>.*?</table>", page).group(0)
    header = re.findall(r"<th>([^<]+)</th>", table)
    assert "dataset" in header and "train.jem.sgld_steps" in header
    assert "train.common.lr" not in header and "model.depth" not in header  # the same in every run
    from ebm.report import Run
    h, rows = differing_params([Run("jem", "shapes", summary={"params": {"a": {"x": 1}}}),
                                Run("jem", "cifar10", summary={"params": {"a": {"x": 1}}})])
    assert h == ["run", "dataset"]


def test_sample_sizes_beside_is_fid_and_grid_captions_name_the_sampler(report):
    page = (report / "index.html").read_text()
    soft = re.search(r"<tr data-run='softmax/cifar10'>(.*?)</tr>", page).group(1)
    assert "3.21 (n=10)" in soft and "99.50 (n=10 vs 100 real)" in soft
    assert "Samples of jem/cifar10: unconditional, fresh chains (jem sampler: made by test)" in page


def _seed_run(root: Path, run: str, seed: int, acc: float, ece: float, logpx: float, pxgrad: float) -> None:
    """A finished run of `shapes` whose summary records its training seed and whose metrics are the given ones."""
    _run(root, run, "shapes", seed)
    tr, ev = root / "train" / run / "shapes", root / "evaluate" / run / "shapes"
    summary = json.loads((tr / "summary.json").read_text())
    summary["params"] = {"model": {"depth": 10}, "train.common": {"seed": seed, "lr": 0.003}}
    (tr / "summary.json").write_text(json.dumps(summary))
    metrics = json.loads((ev / "metrics.json").read_text())
    metrics.update(accuracy=acc, ece=ece, ood_auroc={"noise": {"logpx": logpx, "maxprob": 0.5, "pxgrad": pxgrad}})
    (ev / "metrics.json").write_text(json.dumps(metrics))


def test_seed_replicates_are_one_row_with_their_spread_and_their_marks_against_softmax(tmp_path):
    """`pipeline.runset --seeds 1,2` over a grid of softmax and jem and named runs: the report's "Seeds" table
    has a row per group of runs that differ in their seed alone and have two or more finished seeds, named
    after the run replicated, with the mean ± sd of each metric, and counts, on the seeds softmax's group of
    the same shared settings also ran, the seeds where each mark of issue 17's bar holds."""
    from pipeline.report import report_items
    from pipeline.runset import seed_runs

    raw = {"objectives": ["softmax", "jem"], "datasets": ["shapes"], "train": {"common": {"seed": 0}},
           "runs": {"wide": {"objective": "jem", "dataset": "shapes", "model": {"width": 2}},
                    "smooth": {"objective": "softmax", "dataset": "shapes", "train": {"softmax": {"label_smoothing": 0.1}}},
                    "five": {"objective": "jem", "dataset": "shapes", "model": {"width": 3}, "train": {"common": {"seed": 5}}},
                    "lone": {"objective": "jem", "dataset": "shapes", "model": {"width": 4}}}}
    raw = seed_runs(raw, [1, 2])
    data = tmp_path / "data"
    # softmax: seeds 0 and 2 finished (its seed 1 is missing); jem: seeds 0, 1, 2
    _seed_run(data, "softmax", 0, 0.95, 0.020, 0.30, 0.60)
    _seed_run(data, "softmax-seed2", 2, 0.96, 0.030, 0.30, 0.60)
    _seed_run(data, "jem", 0, 0.92, 0.010, 0.90, 0.10)      # within 3, ECE lower, logpx higher
    _seed_run(data, "jem-seed1", 1, 0.93, 0.050, 0.10, 0.10)  # not paired: softmax's seed 1 is missing
    _seed_run(data, "jem-seed2", 2, 0.92, 0.040, 0.20, 0.70)  # 4 behind, ECE higher, pxgrad higher
    # label smoothing: a softmax group of its own, never the reference (its ECE would make jem's 0 of 2 read 2 of 2)
    _seed_run(data, "smooth", 0, 0.95, 0.500, 0.3, 0.6)
    _seed_run(data, "smooth-seed2", 2, 0.95, 0.500, 0.3, 0.6)
    _seed_run(data, "wide", 0, 0.90, 0.02, 0.5, 0.5)
    _seed_run(data, "wide-seed1", 1, 0.80, 0.04, 0.5, 0.5)
    _seed_run(data, "five", 5, 0.90, 0.02, 0.5, 0.5)         # its own seed is not the lowest of its group
    _seed_run(data, "five-seed2", 2, 0.90, 0.03, 0.5, 0.5)
    _seed_run(data, "lone", 0, 0.90, 0.02, 0.5, 0.5)         # one finished seed: no row
    out = tmp_path / "report"
    out.mkdir()
    write_report(tmp_path, out, report_items(raw), ["shapes"], inputs=report_inputs(), provenance={})
    page = (out / "index.html").read_text()
    table = re.search(r"<table id='seeds-shapes'>(.*?)</table>", page).group(1)
    rows = {run: re.findall(r"<td>([^<]*)</td>", cells)
            for run, cells in re.findall(r"<tr data-run='([^']+)'>(.*?)</tr>", table)}
    assert list(rows) == [f"{r}/shapes+seeds" for r in ("softmax", "jem", "wide", "smooth", "five")]
    header = re.findall(r"<th>([^<]*)</th>", table)
    assert header[:5] == ["objective", "dataset", "seeds", "accuracy %", "ECE %"]
    col = {h: i for i, h in enumerate(header)}
    assert rows["softmax/shapes+seeds"][col["seeds"]] == "0, 2"
    jem = rows["jem/shapes+seeds"]
    assert jem[col["seeds"]] == "0, 1, 2"
    assert jem[col["accuracy %"]] == "92.33 ± 0.58"
    assert jem[col["ECE %"]] == "3.33 ± 2.08"
    assert jem[col["AUROC noise (logpx)"]] == "0.400 ± 0.436"
    assert jem[-1] == "1 of 2 · 1 of 2 · 2 of 2"  # seeds 0 and 2: accuracy, ECE, a generative score
    assert rows["softmax/shapes+seeds"][-1] == rows["smooth/shapes+seeds"][-1] == "–"
    assert rows["wide/shapes+seeds"][0] == "jem (wide)"
    assert rows["wide/shapes+seeds"][-1] == "no softmax group with these settings and seeds"
    assert rows["five/shapes+seeds"][:3] == ["jem (five)", "shapes", "2, 5"]
    # the results table keeps a row per run: 6 runs and 2 seeds of each, those without outputs too
    results = re.search(r"<table id='results-shapes'>(.*?)</table>", page).group(1)
    assert len(re.findall(r"<tr data-run=", results)) == 18
    assert "| jem | shapes | 0, 1, 2 | 92.33 ± 0.58 | 3.33 ± 2.08 |" in (out / "report.md").read_text()


def test_a_report_without_seed_replicates_has_no_seeds_table(report):
    assert "id='seeds-" not in (report / "index.html").read_text()


def test_seed_groups_skip_runs_without_accuracy_or_ece():
    """A metrics.json without accuracy or ECE (a partial file) leaves its run out of the seed table
    instead of breaking the report: with it, this group has one scored seed, so no row."""
    from ebm.report.runs import Run
    from ebm.report.seeds import seeds_table

    def run(name: str, seed: int, metrics: dict) -> Run:
        return Run("jem", "shapes", name, metrics=metrics, summary={"params": {"train.common": {"seed": seed}}},
                   variant={})
    scored = {"accuracy": 0.9, "ece": 0.02, "ood_auroc": {}}
    assert seeds_table([run("jem", 0, scored), run("jem-seed1", 1, {"accuracy": 0.9})]) is None
    assert seeds_table([run("jem", 0, scored), run("jem-seed1", 1, scored)]) is not None
