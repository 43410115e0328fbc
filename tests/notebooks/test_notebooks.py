"""Every analyst notebook runs top to bottom on a fresh home (papermill, a real kernel)."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import papermill as pm
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _execute(tmp_path, name: str, **parameters) -> tuple[str, bool]:
    """Run notebooks/<name> with papermill; return its text outputs and whether it drew a plot."""
    out = tmp_path / f"{name}.out.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / name), str(out),
                        parameters={**parameters, "home": str(tmp_path / "home")},
                        kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    return text, any("image/png" in o.get("data", {}) for o in outputs)


def test_quickstart(tmp_path):
    text, plotted = _execute(tmp_path, "quickstart.ipynb", org="acme", days=10)
    assert "records in =" in text and "quarantined" in text
    assert "refused: table functions are not allowed" in text
    assert "acme rows:" in text and "globex rows: 0" in text
    assert plotted, "the spend plot was drawn"


def test_formula_playground(tmp_path):
    text, plotted = _execute(tmp_path, "formulas.ipynb", org="acme", days=14)
    assert "ratio of sums" in text and "mean of daily ratios" in text
    assert "fee_cpa = cpa * 1.15" in text and "Q4 agency fee" in text
    assert "unknown metric 'cliks' — did you mean 'clicks'?" in text
    assert "cannot add money (spend) and a count (clicks)" in text
    assert plotted, "the CPA plot was drawn"


def test_rules_notebook(tmp_path):
    text, plotted = _execute(tmp_path, "rules.ipynb", org="acme", days=30)
    assert "cpa_guardrail" in text and "saved version 1" in text
    assert "<Evaluation cpa_spike v1" in text and "retried 0" in text
    assert "{'and': [" in text and "cpa[yesterday] > 1.5 * cpa[previous_7d]" in text
    assert plotted, "the backtest plot was drawn"


def test_connections_notebook_against_a_local_meta(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "tests" / "connectors"))
    from fake_meta import TOKEN, FakeMeta

    monkeypatch.setenv("META_ACCESS_TOKEN", TOKEN)  # the kernel inherits it; no cell holds it
    with FakeMeta(days=5) as fake:
        text, plotted = _execute(tmp_path, "connections.ipynb", org="acme", base_url=fake.url,
                                 extra_settings={"poll_seconds": 0.01, "backoff_seconds": 0.01})
    assert "Acme US" in text and "Acme DE" in text          # the accounts the token reaches
    assert "AuthError" in text and "Create a new token" in text    # what a wrong token looks like
    assert "gaps:" in text and "ad-day rows" in text
    assert TOKEN not in text and "EAA-not-a-real-token" not in text
    out = (tmp_path / "connections.ipynb.out.ipynb").read_text()
    assert TOKEN not in out
    assert plotted, "the spend plot was drawn"
