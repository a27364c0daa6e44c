"""The repository keeps its promises: one source of versions, the README's commands, clean notebooks."""

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_environment_yml_only_wraps_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    assert pip == ["-r requirements.txt", "-e ."]
    python = next(dep for dep in env["dependencies"] if isinstance(dep, str) and dep.startswith("python="))
    major, minor = map(int, python.split("=")[1].split(".")[:2])
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    low = re.fullmatch(r">=\s*(\d+)\.(\d+)", requires)
    assert low, f"requires-python should be a lower bound like '>=3.10', got {requires!r}"
    assert (major, minor) >= (int(low[1]), int(low[2])), f"environment.yml's {python} violates {requires}"
    assert not [d for d in env["dependencies"] if isinstance(d, str) and not d.startswith(("python", "pip"))], \
        "versions live in requirements.txt: environment.yml lists only python and pip"


def test_requirements_are_exact_pins():
    lines = [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    pins = dict(ln.split("==") for ln in lines if ln and not ln.startswith("#"))
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    for package in ("jupyterlab", "matplotlib", "einops", "nbval", "ipywidgets", "tqdm", "pytest"):
        assert package in pins, f"{package} is not pinned in requirements.txt"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert ci[-1].strip() == "make test"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_executed_in_order(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert "widgets" not in nb["metadata"], "stored widget state: save without it (make notebooks)"
    counts = [c["execution_count"] for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert counts == list(range(1, len(counts) + 1)), "run the notebook top to bottom in one kernel"
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors


def test_there_are_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name.startswith("00_")


def package_imports() -> dict[str, set[str]]:
    """Each minisora module -> the minisora modules it imports (at the top or inside a function)."""
    import ast

    graph = {}
    for path in (ROOT / "minisora").glob("*.py"):
        tree = ast.parse(path.read_text())
        graph[path.stem] = {node.module.split(".")[0] for node in ast.walk(tree)
                            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module}
    return graph


def test_only_trainers_import_training_modules_and_no_import_loops():
    graph = package_imports()
    for module, imports in graph.items():
        trainers = {m for m in imports if m.startswith("train")}
        if trainers and not (module.startswith("train") or module == "cli"):
            raise AssertionError(f"{module}.py imports the training module(s) {sorted(trainers)}")
    for module in graph:  # depth-first search for a path back to the module
        seen, stack = set(), [(module, [module])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                assert nxt != module, f"import loop: {' -> '.join(path + [nxt])}"
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
