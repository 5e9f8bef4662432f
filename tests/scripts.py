"""Running the repository's scripts in a subprocess, against this checkout's rgsym."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MISSING_BACKEND_LOG = "Unable to initialize backend"  # what JAX logs for an absent TPU


def script_env(**overrides) -> dict:
    """The environment with this checkout first on PYTHONPATH (an installed rgsym may be
    another checkout's); ``overrides`` set (or, given None, remove) variables."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]]
                                                       if env.get("PYTHONPATH") else []))
    for k, v in overrides.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def script(*parts: str) -> list[str]:
    """The command line running ``ROOT/parts`` with this Python."""
    return [sys.executable, str(ROOT.joinpath(*parts))]
