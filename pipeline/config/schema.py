"""The schema of params.yaml: one pydantic model per section, every key's type and range, and the
checks that span sections (model validators).

It runs when conf/ is composed, in whichever process composes it: `python -m pipeline.config`
and `dvc exp run -S` both call DVC's `compose_and_dump`, which loads the Hydra plugins of the
repository (hydra_plugins/pipeline_checks.py imports pipeline.config.compose) and then resolves the
composed config; conf/config.yaml's last key, `checked: ${pipeline.check:}`, makes that
resolution call `check` on the whole tree. A bad value stops the composition with one line
naming the key, before params.yaml is written and before any stage runs. Every stage checks
params.yaml again when it loads it (pipeline.config.load.load_params), for hand-edited files, and
reads the validated Params.

Where to extend: a new key of a section is one field of its model; a new option of a config
group (conf/data/*.yaml, conf/tokenizer/*.yaml, conf/model/*.yaml) is one model in Data,
Tokenizer or Model, told apart by its `source` / `kind` value.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import Field, TypeAdapter, ValidationError, model_validator

from pipeline.config.base import (
    Count,
    Flag,
    Section,
    Seed,
    Text,
    config_error,
    from_config_error,
    integer,
    invalid,
    number,
)
from pipeline.config.claims import Claims, check_claims
from pipeline.config.heads import validate_roles
from pipeline.config.hypothesis import Hypotheses, Hypothesis, Masked, check_heads
from pipeline.config.recipe import check_model_dir
from pipeline.config.search import Search, check_search
from pipeline.config.training import Train
from pipeline.errors import ConfigError
from pipeline.paths import GPT2_FILES

PARTS = ("q", "k", "v", "all")  # pipeline.scrub.engine.PARTS (not imported: that module loads torch)
MISSING = "???"  # Hydra's mandatory value: conf/ leaves it for the user to give with -S

Fraction = number(Gt(0), Lt(1))


# --- data: one model per option of conf/data/, told apart by `source` ---------------------------

class DataOption(Section):
    source: str
    max_documents: integer(Ge(2)) | None  # the split needs a training and a held-out document
    heldout_fraction: Fraction
    split_seed: Seed


class Brown(DataOption):
    source: Literal["brown"]
    cache_dir: Text


class Files(DataOption):
    source: Literal["files"]
    path: Text
    text_column: Text


class OpenWebText(DataOption):
    source: Literal["openwebtext"]
    dataset: Text
    revision: Text | None
    data_files: Text | None
    text_column: Text


class RedwoodValidation(DataOption):
    source: Literal["redwood_validation"]
    repo: Text
    filename: Text
    file: Text | None
    rows_start_with_begin: Flag


Data = Annotated[Brown | Files | OpenWebText | RedwoodValidation, Field(discriminator="source")]


# --- tokenizer: one model per option of conf/tokenizer/, told apart by `kind` -------------------

class Bpe(Section):
    kind: Literal["bpe"]
    vocab_size: integer(Ge(260))  # 256 byte tokens, BEGIN, END and room to merge


class Gpt2(Section):
    kind: Literal["gpt2"]
    source: Text
    cache_dir: Text = GPT2_FILES
    begin_id: integer(Ge(50257), Le(50258))


Tokenizer = Annotated[Bpe | Gpt2, Field(discriminator="kind")]


# --- model: one model per option of conf/model/, told apart by `source` -------------------------

class Trained(Section):
    source: Literal["trained"]
    recipe: Text  # names the model@<seed>-<recipe> stages (pipeline.config.recipe)
    dir: Text
    n_ctx: Count
    d_model: Count
    n_heads: Count
    d_head: Count
    n_layers: integer(Ge(2))
    train: Train

    @model_validator(mode="after")
    def _check_trained(self) -> Trained:
        """The architecture and training keys against each other (as pipeline.weights.train and
        pipeline.stages.model would find them, but before anything runs)."""
        train = self.train
        if self.n_heads * self.d_head != self.d_model:
            raise invalid("d_head", f"n_heads·d_head = {self.n_heads * self.d_head} ≠ d_model = {self.d_model}")
        low, high = train.repeat_span
        if low > high:
            raise invalid("train.repeat_span", f"[{low}, {high}]: the first is the shortest span")
        # pipeline.weights.train shortens a span to half the row, down to repeat_span[0] but not below it
        if 2 * low > self.n_ctx:
            raise invalid("train.repeat_span", f"a span of {low} twice does not fit model.n_ctx={self.n_ctx}")
        if train.short_steps and not 2 * low <= train.short_len <= self.n_ctx:
            raise invalid("train.short_len",
                          f"{train.short_len} must lie in [2·repeat_span[0], model.n_ctx={self.n_ctx}]")
        if train.seed_prev_head and train.positions != "sinusoidal":
            raise invalid("train.seed_prev_head", "needs model.train.positions=sinusoidal")
        return self


class Redwood(Section):
    source: Literal["redwood"]
    recipe: Literal["redwood"] = "redwood"
    dir: Text
    repo: Text
    filename: Text | None = None


class File(Section):
    source: Literal["file"]
    recipe: Literal["file"] = "file"
    dir: Text
    file: Text


Model = Annotated[Trained | Redwood | File, Field(discriminator="source")]


# --- the other sections ------------------------------------------------------------------------

HeadList = list[Text] | None


class Roles(Section):
    """Head names, checked against the model by pipeline.config.heads.validate_roles."""
    prev: Text | None
    self: HeadList
    induction: HeadList


class Sequences(Section):
    seq_len: integer(Ge(2))
    max_sequences: integer(Ge(1)) | None
    min_sequences: Count


class Whitelist(Section):
    beta: number()
    threshold: number()
    smoothing: number(Gt(0))


class Pairing(Section):
    seed: Seed


class Views(Section):
    """The head views."""
    max_offset: integer(Ge(0))
    window: integer(Ge(4))  # ≥ 4 shows A B … A B
    seed: Seed


class Heads(Section):
    min_previous_token_score: number()
    min_same_token_score: number()
    max_self_heads: integer(Ge(0))
    min_induction_score: number()
    heldout_sequences: Count
    views: Views
    repeat_length: Count
    repeat_sequences: Count
    batch_size: Count  # sequences through the model at once: bounds the stage's memory


class Cache(Section):
    batch_size: Count
    n_offsets: Count
    dtype: Literal["float16", "float32"]


class Scrub(Section):
    batch_size: Count
    parts: Annotated[list[Literal[PARTS]], MinLen(1)]
    bootstrap_samples: Count
    seed: Seed


class Sweep(Section):
    max_offset: integer(Ge(0))
    form: Hypothesis  # conf/hypothesis/refined2.yaml


class ReferenceLosses(Section):
    original: number() | None
    baseline: number() | None


class Report(Section):
    reference: dict[str, Annotated[list[number() | None], MinLen(4), MaxLen(4)]]
    reference_losses: ReferenceLosses


class Params(Section):
    """params.yaml. One loaded for a single stage may lack sections (`check_present`): reading
    one of those is a ConfigError naming it."""
    data: Data
    tokenizer: Tokenizer
    # one model per seed, in the order the report lists them (conf/model/*.yaml set it)
    seeds: Annotated[list[Seed], MinLen(1)]
    model: Model
    roles: Roles
    hypotheses: Hypotheses
    device: Literal["auto", "cpu", "cuda"]
    sequences: Sequences
    whitelist: Whitelist
    pairing: Pairing
    heads: Heads
    cache: Cache
    scrub: Scrub
    sweep: Sweep
    search: Search
    report: Report
    claims: Claims  # conf/claims/default.yaml (pipeline/config/claims.py)
    # conf/config.yaml's hook that runs this check during composition; the stages ignore it
    checked: Any = None

    def __getattr__(self, name: str) -> Any:
        if name in type(self).model_fields:  # a section a partial params.yaml lacks
            raise ConfigError(name, "missing from params.yaml")
        return super().__getattr__(name)

    @model_validator(mode="after")
    def _check_across(self) -> Params:
        try:
            check_across(self)
        except ConfigError as err:
            raise from_config_error(err) from None
        return self


def recipe_sections(model: Any, data: Any, tokenizer: Any) -> dict:
    """The sections a trained model is a function of, validated and dumped as JSON values (defaults
    filled in): the form pipeline.config.recipe compares and records. Raw dicts or models."""
    def dump(kind: Any, value: Any) -> Any:
        return TypeAdapter(kind).validate_python(value).model_dump(mode="json", by_alias=True)

    return {"model": dump(Model, model), "data": dump(Data, data), "tokenizer": dump(Tokenizer, tokenizer)}


def check_across(params: Params) -> None:
    """What one key's type cannot say: hypotheses, roles and lengths against each other."""
    model, seq, cache = params.model, params.sequences, params.cache
    trained = isinstance(model, Trained)
    seeds = params.seeds
    if len(set(seeds)) != len(seeds):
        raise ConfigError("seeds", f"{seeds} names a seed twice: each model needs its own seed")
    if not trained and len(seeds) != 1:
        raise ConfigError("seeds", f"{seeds}: model.source={model.source} loads one model; give one seed")
    if params.data.source == "redwood_validation" and params.tokenizer.kind != "gpt2":
        raise ConfigError("tokenizer.kind", f"{params.tokenizer.kind}: data=redwood_validation holds "
                                            f"GPT-2 token ids; use tokenizer=gpt2")
    if seq.max_sequences is not None and seq.max_sequences < seq.min_sequences:
        raise ConfigError("sequences.max_sequences",
                          f"{seq.max_sequences} is below sequences.min_sequences={seq.min_sequences}")
    if trained:
        check_model_dir(recipe_sections(model, params.data, params.tokenizer))
        # the model reads BEGIN + seq_len tokens (the last token is only a target)
        if seq.seq_len + 1 > model.n_ctx:
            raise ConfigError("sequences.seq_len", f"seq_len + 1 = {seq.seq_len + 1} exceeds model.n_ctx={model.n_ctx}")
        if 2 * params.heads.repeat_length + 1 > model.n_ctx:
            raise ConfigError("heads.repeat_length", f"BEGIN + twice {params.heads.repeat_length} tokens "
                                                     f"exceed model.n_ctx={model.n_ctx}")
    # Head names are checked against the model's size where conf/ gives it; for a loaded model,
    # only their form and layer here, and their range when the heads stage loads it.
    n_layers, n_heads = (model.n_layers, model.n_heads) if trained else (10**6, 10**6)
    validate_roles(params.roles.model_dump(), n_layers, n_heads)
    for key, hypothesis in params.hypotheses.items():
        check_heads(hypothesis, n_heads, f"hypotheses.{key}")
        for part, spec in hypothesis.inputs.items():
            for head, head_spec in spec.heads.items():
                if isinstance(head_spec, Masked) and max(head_spec.offsets) >= cache.n_offsets:
                    raise ConfigError(f"hypotheses.{key}.{part}.heads.{head}.mask",
                                      f"offset {max(head_spec.offsets)} is not cached: the layer-0 cache keeps "
                                      f"offsets < cache.n_offsets={cache.n_offsets}")
    check_sweep(params.sweep, cache.n_offsets, n_heads)
    check_search(params.search, cache.n_offsets, n_heads)
    check_claims(params.claims, list(params.hypotheses), list(params.scrub.parts), params.sweep.max_offset)


def check_sweep(sweep: Sweep, n_offsets: int, n_heads: int) -> None:
    """The sweep's masks reach offset sweep.max_offset, so the cache must keep it; its form is a
    hypothesis whose Q and K mask some layer-0 head."""
    if sweep.max_offset >= n_offsets:
        raise ConfigError("sweep.max_offset", f"{sweep.max_offset} is not cached: the layer-0 cache keeps "
                                              f"offsets < cache.n_offsets={n_offsets}")
    check_heads(sweep.form, n_heads, "sweep.form")
    for part in ("q", "k"):
        if not any(isinstance(spec, Masked) for spec in sweep.form.inputs[part].heads.values()):
            raise ConfigError(f"sweep.form.{part}.heads", "masks no layer-0 head: the sweep has no mask to vary")


def check(params: Any) -> Params:
    """params.yaml (as a dict) validated; a ConfigError naming its first bad key."""
    return _validated(params, Params, "")


def check_present(params: Any) -> Params:
    """`check` for a params.yaml that a stage loads. One written by hand for a single stage (a
    test's) may lack whole sections: those it has are checked, one it lacks is an error when the
    stage reads it (Params.__getattr__), and the checks across sections need them all."""
    if not isinstance(params, dict):
        raise ConfigError("params.yaml", f"must be a mapping of sections, got {params!r}")
    fields = Params.model_fields
    if all(name in params for name, field in fields.items() if field.is_required()):
        return check(params)
    for key in params:
        if key not in fields:
            raise ConfigError(key, f"unknown key; params has {', '.join(fields)}")
    return Params.model_construct(**{key: _validated(value, _section(key), key) for key, value in params.items()})


def _section(name: str) -> Any:
    field = Params.model_fields[name]
    return Annotated[field.annotation, field]


def _validated(value: Any, tp: Any, at: str) -> Any:
    unset = _unset(value, at)
    if unset is not None:
        raise ConfigError(unset, f"has no value; give one, e.g. -S {unset}=...")
    if not isinstance(value, dict) and tp is Params:
        raise ConfigError("params.yaml", f"must be a mapping of sections, got {value!r}")
    try:
        return TypeAdapter(tp).validate_python(value)
    except ValidationError as err:
        raise config_error(err, tp, at) from None


def _unset(value: Any, at: str) -> str | None:
    """The first parameter of `value` (found at `at`) that Hydra left without a value (`???`)."""
    if value == MISSING:
        return at
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _unset(item, f"{at}[{key}]" if isinstance(value, list) else f"{at}.{key}" if at else str(key))
        if found is not None:
            return found
    return None
