"""Start-up of the commands that run without a bundle, against their budget.

`redkeep exporter --url ...` and `redkeep backup run --url ... --dest ...` need no redkeep.yaml:
their settings are the defaults of config/defaults.py (plain dataclasses), so they never import
pydantic, the schema, PyYAML or cryptography. Over ROUNDS fresh processes: the import time of
what the command imports before it starts working (`python -X importtime`, cumulative,
everything the interpreter itself does not load; the fastest run is the code's own cost, the
median shows the machine's load) and the process's peak resident memory then (VmHWM, median).
"""

import os
import subprocess
import sys

from benchmarks.harness import median

ROUNDS = 9
# What each command imports before it starts working (cli/__init__ loads a command's module
# only when it runs).
PATHS = {
    "exporter": ("redkeep.cli", "redkeep.cli.exporter"),
    "backup": ("redkeep.cli", "redkeep.cli.backup"),
    # The exporter inside a bundle: it validates redkeep.yaml, which loads pydantic and PyYAML.
    "exporter_bundle": ("redkeep.cli", "redkeep.cli.exporter", "redkeep.config.load"),
}
HEAVY = ("pydantic", "yaml", "cryptography", "redis")
# The budget: what a command without a bundle may cost before it starts working.
BUDGET_MS = 250
BUDGET_MIB = 30


def run() -> dict:
    interpreter = set(_imports(()).keys())
    result = {"rounds": ROUNDS, "budget_ms": BUDGET_MS, "budget_mib": BUDGET_MIB}
    for name, modules in PATHS.items():
        times, peaks = [], []
        for _ in range(ROUNDS):
            imports = _imports(modules)
            times.append(sum(ms for module, ms in imports.items() if module not in interpreter))
            peaks.append(_peak_mib(modules))
        result[name] = {
            "ms": min(times),
            "median_ms": median(times),
            "mib": median(peaks),
            "heavy": sorted(_heavy(modules)),
        }
    return result


def _imports(modules: tuple[str, ...]) -> dict[str, float]:
    """{top-level import: cumulative ms} of a fresh interpreter importing `modules`."""
    script = f"import {', '.join(modules)}" if modules else "pass"
    output = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
        env=_environment(),
    ).stderr
    found = {}
    for line in output.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if cumulative.strip().isdigit() and not name.startswith("  "):  # depth 0
            found[name.strip()] = found.get(name.strip(), 0.0) + int(cumulative) / 1000
    return found


def _peak_mib(modules: tuple[str, ...]) -> float:
    status = _run(f"import {', '.join(modules)}; print(open('/proc/self/status').read())")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0]) / 1024


def _heavy(modules: tuple[str, ...]) -> set[str]:
    loaded = _run(f"import sys, {', '.join(modules)}; print(' '.join(sys.modules))").split()
    return {name for name in HEAVY if name in loaded}


def _run(script: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
        env=_environment(),
    ).stdout


def _environment() -> dict[str, str]:
    """No REDKEEP_* settings of the caller; no import-time log of its own."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("REDKEEP_", "PYTHONPROFILEIMPORTTIME"))
    }
