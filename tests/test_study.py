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


def test_a_flow_that_crossed_zero_is_told_with_its_sign(monkeypatch):
    # (found in review: "|excess kurtosis| shrank from 6.2 to 0.61 (exact 0.75)" for a tanh
    # map whose kurtosis went to -0.61, some 300 SE from the exact +0.75)
    monkeypatch.syspath_prepend(str(ROOT / "experiments" / "study"))
    import flows
    assert flows.change_sentence("|excess kurtosis|", 6.2, -0.61, 0.75, 0.01) == (
        "excess kurtosis went from 6.2 to -0.61, the other sign than the exact flow's (0.75)")
    assert flows.change_sentence("|skewness|", 2.0, 0.19, 0.71, 0.01) == (
        "|skewness| shrank from 2 to 0.19 (exact 0.71)")
    assert flows.change_sentence("|skewness|", 2.0, -0.005, 0.71, 0.01) == (
        "|skewness| shrank from 2 to 0.005 (exact 0.71)")
