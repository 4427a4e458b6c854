"""The whole pipeline, `dvc repro` on the tiny preset with two models (seeds 0 and 1), in a
scratch copy of the project: every stage runs on every model, every hypothesis reports, the
claims are checked on both models, a searched hypothesis runs as an ordinary scrub, a fresh
clone on another (emulated) CPU rebuilds the same bytes and numbers within the rebuild check's
tolerance, changing one hypothesis reruns only its stages (one per model), the claims, the
frontier stages and the report, and changing a claim only the claims and the report."""
from __future__ import annotations

import json
import re
import shutil
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
from pipeline.report.compare import compare
from pipeline.scrub.inputs import resampler_classes
from pipeline.scrub.search import halves
from pipeline.scrub.stats import recovered
from tests.helpers.project import scratch_project
from tests.helpers.shell import emulated_avx2, sh

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
    check_claims(work, params, models)
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


def check_claims(work: Path, params: dict, models: list[ModelPaths]) -> None:
    """The claims stage ran on every model with every claim of conf/claims/, a verdict each; a
    single scrub's interval is exactly its metrics.json's (the scrub stage's own bootstrap draws)."""
    doc = json.loads((work / "data/claims/claims.json").read_text())
    assert doc["models"] == [m.name for m in models]
    assert [c["key"] for c in doc["claims"]] == list(params["claims"])
    singles = 0
    for c in doc["claims"]:
        assert c["verdict"] in ("holds", "fails", "inconclusive")
        for comparison in c["comparisons"]:
            for m in models:
                r = comparison["models"][m.name]
                assert r["ci_low"] <= r["value"] <= r["ci_high"] or r["method"] == "combined intervals"
                if comparison["minus"] is None and r["inputs"][0]["file"].endswith("metrics.json"):
                    part = comparison["value"].split(".")[1]
                    metrics = json.loads((work / r["inputs"][0]["file"]).read_text())[part]
                    assert (r["value"], r["ci_low"], r["ci_high"]) == (metrics["recovered"], metrics["ci_low"],
                                                                       metrics["ci_high"])
                    singles += 1
    assert singles >= len(models)
    assert "| claim | seed0 | seed1 | overall |" in (work / "reports/claims.md").read_text()


def test_a_searched_hypothesis_runs_as_an_ordinary_scrub_stage(project):
    """The search's most complex frontier hypothesis, copied into conf/hypothesis/ and added to the
    defaults as its file says, runs as scrub@0-<name>; its % loss recovered on the search's
    held-out half (from the scrub stage's per-sequence losses) is the search's number."""
    work, _ = project
    params = yaml.safe_load((work / "params.yaml").read_text())
    m = ModelPaths(params["model"]["dir"], 0)
    frontier = pd.read_csv(work / m.search_frontier)
    path = pd.read_csv(work / m.search_path)
    assert list(path.phase[:1]) == ["start"] and len(frontier) >= 2
    assert frontier.complexity.is_monotonic_increasing and frontier.selection.is_monotonic_increasing
    row = frontier.iloc[-1]
    text = (work / m.search_hypotheses / f"{row.hypothesis}.yaml").read_text()
    assert f"hypothesis@hypotheses.{row.hypothesis}: {row.hypothesis}" in text
    (work / "conf/hypothesis" / f"{row.hypothesis}.yaml").write_text(text)
    config = (work / "conf/config.yaml").read_text().replace(
        "  - hypothesis@hypotheses.bonus5: bonus5\n",
        f"  - hypothesis@hypotheses.bonus5: bonus5\n  - hypothesis@hypotheses.{row.hypothesis}: {row.hypothesis}\n")
    original_config = (work / "conf/config.yaml").read_text()
    (work / "conf/config.yaml").write_text(config)
    sh(sys.executable, "-m", "pipeline.config", "preset=tiny", "seeds=[0,1]", cwd=work)
    sh("dvc", "repro", f"scrub@0-{row.hypothesis}", cwd=work)
    (work / "conf/config.yaml").write_text(original_config)  # the next test expects the tiny pipeline as it was
    sh(sys.executable, "-m", "pipeline.config", "preset=tiny", "seeds=[0,1]", cwd=work)
    losses = pd.read_parquet(work / m.scrub_losses(row.hypothesis)).sort_values("seq_id")
    search = params["search"]
    _, heldout = halves(len(losses), search["selection_fraction"], search["selection_seed"], search["max_selection"])
    held = losses.iloc[heldout].sum()
    got = recovered(held.loss_sum_baseline, held.loss_sum_original, held.loss_sum_all)
    # the project as it was for the tests after this one: no outputs of a stage dvc.yaml no longer has
    shutil.rmtree(work / m.scrub / row.hypothesis)
    (work / "conf/hypothesis" / f"{row.hypothesis}.yaml").unlink()
    # float32 sums in another batching; the tiny model's small baseline − original gap magnifies them
    assert got == pytest.approx(row.heldout, rel=1e-4, abs=1e-3)
    # every hypothesis placed on the search's axes, with the figure
    placed = pd.read_csv(work / m.search_placed)
    assert set(placed.hypothesis) >= {"naive", "refined2", "bonus5"} and set(placed.standing) <= {"on", "below", "above"}
    assert (work / m.search_figure).stat().st_size > 1000


def stages_run(log: str) -> list[str]:
    return sorted(line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage"))


def held_by_git(clone: Path) -> dict[str, bytes]:
    """Every file git tracks in `clone`, by path."""
    names = sh("git", "ls-files", "-z", cwd=clone).stdout.split("\0")
    return {name: (clone / name).read_bytes() for name in names if name}


def test_a_fresh_clone_on_another_cpu_rebuilds_the_same_bytes(project, tmp_path):
    """The tiny run committed to git (all but DVC's cache and the outputs kept there), then cloned
    and rebuilt on another CPU, emulated (tests/helpers/shell.py: torch's and numpy's AVX2 kernels
    where the machine has AVX-512) with two threads where the first run had one. `dvc repro` reruns
    exactly the stages whose outputs a clone lacks (corpus, tokenize, whitelist, pairing, the
    layer-0 caches); their bytes come out as before, so nothing downstream reruns and `git status`
    is clean. Then every stage after the models reruns on that CPU (`-f`): the float32 scrubs
    move in the last bits, every loss stays within the rebuild check's tolerance, and
    `python -m pipeline.report.compare` passes (with a wider one, see below)."""
    work, _ = project
    source = tmp_path / "source"
    shutil.copytree(work, source, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(source / ".dvc/cache")
    shutil.rmtree(source / ".dvc/tmp", ignore_errors=True)
    from dvc.repo import Repo

    with Repo(str(source)) as repo:
        cached = {stage.name: [Path(out.fs_path).relative_to(source).as_posix() for out in stage.outs
                                     if out.use_cache] for stage in repo.index.stages}
    cached = {stage: outs for stage, outs in cached.items() if outs}
    # as the project's .gitignore: downloads stay out of git (a clone is given them below)
    ignored = ["__pycache__/", "/.dvc/cache/", "/.dvc/tmp/", "/data/external/",
               *(f"/{out}" for outs in cached.values() for out in outs)]
    (source / ".gitignore").write_text("\n".join(ignored) + "\n")
    sh("git", "init", "-q", cwd=source)
    sh("git", "add", "-A", cwd=source)
    sh("git", "-c", "user.name=ci", "-c", "user.email=ci@localhost", "commit", "-q", "-m", "tiny run", cwd=source)
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(source), str(clone), cwd=tmp_path)
    shutil.copytree(source / "data/external", clone / "data/external")
    committed = held_by_git(clone)

    other_cpu = emulated_avx2(OMP_NUM_THREADS="2")
    log = sh("dvc", "repro", cwd=clone, env=other_cpu).stdout
    assert stages_run(log) == sorted(cached)
    assert {"corpus", "whitelist", "cache_l0@0", "cache_l0@1"} <= set(cached)
    assert sh("git", "status", "--porcelain", cwd=clone).stdout == ""
    assert held_by_git(clone) == committed

    log = sh("dvc", "repro", "-f", "--downstream", "whitelist", "pairing", "cache_l0@0", "cache_l0@1", cwd=clone,
             env=other_cpu).stdout
    assert "report" in stages_run(log) and not any(stage.startswith("model@") for stage in stages_run(log))
    # Losses within the default tolerance. % recovered is (baseline − scrubbed) / (baseline −
    # original): the tiny model learns no induction, its baseline and original losses nearly agree,
    # and the ratio (in the thousands) multiplies the float32 differences (4e-4 relative seen), so
    # the command runs with rtol 1e-2; on the default models the default tolerance holds
    # (docs/reproducibility.md).
    losses = [d for d in compare("HEAD", clone) if d.key.endswith("loss") and not d.file.startswith("data/model")]
    assert len(losses) > 100 and max(d.size for d in losses) <= 1, max(losses, key=lambda d: d.size)
    # claims.json's generated sentences quote numbers at one decimal: compare allows each one printed
    # unit besides the tolerance (a rounding edge crossed)
    check = sh(sys.executable, "-m", "pipeline.report.compare", "--rtol", "1e-2", cwd=clone, env=other_cpu,
               check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "largest difference" in check.stdout
    print(check.stdout)  # the largest difference, in the test's report (pytest -rA)


def test_changing_one_hypothesis_reruns_only_its_stage(project):
    work, _ = project
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["hypotheses"]["refined2"]["q"]["heads"]["all"]["mask"] = "cur"
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log = sh("dvc", "repro", cwd=work).stdout
    # and what checks the claims and places every hypothesis against the search's frontier; not the search
    assert stages_run(log) == ["claims", "frontier@0", "frontier@1", "report", "scrub@0-refined2", "scrub@1-refined2"]
    # the page's refined 2 table follows the new mask
    table = (work / "reports/index.html").read_text().split('id="hyp-refined2"')[1].split("</table>")[0]
    assert "split at <b>cur</b>" in table.split("<tr>")[3].split("</td>")[0]


def test_changing_a_claim_reruns_only_the_claims_and_the_report(project):
    work, _ = project
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["claims"]["naive_v"]["compare"][0]["above"] = 10
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    log = sh("dvc", "repro", cwd=work).stdout
    ran = sorted(line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage"))
    assert ran == ["claims", "report"]
    doc = json.loads((work / "data/claims/claims.json").read_text())
    assert doc["claims"][0]["comparisons"][0]["text"] == "naive.v > 10"
    assert "naive.v &gt; 10" in (work / "reports/index.html").read_text()
