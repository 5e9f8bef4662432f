"""The CLT flow demo: exact and sampled flows agree, divergent cumulants are labelled."""
import json
import subprocess

import jax
import numpy as np

from rgsym import distributions as D
from rgsym import flow_check
from tests.scripts import MISSING_BACKEND_LOG, script, script_env


def test_rows_agree_with_exact_flow_within_standard_errors():
    rows, levels = flow_check.flow_rows(D.get("exponential").standardised(), jax.random.key(0),
                                        b=3, dim=1, steps=2, n_final=60_000)
    assert [r.step for r in rows] == [0, 1, 2] and [len(v) for v in levels] == [540_000, 180_000, 60_000]
    assert all(z < 5 for r in rows for z in r.z)
    # the skewness of a standardised exponential (2) shrinks by sqrt(3) per step
    np.testing.assert_allclose([r.exact[2] for r in rows], [2.0, 2 / 3 ** 0.5, 2 / 3], rtol=1e-12)


def test_divergent_cumulants_are_labelled_not_numbers():
    rows, _ = flow_check.flow_rows(D.get("student_t", df=3.0), jax.random.key(1), steps=1,
                                   n_final=1000)
    assert rows[0].exact[2:] == (None, None) and rows[0].z[1:] == (None, None, None)
    table = flow_check.format_table(rows)
    assert "diverges" in table and "standard error not valid" in table
    # Markdown: the header, the separator and every row have the same number of columns
    table_lines = [l for l in table.splitlines() if l.startswith("|")]
    assert len(table_lines) == 2 + len(rows)
    assert {l.count("|") for l in table_lines} == {2 + 2 * 4 + 1}


def test_demo_script_writes_table_and_figure(tmp_path):
    out = subprocess.run(
        script("experiments", "clt_flow.py") + [
            f"--workdir={tmp_path}", "--families=uniform,rademacher", "--steps=2",
            "--n_final=2000", "--dim=2"],
        capture_output=True, text=True, timeout=300, env=script_env())
    assert out.returncode == 0, out.stderr
    assert MISSING_BACKEND_LOG not in out.stderr
    assert "| rademacher | 2 |" in out.stdout
    rows = [json.loads(l) for l in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and (tmp_path / "flow_histograms.png").stat().st_size > 10_000
    bad = subprocess.run(
        script("experiments", "clt_flow.py") + [f"--workdir={tmp_path}", "--families=cauchyy"],
        capture_output=True, text=True, timeout=300, env=script_env())
    assert bad.returncode == 1 and bad.stderr.startswith("error: --families: unknown family")
    assert len(bad.stderr.strip().splitlines()) == 1 and "known families" in bad.stderr
