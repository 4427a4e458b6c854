"""The whole pipeline, `dvc repro` on the tiny preset with two models (seeds 0 and 1), in a
scratch copy of the project: every stage runs on every model, every hypothesis reports, and
changing one hypothesis reruns only its stages (one per model) and the report."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.analysis.breakdown import COLUMNS as BREAKDOWN_COLUMNS
from pipeline.config.hypothesis import parse_hypothesis
from pipeline.data.sequences import load_sequences
from pipeline.outputs import rounded
from pipeline.paths import ModelPaths
from pipeline.scrub.inputs import resampler_classes
from tests.helpers.project import scratch_project
from tests.helpers.shell import sh

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    work = scratch_project(tmp_path_factory.mktemp("tiny"), dvc=True, with_data=["data/external/brown"])
    sh("dvc", "init", "--no-scm", "-q", cwd=work)
    sh(sys.executable, "-m", "pipeline.config", "preset=tiny", "seeds=[0,1]", cwd=work)
    run = sh("dvc", "repro", cwd=work)
    return work, run.stdout + run.stderr


def test_every_stage_runs_and_reports(project):
    work, log = project
    params = yaml.safe_load((work / "params.yaml").read_text())
    models = [ModelPaths(params["model"]["dir"], seed) for seed in (0, 1)]
    # two trainings that differ only in their seed give two different models
    assert (work / models[0].checkpoint).read_bytes() != (work / models[1].checkpoint).read_bytes()
    for m in models:
        check_model(work, params, m)
    by_model = pd.read_csv(work / "reports/results_by_model.csv")
    assert sorted(set(by_model.seed)) == [0, 1]
    assert (work / "reports/recovered.png").stat().st_size > 1000
    assert "refined2" in (work / "reports/results.md").read_text()
    # the review page: every view produced (no "not produced" notice), every link there
    page = (work / "reports/index.html").read_text()
    assert "not produced" not in page and (work / "reports/training.png").stat().st_size > 1000
    for target in re.findall(r' (?:href|src)="([^"#][^"]*)"', page):
        assert (work / "reports" / target).resolve().exists(), target
    assert "up to date" in sh("dvc", "status", cwd=work).stdout


def check_model(work: Path, params: dict, m: ModelPaths) -> None:
    """One model's heads, scrubs and sweep."""
    for key in params["hypotheses"]:
        metrics = json.loads((work / m.scrub_metrics(key)).read_text())
        assert metrics == rounded(metrics)  # six significant digits (docs/reproducibility.md)
        assert metrics["baseline_loss"] > 0 and metrics["original_loss"] > 0
        for part in ("q", "k", "v", "all"):
            assert metrics[part]["ci_low"] <= metrics[part]["recovered"] <= metrics[part]["ci_high"]
        table = pd.read_csv(work / m.scrub_breakdown(key), keep_default_na=False)
        assert list(table.columns) == BREAKDOWN_COLUMNS
        positions = pd.read_parquet(work / m.scrub_positions(key))
        for (part, _), rows in table.groupby(["part", "group"]):
            assert rows["count"].sum() == len(positions)
            # The groups' means, weighted by their counts, give back the part's loss in metrics.json
            # (each written to six significant digits).
            assert (rows.loss_scrubbed * rows["count"]).sum() / len(positions) == pytest.approx(metrics[part]["loss"],
                                                                                                rel=1e-5)
    # bonus 5's typicality class per scored position, as the resampler's rules give it.
    positions = pd.read_parquet(work / m.scrub_positions("bonus5"))
    hypothesis = parse_hypothesis("bonus5", params["hypotheses"]["bonus5"])
    names, index = resampler_classes(hypothesis, load_sequences(work / "data/tokens/sequences.parquet"),
                                     work / "data/tokens/tokenizer.json")["typicality"]
    assert list(positions.class_typicality) == [names[i] for i in index[positions.seq_id, positions.pos]]
    assert set(positions.class_typicality) == set(pd.read_csv(work / m.scrub_breakdown("bonus5"))
                                                 .query("group == 'typicality'").label)
    baseline = json.loads((work / m.scrub_metrics("baseline")).read_text())
    assert baseline["all"]["recovered"] == pytest.approx(0.0, abs=1e-3)
    # the head views: every figure, and an example whose token really repeats (tests/test_head_views.py)
    from pipeline.data.sequences import load_sequences as sequences_of

    example = json.loads((work / m.head_views).read_text())["example"]
    x = sequences_of(work / "data/tokens/sequences.parquet")[example["seq_id"]]
    assert x[example["query"]] == x[example["earlier"]] and x[example["query"] + 1] == x[example["earlier"] + 1]
    for figure in (m.head_scores_figure, m.head_example_figure, m.relative_figure):
        assert (work / figure).stat().st_size > 1000
    # the sweep (sweep.max_offset=2 in the tiny preset): its mask {0,1,2} is refined 2's last3
    sweep = pd.read_csv(work / m.sweep_csv, dtype={"offsets": str})
    refined2 = json.loads((work / m.scrub_metrics("refined2")).read_text())
    for part in ("q", "k"):
        got = sweep[(sweep.part == part) & (sweep.kind == "cumulative") & (sweep.offsets == "0,1,2")]
        assert got.recovered.item() == pytest.approx(refined2[part]["recovered"], rel=1e-5)
    assert len(sweep) == 2 * 2 * 3 and (work / m.sweep_figure).stat().st_size > 1000


def stages_run(log: str) -> list[str]:
    return sorted(line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage"))


def test_changing_one_hypothesis_reruns_only_its_stage(project):
    work, _ = project
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["hypotheses"]["refined2"]["q"]["heads"]["all"]["mask"] = "cur"
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log = sh("dvc", "repro", cwd=work).stdout
    assert stages_run(log) == ["report", "scrub@0-refined2", "scrub@1-refined2"]
    # the page's refined 2 table follows the new mask
    table = (work / "reports/index.html").read_text().split('id="hyp-refined2"')[1].split("</table>")[0]
    assert "split at <b>cur</b>" in table.split("<tr>")[3].split("</td>")[0]
