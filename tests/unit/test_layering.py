"""Imports point one way (docs/architecture.md, "Layers"): foundation <- ingest, imaging <- scoring <-
outputs <- pipeline/worker <- roles/cli.

Every module of the package is parsed (not imported) and each of its imports, at the top or
inside a function, is checked against ALLOWED_IMPORTS. The point is what each process role loads:
the ingest pods and the worker must not carry pyradiomics and SimpleITK (about 98 MiB), and a
subpackage must be testable and replaceable without the layers above it. The second half checks
the outcome in a fresh interpreter.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import service

PACKAGE = Path(service.__file__).parent

# Subpackages are units of their own; a module directly in service/ is classified here. A new
# top-level module fails test_every_module_has_a_layer until it is placed.
SUBPACKAGES = {"ingest", "imaging", "scoring", "outputs", "signatures", "longitudinal", "priors", "roles", "commands"}
TOP_LEVEL = {
    # foundation: plain types, errors, settings, DICOM helpers: what every layer may use
    "__init__": "foundation", "model": "foundation", "errors": "foundation", "config": "foundation",
    "uids": "foundation", "sop_classes": "foundation", "transfer_syntaxes": "foundation",
    "durable": "foundation", "dicom": "foundation", "dicom_limits": "foundation", "backoff": "foundation",
    "registration_object": "foundation",  # a Spatial Registration's matrices, read by ingest and follow-up
    "location": "foundation", "tls": "foundation", "observability": "foundation",
    "secret_file": "foundation",  # a credential from a file, followed when it changes (config and its consumers)
    "scorer": "foundation",  # the Scorer protocol: what the pipeline needs of any scorer
    "comparison": "foundation",  # a follow-up as plain data, for the outputs to encode
    # pipeline: a study from instances to outputs (service, `score`, `features`)
    "pipeline": "pipeline", "worker": "pipeline", "feature_report": "pipeline", "follow_up": "pipeline",
    "response": "pipeline",
    "registration": "pipeline", "spatial_registration": "pipeline", "prior_frames": "pipeline",  # prior -> current frame mappings
    "prior_ct": "pipeline", "adoption": "pipeline", "restoration": "pipeline",  # series retrieved from PACS, put to use
    "prior_retry": "pipeline",  # studies scored without their priors, scored again
    "retention": "pipeline",  # the spool freed of studies delivered and reconciled (asks the outbox)
    # roles: processes and the command line
    "cli": "roles", "exit_codes": "roles", "report": "roles", "lifeline": "roles", "stop_signals": "roles",
    "allocator": "roles",
}
UNIT_OF_SUBPACKAGE = {"signatures": "foundation",  # data files (signature JSON and its schema)
                      "roles": "roles", "commands": "roles"}  # a module per process role, per command

# unit -> the units its modules may import (its own included). ingest and imaging are siblings:
# neither imports the other.
ALLOWED_IMPORTS: dict[str, set[str]] = {
    "foundation": {"foundation"},
    "ingest": {"foundation", "ingest"},
    "imaging": {"foundation", "imaging"},
    "scoring": {"foundation", "imaging", "scoring"},
    "outputs": {"foundation", "imaging", "scoring", "outputs"},
    # lesion tracking across studies: pure functions over plain types
    "longitudinal": {"foundation", "longitudinal"},
    # the patient's earlier SRs from PACS: reads what outputs writes (its codes)
    "priors": {"foundation", "outputs", "priors"},
    "pipeline": {"foundation", "ingest", "imaging", "scoring", "outputs", "longitudinal", "priors", "pipeline"},
    "roles": {"foundation", "ingest", "imaging", "scoring", "outputs", "longitudinal", "priors", "pipeline",
              "roles"},
}
# The scoring engine: only the scoring layer and the in-process `features` command may import it.
HEAVY = {"radiomics", "SimpleITK"}
MAY_IMPORT_HEAVY = {"scoring", "pipeline", "roles"}


def _module_name(path: Path) -> str:
    parts = ("service",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in SUBPACKAGES:
        return UNIT_OF_SUBPACKAGE.get(parts[1], parts[1])
    return TOP_LEVEL[parts[1] if len(parts) > 1 else "__init__"]


def _imports(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            names.add(".".join(filter(None, [base, node.module or ""])))
    return names


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "proto" not in p.relative_to(PACKAGE).parts)


def test_the_parser_sees_the_known_edges() -> None:
    """Guards the test itself: a parser that found nothing would pass everything."""
    assert {"service.model", "service.uids", "numpy"} <= _imports(PACKAGE / "imaging" / "crops.py")
    assert "service.scoring.features" in _imports(PACKAGE / "scoring" / "signatures.py")  # inside a function
    generated = PACKAGE / "scoring" / "proto" / "radiomics_cds" / "v1" / "scoring_pb2_grpc.py"
    assert "service.scoring.proto.radiomics_cds.v1" in _imports(generated)  # from . import scoring_pb2
    assert (_unit("service.scoring.lesion"), _unit("service"), _unit("service.dicom")) == ("scoring", "foundation",
                                                                                            "foundation")


def test_every_module_has_a_layer() -> None:
    names = [_module_name(path).split(".") for path in MODULES]
    unplaced = [".".join(name) for name in names if len(name) > 1 and name[1] not in SUBPACKAGES | set(TOP_LEVEL)]
    assert unplaced == [], "place these modules in TOP_LEVEL (see ALLOWED_IMPORTS)"


@pytest.mark.parametrize("path", MODULES, ids=lambda path: _module_name(path))
def test_imports_point_one_way(path: Path) -> None:
    unit = _unit(_module_name(path))
    imported = _imports(path)
    upward = sorted(name for name in imported
                    if name.split(".")[0] == "service" and _unit(name) not in ALLOWED_IMPORTS[unit])
    assert upward == [], f"{unit} may import only {sorted(ALLOWED_IMPORTS[unit])}"
    heavy = sorted(name for name in imported if name.split(".")[0] in HEAVY)
    assert unit in MAY_IMPORT_HEAVY or heavy == []


@pytest.mark.parametrize("module", ["service.worker", "service.ingest.scp", "service.imaging.selection",
                                    "service.roles.ingest"])
def test_ingest_and_worker_load_no_scoring_engine(module: str) -> None:
    """What the role actually loads, in a fresh interpreter (imports made by imports included)."""
    probe = f"import json, sys, {module}; print(json.dumps(sorted(set(sys.modules) & set({sorted(HEAVY)!r}))))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=PACKAGE.parent)
    assert json.loads(loaded.stdout) == []


def test_the_command_line_module_loads_none_of_the_commands() -> None:
    """service.cli is the main module of `serve`, and multiprocessing's spawn re-imports the main
    module into the page renderer (service.outputs.page_process): importing it must load the
    parser and the settings only, not the scoring core, gRPC or the output builders
    (service.commands is imported once a command runs). The renderer measured 339 MB resident with them, 149 without."""
    probe = ("import json, sys, service.cli; "
             "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules} & "
             "{'radiomics', 'SimpleITK', 'grpc', 'highdicom', 'fhir', 'matplotlib', 'scipy'})))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=PACKAGE.parent)
    assert json.loads(loaded.stdout) == []


OUTPUT_BUILDERS = {"highdicom", "fhir", "matplotlib"}
# A loaded module named here, or inside a package named here, fails the command.
NOT_LOADED_BY_COMMAND = {
    "status": HEAVY | OUTPUT_BUILDERS | {"grpc", "service.scoring", "service.worker"},
    "redeliver": HEAVY | OUTPUT_BUILDERS | {"grpc", "service.scoring", "service.worker"},
    "rescore": HEAVY | OUTPUT_BUILDERS | {"grpc", "service.scoring", "service.worker", "service.outputs"},
    "prune": HEAVY | OUTPUT_BUILDERS | {"grpc", "service.scoring", "service.worker"},
    "send": HEAVY | OUTPUT_BUILDERS | {"grpc", "service.ingest", "service.scoring", "service.worker"},
    "show": HEAVY | {"fhir", "matplotlib", "grpc", "service.worker"},  # highdicom reads the SR
    "scorer": OUTPUT_BUILDERS | {"service.ingest", "service.outputs", "service.worker", "service.pipeline"},
    # matplotlib: the page renderer's process draws the pages (service.outputs.page_process.render_page)
    "ingest": HEAVY | {"service.scoring.in_process", "service.scoring.lesion", "service.scoring.server",
                       "matplotlib", "fontTools", "service.outputs.summary"},
    # until its scorer child is started (test_serve_imports_the_ingest_side_once_its_child_is_started)
    "serve": HEAVY | OUTPUT_BUILDERS | {"service.roles.ingest", "service.worker", "service.outputs.page_process"},
}


@pytest.mark.parametrize("command", sorted(NOT_LOADED_BY_COMMAND))
def test_a_command_loads_only_what_it_uses(command: str) -> None:
    """Each command is a module of its own (service.commands) so that its process starts with
    only what it uses: `status` in about 0.6 s, not the 2.7 s of importing every command's
    needs, a scorer without the listener and output builders it never runs, an ingest process
    without the scoring engine."""
    forbidden = sorted(NOT_LOADED_BY_COMMAND[command])
    probe = (f"import json, sys, service.cli, service.commands.{command}; "
             f"print(json.dumps(sorted(name for name in sys.modules "
             f"if any(name == f or name.startswith(f + '.') for f in {forbidden!r}))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=PACKAGE.parent)
    assert json.loads(loaded.stdout) == []


def test_serve_imports_the_ingest_side_once_its_child_is_started() -> None:
    """serve starts its scorer child before importing the ingest side, so that the two
    processes' imports overlap (service.roles.serve): checked at the moment the child starts,
    in a fresh interpreter, with a start that records what is loaded and stops serve there."""
    probe = """
import json, sys
from service.config import load_config
from service.roles import serve

class Started(Exception):
    pass

def start_child(command, env):
    print(json.dumps("service.roles.ingest" in sys.modules))
    raise Started

serve.start_child = start_child
serve.require_free_address = serve.check_scorer_metrics_port = lambda *args: None
try:
    serve.run_serve(load_config(None), None)
except Started:
    pass
"""
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=PACKAGE.parent)
    assert json.loads(loaded.stdout) is False
