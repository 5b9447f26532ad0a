"""results/ builds tables from files alone: importing it must not pull in torch or a learner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_results_imports_neither_torch_nor_learners():
    code = (
        "import sys\n"
        "import results.records, results.stats, results.tables, results.schema\n"
        "import results.leaderboard, results.leaderboard_html, results.plots, results.cli\n"
        "import results.provenance, results.scoring\n"
        "print(sorted(m for m in ('torch', 'timm', 'baselines', 'benchmark') if m in sys.modules))\n"
    )
    # -B: the child must not write __pycache__ folders into the source tree
    out = subprocess.run(
        [sys.executable, "-B", "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
    )
    assert out.stdout.strip() == "[]"
