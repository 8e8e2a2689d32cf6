"""binder/: what mybinder.org (repo2docker) needs to run the notebooks.

repo2docker ignores the root ``pyproject.toml`` as soon as ``binder/`` exists, so the package
must be installed by ``binder/requirements.txt``. The slow test does what repo2docker does:
a fresh virtual environment, ``pip install -r binder/requirements.txt`` from the repository
root, then imports everything the notebooks import.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"

#: Every top-level module the notebooks import, plus the JupyterLab side of ipywidgets.
NOTEBOOK_IMPORTS = ("mp_nb", "mp_nb.widgets", "pandas", "matplotlib", "numpy", "httpx",
                    "ipywidgets", "ipykernel", "jupyterlab", "jupyterlab_widgets", "pyarrow")


def requirement_lines() -> list[str]:
    lines = (BINDER / "requirements.txt").read_text().splitlines()
    return [s for line in lines if (s := line.split("#", 1)[0].strip())]


def test_binder_config_is_the_one_repo2docker_reads() -> None:
    assert not (ROOT / ".binder").exists(), "repo2docker refuses binder/ and .binder/ together"
    for overriding in ("environment.yml", "Dockerfile", "Pipfile"):
        assert not (BINDER / overriding).exists(), f"binder/{overriding} would bypass requirements.txt"
    assert any(re.fullmatch(r"(-e\s+)?\.\[[^\]]*\bnotebooks\b[^\]]*\]", r) for r in requirement_lines()), \
        "binder/requirements.txt must install the package with its notebooks extra"


def test_runtime_is_a_python_the_package_supports() -> None:
    runtime = (BINDER / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-3\.(\d+)", runtime)
    assert match, f"runtime.txt must look like python-3.12, got {runtime!r}"
    pyproject = (ROOT / "pyproject.toml").read_text()
    minimum = re.search(r'requires-python\s*=\s*">=3\.(\d+)"', pyproject)
    assert minimum and int(match.group(1)) >= int(minimum.group(1))


def test_badge_opens_the_quickstart_in_jupyterlab() -> None:
    badge = (BINDER / "README-badge.md").read_text()
    links = re.findall(r"\]\((https://mybinder\.org/v2/gh/[^)\s]+)\)", badge)
    assert links, "no mybinder.org launch link in binder/README-badge.md"
    for link in links:
        target = re.search(r"[?&]urlpath=lab/tree/([^&]+)", link)
        assert target, f"{link} does not open JupyterLab on a file"
        assert (ROOT / target.group(1)).is_file(), f"{target.group(1)} does not exist"
        assert target.group(1) == "notebooks/01-quickstart.ipynb"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_binder_requirements_install_the_package_into_a_fresh_venv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    # The user's pip cache is reused (pip's default); --no-compile skips writing .pyc files.
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-compile",
         "--disable-pip-version-check", "-r", str(BINDER / "requirements.txt")],
        cwd=ROOT, capture_output=True, text=True, timeout=840,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    probe = (
        "import importlib, json, sys\n"
        f"mods = {NOTEBOOK_IMPORTS!r}\n"
        "for m in mods: importlib.import_module(m)\n"
        "import mp_nb\n"
        "print(json.dumps({'mp_nb': mp_nb.__file__, 'prefix': sys.prefix}))\n"
    )
    run = subprocess.run([str(python), "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    where = Path(json.loads(run.stdout)["mp_nb"])
    # editable install: the notebooks on Binder use the repository's code, not a copy
    assert where.resolve() == (ROOT / "mp_nb" / "__init__.py").resolve()
