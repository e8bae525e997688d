"""What we ship is the product only: the operator's wheel and image hold no harness, and the wheel works
alone, installed into a clean virtualenv with nothing but its declared runtime dependencies."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from nlpmodel_harness.checkout import REPO
from nlpmodel_harness.dockercontext import context_files
from nlpmodel_operator.cli.main import BUILTIN_COMMANDS

EXAMPLES = sorted((REPO / "manifests" / "examples").glob("*.yaml"))
# Only in a checkout: the harness (its own distribution), the generators, the tests.
NOT_SHIPPED = re.compile(r"(^|/)(nlpmodel_harness|devtools|hack|tests|bench)(/|$)")
DEV_DISTRIBUTIONS = ("nlpmodel-harness", "nlpmodel-vllm-metrics", "pytest", "cel-python", "hypothesis")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built as the Dockerfile builds it: from the image's build context alone."""
    context = tmp_path_factory.mktemp("context")
    for relative in context_files(REPO):
        (context / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, context / relative)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(out), str(context)],
        check=True,
    )
    (built,) = out.glob("nlpmodel_operator-*.whl")
    return built


@pytest.fixture(scope="module")
def clean_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with the wheel and the dependencies it declares, nothing else."""
    root = tmp_path_factory.mktemp("venv")
    venv.create(root, with_pip=True, clear=True)
    python = root / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], check=True)
    return root / "bin"


def run(bin_dir: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    # Outside the checkout, so nothing of the source tree can be imported by accident.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(a) for a in args], cwd=bin_dir.parent, env=env, capture_output=True, text=True, check=False
    )


def test_the_wheel_holds_the_operator_package_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert names
    assert [n for n in names if NOT_SHIPPED.search(n)] == []
    distribution, version = wheel.name.split("-")[:2]
    assert {n.split("/")[0] for n in names} == {"nlpmodel_operator", f"{distribution}-{version}.dist-info"}


def test_the_image_build_context_holds_no_harness() -> None:
    files = list(context_files(REPO))
    assert "pyproject.toml" in files
    assert any(f.startswith("operator/nlpmodel_operator/core/") for f in files)
    assert [f for f in files if NOT_SHIPPED.search(f)] == []


def test_the_dockerfile_installs_the_wheel_not_the_source_tree() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"pip wheel .*--no-deps", dockerfile)
    assert re.search(r"pip install [^\n]*\.whl", dockerfile)
    # What it copies is in the context, and the final stage takes only the installed wheel.
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, flags=re.MULTILINE)
    files = set(context_files(REPO))
    for sources in copied:
        for source in sources.split():
            assert source in files or any(f.startswith(source.rstrip("/") + "/") for f in files), source


def test_only_the_runtime_dependencies_are_installed(clean_venv: Path) -> None:
    listed = run(clean_venv, clean_venv / "python", "-m", "pip", "list", "--format=freeze").stdout.lower()
    assert "nlpmodel-operator==" in listed
    assert [d for d in DEV_DISTRIBUTIONS if f"{d}==" in listed] == []


def test_every_module_of_the_wheel_imports_with_its_runtime_dependencies(clean_venv: Path) -> None:
    code = (
        "import importlib, pkgutil, nlpmodel_operator as p\n"
        "names = [m.name for m in pkgutil.walk_packages(p.__path__, 'nlpmodel_operator.')\n"
        "         if not m.name.endswith('__main__')]  # that one runs the operator\n"
        "[importlib.import_module(n) for n in names]\n"
        "print(len(names), p.__file__)"
    )
    proc = run(clean_venv, clean_venv / "python", "-c", code)
    assert proc.returncode == 0, proc.stderr
    count, location = proc.stdout.split()
    assert int(count) > 40
    assert "site-packages" in location  # the installed wheel, not the checkout


def test_every_shipped_subcommand_answers_help(clean_venv: Path) -> None:
    top = run(clean_venv, clean_venv / "nlpctl", "--help")
    assert top.returncode == 0, top.stderr
    choices = re.search(r"\{([a-z,]+)\}", top.stdout)
    assert choices, top.stdout
    listed = set(choices.group(1).split(","))
    # The harness's plugins (demo, localplane) exist only where the harness is installed.
    assert listed == set(BUILTIN_COMMANDS)
    for command in sorted(listed):
        proc = run(clean_venv, clean_venv / "nlpctl", command, "--help")
        assert proc.returncode == 0, (command, proc.stderr)
        assert f"usage: nlpctl {command}" in proc.stdout
    operator = run(clean_venv, clean_venv / "python", "-m", "nlpmodel_operator", "--help")
    assert operator.returncode == 0, operator.stderr
    assert "--namespace" in operator.stdout


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_validate_plan_and_render_the_examples_as_the_checkout_does(clean_venv: Path, example: Path) -> None:
    for command in ("validate", "plan", "render"):
        shipped = run(clean_venv, clean_venv / "nlpctl", command, example)
        checkout = subprocess.run(
            [sys.executable, "-m", "nlpmodel_operator.cli.main", command, str(example)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (shipped.returncode, shipped.stdout) == (checkout.returncode, checkout.stdout), command
    assert run(clean_venv, clean_venv / "nlpctl", "validate", example).returncode == (
        1 if "does-not-fit" in example.name else 0
    )
