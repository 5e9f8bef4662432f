"""Every Python block of README.md runs as written: each in a fresh interpreter (no test
settings: the block must enable float64 itself where it needs it), in a scratch folder."""
import re
import subprocess
import sys

import pytest

from tests.scripts import ROOT, script_env

BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(),
                    re.M | re.S)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 3  # the quick start, the cumulant solver, a sweep read back


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs_as_written(index, tmp_path):
    out = subprocess.run([sys.executable, "-c",
                          BLOCKS[index]], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600, env=script_env(XLA_FLAGS=None))
    assert out.returncode == 0, f"README block {index}:\n{BLOCKS[index]}\n{out.stderr[-3000:]}"
