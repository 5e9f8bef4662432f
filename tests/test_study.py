"""The study (experiments/study): the quick study reproduces the committed quick section of
docs/RESULTS.md byte for byte, and every figure the document names exists.

The findings themselves are not asserted here: the document reports what came out."""
import re
import subprocess

import pytest

from tests.scripts import ROOT, script, script_env

RESULTS = ROOT / "docs" / "RESULTS.md"
FIGURE = re.compile(r"!\[[^\]]*\]\((figures/study/[^)]+)\)")


def _section(text: str, mode: str) -> str:
    m = re.search(rf"<!-- study:{mode}:begin -->\n(.*?)\n<!-- study:{mode}:end -->", text, re.S)
    assert m, f"no {mode} section"
    return m.group(1)


def test_every_figure_named_in_the_results_exists():
    names = FIGURE.findall(RESULTS.read_text())
    assert names
    missing = [n for n in names if not (ROOT / "docs" / n).is_file()]
    assert not missing, missing


@pytest.mark.slow
def test_the_quick_study_reproduces_its_committed_section(tmp_path):
    doc, figures = tmp_path / "RESULTS.md", tmp_path / "figures"
    out = subprocess.run(script("experiments", "study", "run.py") + [
        "--quick", f"--workdir={tmp_path / 'runs'}", f"--results={doc}", f"--figures={figures}"],
        capture_output=True, text=True, timeout=1200, env=script_env(), cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    fresh, committed = _section(doc.read_text(), "quick"), _section(RESULTS.read_text(), "quick")
    assert fresh == committed
    for link in FIGURE.findall(fresh):
        assert (figures / link.rsplit("/", 1)[1]).is_file(), link
