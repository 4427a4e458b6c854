"""pipeline.config.schema: every key of params.yaml typed and range-checked, unknown keys refused, and
the checks across sections (hypotheses, roles, lengths against n_ctx, mask offsets against the
cache). Here on the committed params.yaml, edited in memory; tests/test_params.py runs the same
checks through the composition, as `dvc exp run -S` does."""
from __future__ import annotations

import copy

import pytest
import yaml

from pipeline.config import compose, recipe, schema
from pipeline.errors import ConfigError
from tests.helpers import ROOT

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def edited(dotted: str, value) -> dict:
    """The committed params with one key set (created if absent)."""
    params = copy.deepcopy(PARAMS)
    *parents, last = dotted.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[last] = value
    return params


def error_of(params: dict) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        schema.check(params)
    assert "\n" not in str(err.value)
    return err.value


def test_the_committed_params_pass():
    schema.check(PARAMS)


@pytest.mark.parametrize("key, value, fragment", [
    # the bad inputs
    ("tokenizer.vocab_size", "abc", "integer ≥ 260, got 'abc'"),
    ("tokenizer.vocab_size", 100, "got 100"),
    ("sequences.seq_len", "abc", "got 'abc'"),
    ("scrub.batch_size", 0, "≥ 1, got 0"),
    ("scrub.bootstrap_samples", 0, "≥ 1, got 0"),
    ("whitelist.betaa", 1.0, "unknown key"),  # a misspelt key
    # and the like
    ("sequences.seq_len", 2.5, "integer"),
    ("sequences.min_sequences", True, "integer"),  # YAML's true is no count
    ("cache.dtype", "bfloat16", "float16, float32"),
    ("cache.n_offsets", 0, "≥ 1"),
    ("scrub.parts", [], "at least 1"),
    ("scrub.parts", ["q", "x"], "got 'x'"),
    ("data.heldout_fraction", 1.0, "< 1"),
    ("data.source", "ftp", "brown, files"),
    ("tokenizer.kind", "wordpiece", "bpe, gpt2"),
    ("model.train.positions", "rope", "normal, sinusoidal"),
    ("model.train.lr", 0, "> 0"),
    ("model.train.repeat_span", [8], "2 items"),
    ("model.train.stepz", 10, "unknown key"),
    ("report.reference.naive", [1, 2, 3], "4 items"),
    ("whitelist.smoothing", 0, "> 0"),
    ("pairing.seed", -1, "≥ 0"),
    ("seeds", [], "at least 1"),
    ("seeds", [0, "one"], "integer"),
    ("model.train.seed", 1, "unknown key"),  # the seeds are `seeds`, one model each
    ("heads.max_self_heads", "3", "integer"),
    ("roles.self", "0.1", "list"),
    ("nonsense", 1, "unknown key"),
])
def test_a_bad_value_is_one_line_naming_its_key(key, value, fragment):
    err = error_of(edited(key, value))
    assert err.param == key or err.param.startswith(f"{key}[")  # a list item: scrub.parts[1]
    assert fragment in str(err)


@pytest.mark.parametrize("key", ["sequences", "scrub", "model.train", "report"])
def test_a_missing_key_is_named(key):
    params = copy.deepcopy(PARAMS)
    *parents, last = key.split(".")
    node = params
    for part in parents:
        node = node[part]
    section = node.pop(last)
    if isinstance(section, dict) and key != "report":
        node[last] = section
        first = next(iter(section))
        del section[first]
        assert error_of(params).param == f"{key}.{first}"
    else:
        assert error_of(params).param == key


def test_a_mandatory_value_left_unset_is_named():
    err = error_of(edited("model", {"source": "file", "file": "???", "dir": "data/model/file"}))
    assert err.param == "model.file" and "-S model.file=" in str(err)


MASK = "hypotheses.refined2.q.heads.all.mask"


@pytest.mark.parametrize("value, fragment", [
    (1, "1: use one of cur, last3, prev"),       # `mask: 1`: a bare number, not a list
    ([True], "[True]: use one of"),               # `mask: [true]`: YAML's true is not offset 1
    ([], "[]: use one of"),
    ([-1], "[-1]: use one of"),
    ("last4", "'last4': use one of"),
    ([0, 4], "offset 4 is not cached"),           # ≥ cache.n_offsets
])
def test_a_bad_mask_is_named(value, fragment):
    err = error_of(edited(MASK, value))
    assert err.param == MASK and fragment in str(err)


def test_mask_offsets_are_checked_against_the_cache_size():
    schema.check(edited(MASK, [0, 3]))
    err = error_of(edited("cache.n_offsets", 2))  # refined2 uses last3: offsets 0, 1, 2
    assert err.param.startswith("hypotheses.") and err.param.endswith(".mask") and "cache.n_offsets=2" in str(err)


@pytest.mark.parametrize("key, value, param", [
    ("hypotheses.refined2.q.embeding", "clean", "hypotheses.refined2.q.embeding"),
    ("hypotheses.refined2.q.heads.all.insid", {}, "hypotheses.refined2.q.heads.all.insid"),
    ("hypotheses.refined2.q.heads.all.inside.patern", "other", "hypotheses.refined2.q.heads.all.inside.patern"),
    ("hypotheses.refined2.resampel", {}, "hypotheses.refined2.resampel"),
    ("hypotheses.refined2.q.heads.all.outside", "elsewhere", "hypotheses.refined2.q.heads.all.outside"),
    ("hypotheses.refined2.q.heads.0.9", "other", "hypotheses.refined2.q.heads.0.9"),  # model.n_heads = 8
    ("hypotheses.bonus5.resample.typicality.seed", "x", "hypotheses.bonus5.resample.typicality.seed"),
])
def test_a_bad_hypothesis_is_named(key, value, param):
    if key.endswith("heads.0.9"):
        params = copy.deepcopy(PARAMS)
        params["hypotheses"]["refined2"]["q"]["heads"]["0.9"] = value
    else:
        params = edited(key, value)
    assert error_of(params).param == param


@pytest.mark.parametrize("key", ["my hyp", "my.hyp", "a/b", "naïve?"])
def test_a_hypothesis_key_that_cannot_name_a_stage_is_refused(key):
    params = copy.deepcopy(PARAMS)
    params["hypotheses"][key] = params["hypotheses"]["naive"]
    err = error_of(params)
    assert err.param == f"hypotheses.{key}" and "letters, digits, _ and - only" in str(err) and "\n" not in str(err)
    params["hypotheses"] = {"my-hyp_2": params["hypotheses"]["naive"]}
    params["claims"] = {}  # the claims name the writeup's hypotheses (tests/test_claims.py)
    schema.check(params)


def test_lengths_are_checked_against_the_context_of_a_trained_model():
    n_ctx = PARAMS["model"]["n_ctx"]
    schema.check(edited("sequences.seq_len", n_ctx - 1))  # BEGIN + seq_len tokens fill the context
    assert error_of(edited("sequences.seq_len", n_ctx)).param == "sequences.seq_len"
    assert error_of(edited("heads.repeat_length", n_ctx // 2)).param == "heads.repeat_length"
    assert error_of(edited("model.d_head", 16)).param == "model.d_head"
    assert error_of(edited("model.train.short_len", n_ctx + 16)).param == "model.train.short_len"


def test_roles_are_checked_against_the_model_and_their_layer():
    assert error_of(edited("roles.prev", "1.0")).param == "roles.prev"  # prev is a layer-0 head
    assert error_of(edited("roles.induction", ["1.8"])).param == "roles.induction"  # 8 heads: 1.0 … 1.7
    assert error_of(edited("roles.induction", [])).param == "roles.induction"
    schema.check(edited("roles.induction", ["1.5", "1.6"]))


def test_loaded_models_have_their_own_keys():
    redwood = {"source": "redwood", "repo": "ArthurConmy/redwood_attn_2l", "filename": None,
               "dir": "data/model/redwood"}
    with pytest.raises(ConfigError, match="loads one model"):  # seeds [0, 1, 2] of a trained default
        schema.check({**edited("model", redwood), "seeds": [0, 1, 2]})
    schema.check({**edited("model", redwood), "seeds": [0]})
    redwood_params = {**edited("model", redwood), "seeds": [0]}
    assert error_of({**redwood_params, "model": {**redwood, "n_ctx": 320}}).param == "model.n_ctx"  # not a key of redwood
    # the context check needs n_ctx, which only the checkpoint knows: the cache_l0 stage makes it
    schema.check({**redwood_params, "sequences": {**PARAMS["sequences"], "seq_len": 5000}})


def test_each_model_needs_its_own_seed():
    err = error_of(edited("seeds", [0, 1, 0]))
    assert err.param == "seeds" and "twice" in str(err)
    schema.check(edited("seeds", [2, 0, 1]))


def test_token_rows_need_the_tokenizer_they_were_made_with():
    rows = {"source": "redwood_validation", "repo": "ArthurConmy/redwood_attn_2l", "filename": "validation_data.pt",
            "file": None, "rows_start_with_begin": True, "max_documents": None, "heldout_fraction": 0.5,
            "split_seed": 0}
    err = error_of(edited("data", rows))
    assert err.param == "tokenizer.kind" and "tokenizer=gpt2" in str(err)
    params = {**edited("data", rows), "tokenizer": {"kind": "gpt2", "source": "gpt2", "begin_id": 50257}}
    sections = schema.recipe_sections(params["model"], params["data"], params["tokenizer"])
    name = recipe.recipe_id(sections)
    params["model"] = {**params["model"], "recipe": name, "dir": recipe.model_dir(name)}
    schema.check(params)  # other text, another recipe: its own folder


def test_a_partial_params_yaml_checks_the_sections_it_has():
    """A stage's params.yaml may hold only the sections it reads (tests write such files): each
    section it has is checked whole; one it lacks is named when the stage reads it."""
    params = schema.check_present({"pairing": {"seed": 7}})
    assert params.pairing.seed == 7
    with pytest.raises(ConfigError, match="^scrub: missing from params.yaml"):
        params.scrub
    schema.check_present({"model": {"source": "file", "dir": "data/model", "file": "m.pt"}, "heads": PARAMS["heads"]})
    with pytest.raises(ConfigError, match="model.source: missing"):
        schema.check_present({"model": {"dir": "data/model"}, "heads": PARAMS["heads"]})
    with pytest.raises(ConfigError, match="pairing.seed"):
        schema.check_present({"pairing": {"seed": "7"}})
    with pytest.raises(ConfigError, match="scrub.batch_size"):
        schema.check_present({"scrub": {"batch_size": 0}})
    with pytest.raises(ConfigError, match="model.dri"):
        schema.check_present({"model": {"source": "file", "dri": "data/model"}})
    with pytest.raises(ConfigError, match="model.n_ctx"):
        schema.check_present({"model": {"source": "trained", "n_ctx": "abc"}})
    with pytest.raises(ConfigError, match="^nonsense: unknown key"):
        schema.check_present({"pairing": {"seed": 7}, "nonsense": 1})
    # a complete file gets every check, across sections too
    with pytest.raises(ConfigError, match="hypotheses.refined2.q.heads.all.mask"):
        schema.check_present(edited("cache.n_offsets", 2))


def test_the_committed_hypothesis_json_schema_is_the_models():
    """docs/hypothesis.schema.json, which editors check hypothesis files with, is the JSON Schema of
    pipeline.config.hypothesis.Hypothesis: after changing the models, `python -m pipeline.config.hypothesis`."""
    from pipeline.config.hypothesis import SCHEMA_FILE, json_schema

    assert SCHEMA_FILE.read_text(encoding="utf-8") == json_schema()


def test_head_specs_are_values_the_engine_can_group():
    """The scrub engine groups heads by spec (a dict key): equal specs are equal and hash alike."""
    from pipeline.config.hypothesis import Masked, Whole

    refined4 = schema.check(PARAMS).hypotheses["refined4"]
    assert refined4.name == "refined 4" and refined4.q.heads["all"] == refined4.k.heads["all"]
    assert isinstance(refined4.q.heads["all"], Masked) and refined4.q.heads["all"].offsets == (0, 1, 2)
    assert {refined4.q.heads["all"]: 1, refined4.k.heads["all"]: 2} == {refined4.q.heads["all"]: 2}
    assert {Whole("clean"), Whole("clean"), Whole("other")} == {Whole("clean"), Whole("other")}
    assert refined4.sources() == {"clean", "other"} and refined4.max_offset() == 2


def test_the_parts_are_the_engines():
    from pipeline.scrub.engine import PARTS

    assert tuple(PARTS) == schema.PARTS


def test_a_yaml_syntax_error_in_conf_is_one_line_naming_the_file(tmp_path):
    conf = tmp_path / "conf"
    (conf / "hypothesis").mkdir(parents=True)
    (conf / "config.yaml").write_text("a: 1\n")
    (conf / "hypothesis" / "x.yaml").write_text("name: x\nq: {embedding: clean\n  heads: [\n")
    with pytest.raises(ConfigError) as err:
        compose.check_yaml_files(conf)
    assert err.value.param == "conf/hypothesis/x.yaml"
    assert str(err.value).startswith("conf/hypothesis/x.yaml: is not valid YAML: line 3, column ")
    assert "\n" not in str(err.value)
