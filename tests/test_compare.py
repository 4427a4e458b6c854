"""python -m pipeline.report.compare: a rebuild's numbers against the committed ones. Last-bit
differences pass and say how large they were; a visible change, a changed string or a missing file
fails naming the file and key."""
from __future__ import annotations

import json
import subprocess

import pytest

from pipeline.report import compare

METRICS = {"hypothesis": "refined2", "all": {"recovered": 66.2371, "ci_low": -2.9876587, "loss": 3.0007},
           "counts": [5742, 17]}
CSV = "part,kind,offsets,recovered\nq,cumulative,0,65.6123\nk,single,\"0,1\",36.4\n"


@pytest.fixture
def repo(tmp_path, monkeypatch):
    (tmp_path / "data/scrub").mkdir(parents=True)
    (tmp_path / "reports").mkdir()
    (tmp_path / "data/scrub/metrics.json").write_text(json.dumps(METRICS))
    (tmp_path / "reports/sweep.csv").write_text(CSV)
    for cmd in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"]):
        subprocess.run(["git", *cmd], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def rebuild(repo, **changes):
    metrics = json.loads(json.dumps(METRICS))
    metrics["all"].update(changes)
    (repo / "data/scrub/metrics.json").write_text(json.dumps(metrics))


def test_an_identical_rebuild_passes(repo, capsys):
    assert compare.main([]) == 0
    assert "largest difference: 0 " in capsys.readouterr().out


def test_last_bits_pass_and_the_largest_difference_is_printed(repo, capsys):
    rebuild(repo, recovered=66.2371 * (1 + 3e-7), loss=3.0007 + 1.3e-6)
    assert compare.main([]) == 0
    out = capsys.readouterr().out
    assert "largest difference: 1.99e-05 at data/scrub/metrics.json all/recovered" in out


@pytest.mark.parametrize("changes, key", [({"recovered": 66.3371}, "all/recovered"), ({"loss": 3.0107}, "all/loss")])
def test_a_visible_change_fails_naming_file_and_key(repo, capsys, changes, key):
    rebuild(repo, **changes)
    assert compare.main([]) == 1
    assert f"beyond the tolerance: data/scrub/metrics.json {key}" in capsys.readouterr().err


def test_a_changed_text_a_changed_row_count_or_a_missing_file_fails(repo, capsys):
    (repo / "reports/sweep.csv").write_text(CSV.replace("single", "cumulative"))
    assert compare.main([]) == 1
    assert "reports/sweep.csv 1/kind" in capsys.readouterr().err
    (repo / "reports/sweep.csv").write_text(CSV + "v,single,2,1.0\n")
    assert compare.main([]) == 1
    assert "(length)" in capsys.readouterr().err
    (repo / "reports/sweep.csv").unlink()
    assert compare.main([]) == 1
    assert "reports/sweep.csv (file): committed 'present', rebuilt 'missing'" in capsys.readouterr().err


def test_an_unknown_commit_is_one_error(repo, capsys):
    assert compare.main(["--against", "nosuchrev"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot compare with nosuchrev")


@pytest.mark.parametrize("rebuilt, passes", [
    ("refined2.k − refined1.k = −0.6 (−2.4 to 1.2): not > 5", True),   # identical
    ("refined2.k − refined1.k = −0.7 (−2.4 to 1.2): not > 5", True),   # a rounding edge crossed: one unit
    ("refined2.k − refined1.k = −0.8 (−2.4 to 1.2): not > 5", False),  # two units: a visible change
    ("refined2.k − refined1.k = −0.6 (−2.4 to 1.2): not > 6", False),  # the threshold moved
    ("refined2.q − refined1.q = −0.6 (−2.4 to 1.2): not > 5", False),  # other words
])
def test_a_generated_sentence_may_move_one_printed_unit(rebuilt, passes):
    committed = "refined2.k − refined1.k = −0.6 (−2.4 to 1.2): not > 5"
    [difference] = compare.compare_values(committed, rebuilt, "reasons/0/text", "claims.json", compare.RTOL,
                                          compare.ATOL)
    assert (difference.size <= 1) is passes
