"""The report's chart draws what the metrics say, including a point estimate that falls outside
its own bootstrap interval (seen on the tiny preset with few sequences)."""
from __future__ import annotations

import pandas as pd

from pipeline.stages.report import chart


def test_chart_of_a_point_outside_its_interval(tmp_path):
    frame = pd.DataFrame([
        {"hypothesis": "h", "part": part, "recovered": 50.0, "ci_low": 52.0 if part == "Q" else 40.0,
         "ci_high": 60.0, "writeup": None} for part in ("Q", "K", "V", "All")])
    chart(frame, tmp_path / "recovered.png")
    assert (tmp_path / "recovered.png").stat().st_size > 1000
