"""The HTML report in a real browser: headless Chromium (Debian's `chromium`, installed by `make test`)
opens it, takes a screenshot, and every image must have loaded and every table have a row per run."""
import shutil
from pathlib import Path

import pytest

from ebm.report import write_report
from pipeline.stages import report_inputs
from tests.test_report import DATASETS, GRID, OBJECTIVES, make_tree

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def test_report_renders_in_headless_chromium(tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.fail("Chromium not found: `make test` installs it (apt-get install chromium); "
                    "or install Debian's `chromium` package yourself")
    from playwright.sync_api import sync_playwright

    make_tree(tmp_path / "data")
    out = tmp_path / "report"
    out.mkdir()
    write_report(tmp_path, out, GRID, DATASETS, inputs=report_inputs(), provenance={})
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=FLAGS)  # Playwright starts each launch with a fresh, empty profile
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto((out / "index.html").as_uri(), wait_until="load")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            images = page.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), "
                                   "i.complete && i.naturalWidth > 0])")
            rows = page.evaluate("Object.fromEntries(Array.from(document.querySelectorAll('table')).map(t => "
                                 "[t.id, Array.from(t.tBodies[0].rows).map(r => r.dataset.run)]))")
        finally:
            browser.close()
    assert len(images) >= 20 and [src for src, ok in images if not ok] == []
    for d in DATASETS:
        assert rows[f"results-{d}"] == [f"{o}/{d}" for o in OBJECTIVES]
    assert rows["pretrain-cifar10"] == ["w0", "w0.5", "w1"]
    assert len(rows["params-diff"]) == len(OBJECTIVES) * len(DATASETS) - 1  # the missing run has no params
    shot = (tmp_path / "report.png").read_bytes()
    assert shot[:4] == b"\x89PNG" and len(shot) > 50_000  # a real page, not a blank one
