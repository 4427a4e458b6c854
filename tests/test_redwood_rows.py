"""data=redwood_validation (validation_data.pt: token rows, not text) and data=openwebtext with
current `datasets`: every bad input is one line naming the parameter to change."""
from __future__ import annotations

import pytest
import torch

from pipeline.data.sources import load_documents, load_token_rows
from pipeline.errors import ConfigError
from pipeline.stages.tokenize import checked_rows

IDS = {"begin": 50257, "end": 50258}
V = 50259


def rows_cfg(path, **extra) -> dict:
    return {"source": "redwood_validation", "repo": "ArthurConmy/redwood_attn_2l", "filename": "validation_data.pt",
            "file": str(path), "max_documents": None, **extra}


def test_a_local_file_of_token_rows_is_read_and_capped(tmp_path):
    path = tmp_path / "validation_data.pt"
    torch.save(torch.arange(40, dtype=torch.int32).reshape(8, 5), path)
    rows = load_token_rows(rows_cfg(path))
    assert rows.shape == (8, 5) and rows.dtype.kind == "i" and rows[1, 0] == 5
    assert load_token_rows(rows_cfg(path, max_documents=3)).shape == (3, 5)


@pytest.mark.parametrize("content, message", [
    (torch.zeros(4, 5), "float32"),
    (torch.zeros(20, dtype=torch.long), "1-d"),
    ({"rows": torch.zeros(2, 3, dtype=torch.long)}, "a dict"),
    (torch.full((3, 4), -1), "negative"),
    (torch.zeros(1, 4, dtype=torch.long), "1 rows"),
])
def test_a_file_that_is_not_token_rows_is_one_line_naming_data_file(tmp_path, content, message):
    path = tmp_path / "validation_data.pt"
    torch.save(content, path)
    with pytest.raises(ConfigError, match=message) as err:
        load_token_rows(rows_cfg(path))
    assert err.value.param == "data.file" and "\n" not in str(err.value)


def test_an_unreadable_or_missing_file_names_data_file(tmp_path):
    path = tmp_path / "validation_data.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="not a readable tensor file") as err:
        load_token_rows(rows_cfg(path))
    assert err.value.param == "data.file" and "weights_only" not in str(err.value)
    with pytest.raises(ConfigError, match="does not exist") as err:
        load_token_rows(rows_cfg(tmp_path / "absent.pt"))
    assert err.value.param == "data.file"


def rows(n=4, width=10, first=50257):
    out = [[first] + list(range(100 + i, 100 + i + width - 1)) for i in range(n)]
    return out


def test_rows_with_begin_lose_it_and_keep_the_rest():
    got = checked_rows(rows(), IDS, V, True, seq_len=8)
    assert [r.tolist() for r in got] == [r[1:] for r in rows()]
    # Without BEGIN the rows are kept whole.
    plain = [r[1:] for r in rows()]
    assert [r.tolist() for r in checked_rows(plain, IDS, V, False, seq_len=8)] == plain


def test_begin_as_configured_or_one_line_saying_what_to_set():
    with pytest.raises(ConfigError, match="row 0 starts with 100, not BEGIN=50257.*rows_start_with_begin=false") as err:
        checked_rows([r[1:] for r in rows()], IDS, V, True, seq_len=5)
    assert err.value.param == "data.rows_start_with_begin"
    # Rows that start with the other extra token: BEGIN is the other one.
    with pytest.raises(ConfigError, match="set tokenizer.begin_id=50258"):
        checked_rows(rows(first=50258), IDS, V, True, seq_len=5)
    with pytest.raises(ConfigError, match="every row starts with BEGIN") as err:
        checked_rows(rows(), IDS, V, False, seq_len=5)
    assert err.value.param == "data.rows_start_with_begin"


def test_ids_outside_the_vocabulary_and_short_rows_are_one_line_errors():
    bad = rows()
    bad[2][3] = 50259
    with pytest.raises(ConfigError, match="row 2 holds token id 50259, outside the tokenizer's 50259 ids") as err:
        checked_rows(bad, IDS, V, True, seq_len=5)
    assert err.value.param == "data.file"
    # 10 columns with BEGIN leave 9 tokens: seq_len 8 fits (8 inputs + 1 label), 9 does not.
    checked_rows(rows(), IDS, V, True, seq_len=8)
    with pytest.raises(ConfigError, match="rows of seq_len \\+ 1 = 10 tokens after BEGIN.*shortest row has 9") as err:
        checked_rows(rows(), IDS, V, True, seq_len=9)
    assert err.value.param == "sequences.seq_len"


# --- data=openwebtext with current datasets -----------------------------------------------------------

OWT = {"source": "openwebtext", "dataset": "Skylion007/openwebtext", "revision": None, "data_files": None,
       "text_column": "text", "max_documents": 3}


@pytest.mark.parametrize("error", [
    RuntimeError("Dataset scripts are no longer supported, but found openwebtext.py\nmore lines"),
    ConnectionError("Couldn't reach 'Skylion007/openwebtext' on the Hub (LocalEntryNotFoundError)\ndetails"),
])
def test_a_hub_dataset_that_is_refused_or_unreachable_is_one_line(monkeypatch, error):
    import datasets

    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(datasets, "load_dataset", refuse)
    with pytest.raises(ConfigError) as err:
        load_documents(OWT)
    message = str(err.value)
    assert err.value.param == "data.dataset" and "\n" not in message
    assert str(error).splitlines()[0] in message and "-S data.data_files=" in message


def test_local_parquet_files_work_with_current_datasets(tmp_path):
    import pandas as pd

    pd.DataFrame({"text": ["one document", "two documents", "three", "four"]}).to_parquet(tmp_path / "owt.parquet")
    docs = load_documents({**OWT, "data_files": str(tmp_path / "owt.parquet")})
    assert docs == [("owt:0", "one document"), ("owt:1", "two documents"), ("owt:2", "three")]
