"""Running `keyledger <args>` from a test, as an operator would, and getting back what a process would give.

Most runs happen in the test's own process through typer's test runner: the same command objects, settings
read from the same environment, the same exit codes and output, without starting a Python interpreter and
importing the package again (a second or more per run, hundreds of runs per suite). A run whose result
depends on what a process owns goes to a real `python -m api` subprocess instead:
- a PKCS#11 module (SoftHSM reads its configuration once per process, at C_Initialize);
- a working directory other than the checkout;
- ``subprocess=True``, for the tests that are about the entry point itself.
"""
from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Mapping, Sequence

from tests.servers import ROOT

_PROCESS_BOUND = ("SOFTHSM2_CONF", "KEYLEDGER_PKCS11_", "KEYLEDGER_CLOUDHSM_")


def _needs_a_process(env: Mapping[str, str], cwd: Path) -> bool:
    if Path(cwd).resolve() != Path.cwd().resolve():
        return True
    if env.get("KEYLEDGER_ROOT_KEY_PROVIDER") == "pkcs11":
        return True
    return any(name.startswith(_PROCESS_BOUND) for name in env)


def run_keyledger(args: Sequence[str], env: Mapping[str, str], *, cwd: Path = ROOT, timeout: float = 180,
                  input: str | None = None, subprocess_only: bool = False) -> subprocess.CompletedProcess:
    """`keyledger <args>` with exactly ``env`` as its environment; a CompletedProcess either way."""
    command = [sys.executable, "-m", "api", *args]
    if subprocess_only or _needs_a_process(env, cwd):
        return subprocess.run(command, cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout,
                              input=input)
    from typer.testing import CliRunner

    from api.cli import cli

    # Exactly ``env``: what the test's process has and ``env`` lacks is removed for the run, as a child's
    # environment would lack it.
    overrides: dict[str, str | None] = {name: None for name in os.environ if name not in env}
    overrides.update(env)
    result = CliRunner().invoke(cli, list(args), env=overrides, input=input, catch_exceptions=True)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # What the interpreter would have printed for an uncaught exception, so a test sees the traceback.
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(command, result.exit_code, result.stdout, stderr)
