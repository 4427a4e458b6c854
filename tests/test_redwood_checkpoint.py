"""model=redwood's loader (pipeline.weights.checkpoint.load_redwood) on small TransformerLens checkpoints:
the file ending in final.pth as TransformerLens 3.9.0 picks it (model.filename overrides), the
architecture from config.json, and a one-line refusal naming the config field for anything our
model does not implement; from a local file, a local snapshot folder, or a simulated hub cache."""
from __future__ import annotations

import json

import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.fetch.hub import MissingDownload
from pipeline.weights.redwood import config_from_tl, load_redwood
from tests.helpers.redwood_hub import CONFIG, DECOY, FINAL, REPO, add_to_cache, tl_model, torch_bytes

SMALL = {**CONFIG, "d_vocab": 120, "d_vocab_out": 120, "n_ctx": 24}


@pytest.fixture(scope="module")
def repo_files() -> dict[str, bytes]:
    return {
        "config.json": json.dumps(SMALL).encode(),
        FINAL: torch_bytes(tl_model(SMALL, seed=1).state_dict()),
        DECOY: torch_bytes(tl_model(SMALL, seed=2).state_dict()),
    }


def final_weights(files) -> dict:
    import io

    return torch.load(io.BytesIO(files[FINAL]), weights_only=True)


def write_folder(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """The hub client pointed at an empty cache under tmp_path, offline."""
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    return tmp_path / "hub"


def test_a_snapshot_folder_loads_the_final_checkpoint_with_its_config(tmp_path, repo_files):
    model = load_redwood(str(write_folder(tmp_path / "snap", repo_files)))
    assert (model.cfg.d_model, model.cfg.d_head, model.cfg.n_heads, model.cfg.d_vocab, model.cfg.n_ctx) == (64, 8, 8, 120, 24)
    assert torch.equal(model.W_E, final_weights(repo_files)["embed.W_E"])  # not the decoy's


def test_model_filename_overrides_the_final_pth_rule(tmp_path, repo_files):
    folder = write_folder(tmp_path / "snap", repo_files)
    model = load_redwood(str(folder), DECOY)
    assert not torch.equal(model.W_E, final_weights(repo_files)["embed.W_E"])
    with pytest.raises(ConfigError, match="no nope.pth") as err:
        load_redwood(str(folder), "nope.pth")
    assert err.value.param == "model.filename"


def test_two_final_pth_files_are_refused_naming_both_and_model_filename(tmp_path, repo_files, hub_cache):
    """TransformerLens would take the first name in sorted order: a silently different checkpoint."""
    files = {**repo_files, "a_final.pth": repo_files[DECOY]}
    folder = write_folder(tmp_path / "snap", files)
    with pytest.raises(ConfigError) as err:
        load_redwood(str(folder))
    assert err.value.param == "model.filename" and "\n" not in str(err.value)
    assert "a_final.pth" in str(err.value) and FINAL in str(err.value) and "-S model.filename=" in str(err.value)
    # the same repo from the hub cache, and model.filename settles it
    add_to_cache(hub_cache, REPO, files)
    with pytest.raises(ConfigError, match="2 checkpoints ending in final.pth"):
        load_redwood(REPO)
    model = load_redwood(str(folder), FINAL)
    assert torch.equal(model.W_E, final_weights(repo_files)["embed.W_E"])


def test_a_folder_without_final_pth_or_config_is_a_config_error(tmp_path, repo_files):
    no_final = write_folder(tmp_path / "a", {k: v for k, v in repo_files.items() if k != FINAL})
    with pytest.raises(ConfigError, match=r"no \*final.pth") as err:
        load_redwood(str(no_final))
    assert err.value.param == "model.repo"
    no_config = write_folder(tmp_path / "b", {k: v for k, v in repo_files.items() if k != "config.json"})
    with pytest.raises(ConfigError, match="no config.json"):
        load_redwood(str(no_config))


def test_a_config_that_does_not_fit_the_weights_is_a_config_error(tmp_path, repo_files):
    files = {**repo_files, "config.json": json.dumps({**SMALL, "d_head": 16, "n_heads": 4}).encode()}
    with pytest.raises(ConfigError, match="has shape") as err:
        load_redwood(str(write_folder(tmp_path / "snap", files)))
    assert err.value.param == "model.repo"


def test_the_hub_id_resolves_from_the_cache_offline(hub_cache, repo_files):
    add_to_cache(hub_cache, REPO, repo_files)
    model = load_redwood(REPO)
    assert torch.equal(model.W_E, final_weights(repo_files)["embed.W_E"])
    assert model.cfg.d_vocab == 120


def test_nothing_cached_offline_is_one_missing_download_line(hub_cache):
    with pytest.raises(MissingDownload) as err:
        load_redwood(REPO)
    message = str(err.value)
    assert err.value.param == "model.repo" and "\n" not in message
    assert "*final.pth and config.json" in message and "-S model.repo=" in message


def test_a_cached_snapshot_without_the_checkpoint_is_a_missing_download(hub_cache, repo_files):
    add_to_cache(hub_cache, REPO, {"config.json": repo_files["config.json"]})
    with pytest.raises(MissingDownload, match=r"\*final.pth"):
        load_redwood(REPO)


REFUSED = [
    ("attn_only", False), ("normalization_type", "LNPre"), ("normalization_type", None),
    ("positional_embedding_type", "standard"), ("positional_embedding_type", "rotary"), ("eps", 1e-6),
    ("use_attn_scale", False), ("attention_dir", "bidirectional"), ("final_rms", True),
    ("scale_attn_by_inverse_layer_idx", True), ("d_vocab_out", 50257), ("original_architecture", "mingpt"),
    ("use_local_attn", True), ("n_key_value_heads", 2), ("attn_scale", 4.0),
]


@pytest.mark.parametrize("field, value", REFUSED, ids=[f"{f}={v}" for f, v in REFUSED])
def test_an_architecture_the_model_does_not_implement_is_refused_naming_the_field(field, value):
    with pytest.raises(ConfigError) as err:
        config_from_tl({**CONFIG, field: value}, "config.json")
    assert err.value.param == "model.repo"
    assert f"{field}={value!r}" in str(err.value) and "\n" not in str(err.value)


def test_both_spellings_transformer_lens_reads_are_accepted():
    cfg = config_from_tl(CONFIG, "config.json")
    assert (cfg.d_model, cfg.n_heads, cfg.d_head, cfg.n_ctx, cfg.d_vocab, cfg.ln_eps) == (64, 8, 8, 2048, 50259, 1e-5)
    neel = {k: v for k, v in CONFIG.items() if k not in ("normalization_type", "positional_embedding_type")}
    assert config_from_tl({**neel, "normalization": "LN", "shortformer_pos": True}, "c") == cfg
    # Without either positional field TransformerLens builds standard positions: refused.
    with pytest.raises(ConfigError, match="positional_embedding_type"):
        config_from_tl({**neel, "normalization": "LN"}, "c")
    with pytest.raises(ConfigError, match="lacks the field d_model"):
        config_from_tl({k: v for k, v in CONFIG.items() if k != "d_model"}, "c")
