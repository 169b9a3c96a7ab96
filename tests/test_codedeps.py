"""Stage code dependencies come from imports: dvc.yaml and the Snakefile declare every project file a
stage's script loads, so editing one reruns the stage."""
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.codedeps import code_deps
from pipeline.stages import ORDER, STAGES
from tests.conftest import REPO

# Import each stage's module in one fresh interpreter, dropping the project's modules in between (torch
# and the like stay loaded, so this is quick) and printing the project files each import loaded.
LOADED = """
import importlib, sys
for module in sys.argv[1:]:
    for m in [m for m in sys.modules if m.split('.')[0] in ('ebm', 'pipeline')]:
        del sys.modules[m]
    importlib.import_module(module)
    files = [m.__file__ for n, m in sys.modules.items() if n.split('.')[0] in ('ebm', 'pipeline')]
    print(module, *files)
"""


def loaded_by_stage() -> dict[str, set[str]]:
    """Per stage, the project files that importing its script really loads (not the AST walk)."""
    modules = [STAGES[name].cmd.split()[2] for name in ORDER]
    out = subprocess.run([sys.executable, "-c", LOADED, *modules], cwd=REPO, capture_output=True, text=True,
                         check=True, timeout=300).stdout
    by_module = {line.split()[0]: {str(Path(f).relative_to(REPO)) for f in line.split()[1:]}
                 for line in out.splitlines()}
    return {name: by_module[STAGES[name].cmd.split()[2]] for name in ORDER}


def undeclared(loaded: dict[str, set[str]], declared: dict[str, list[str]]) -> dict[str, list[str]]:
    missing = {name: sorted(files - set(declared[name])) for name, files in loaded.items()}
    return {k: v for k, v in missing.items() if v}


def test_dvc_yaml_declares_every_project_file_each_stage_loads():
    """Fails when a stage imports project code that dvc.yaml does not list."""
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    deps = {n: doc["stages"][n]["deps"] for n in ORDER}
    loaded = loaded_by_stage()
    assert "pipeline/train.py" in loaded["train"] and "ebm/sampling.py" in loaded["train"]  # the probe works
    assert undeclared(loaded, deps) == {}
    # the check can fail: drop one file the train stage imports
    deps["train"] = [d for d in deps["train"] if d != "ebm/sampling.py"]
    assert undeclared(loaded, deps) == {"train": ["ebm/sampling.py"]}


def test_stage_deps_are_derived_for_both_tools():
    """dvc.yaml and the Snakefile's rule inputs both take Stage.code(): the AST walk from the script."""
    for name in ORDER:
        code = STAGES[name].code()
        assert code == list(code_deps(STAGES[name].cmd.split()[2]))
        assert {"pipeline/stages.py", "pipeline/codedeps.py", "pipeline/common.py"} <= set(code)
    assert "STAGES[stage].code()" in (REPO / "Snakefile").read_text()
    assert "ebm/pretrain/train.py" not in STAGES["generate"].code()  # only what the script imports
    assert "ebm/objectives/jem.py" in STAGES["generate"].code()  # through ebm/generate.py's lazy import


def test_the_walk_follows_every_kind_of_import(tmp_path):
    pkg = tmp_path / "ebm"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import rel\n")
    (pkg / "sub" / "rel.py").write_text("from ..lazy_target import x\n")
    (pkg / "lazy_target.py").write_text("x = 1\n")
    (pkg / "fn.py").write_text("def f():\n    import ebm.deep\n")
    (pkg / "deep.py").write_text("")
    (pkg / "from_pkg.py").write_text("")
    (pkg / "unused.py").write_text("")
    (pkg / "main.py").write_text("import numpy\nfrom ebm import from_pkg\nfrom ebm.sub import rel\nimport ebm.fn\n")
    assert code_deps("ebm.main", tmp_path) == (
        "ebm/__init__.py", "ebm/deep.py", "ebm/fn.py", "ebm/from_pkg.py", "ebm/lazy_target.py", "ebm/main.py",
        "ebm/sub/__init__.py", "ebm/sub/rel.py")
