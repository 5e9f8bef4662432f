"""Study claims (c) GNN cumulant propagation and (d) iterated flows: each claim's quick
sweeps run into a temporary workdir and its report is regenerated twice from them, byte for
byte the same, with every figure it links written."""
import re
from pathlib import Path

import pytest

from rgsym import results

STUDY = Path(__file__).resolve().parents[1] / "experiments" / "study"


@pytest.fixture
def study(monkeypatch):
    # The study runs experiments/study/run.py as a script, so its claim modules import
    # their siblings (common) from that folder: the same here, for this test only.
    monkeypatch.syspath_prepend(str(STUDY))
    import common
    return common


@pytest.mark.parametrize("claim", ["gnn_propagation", "flows"])
def test_quick_claim_report_is_deterministic(claim, study, tmp_path):
    import importlib
    mod = importlib.import_module(claim)
    configs = mod.sweeps(True)
    assert configs and all(c.name.startswith(claim.split("_")[0]) for c in configs)
    for cfg in configs:
        results.run(cfg, tmp_path / cfg.name, progress=False, log=lambda s: None)
    ctx = study.Context(tmp_path, tmp_path / "figures", True)
    first, second = mod.report(ctx), mod.report(ctx)
    assert first == second
    assert first.startswith("### " + mod.TITLE)
    links = re.findall(r"!\[([^\]]+)\]\(figures/study/quick/([^)]+)\)", first)
    assert links
    for name, file in links:
        assert file == f"{name}.png" and (ctx.figures / file).is_file(), file
