"""The schema of params.yaml: every key's type and range, and the checks that span sections.

It runs when conf/ is composed, in whichever process composes it: `python -m pipeline.config`
and `dvc exp run -S` both call DVC's `compose_and_dump`, which loads the Hydra plugins of the
repository (hydra_plugins/pipeline_checks.py imports this module) and then resolves the
composed config; conf/config.yaml's last key, `checked: ${pipeline.check:}`, makes that
resolution call `check` on the whole tree. A bad value stops the composition with one line
naming the key, before params.yaml is written and before any stage runs. Every stage checks
params.yaml again when it loads it (pipeline.outputs.load_params), for hand-edited files.

Where to extend: a new key of a section is one line in its `Map`; a new option of a config group
(conf/data/*.yaml, conf/tokenizer/*.yaml, conf/model/*.yaml) is one entry in DATA, TOKENIZERS
or MODELS, keyed by the option's `source` / `kind` value.
"""
from __future__ import annotations

from typing import Any, Iterable

from pipeline.config.heads import validate_roles
from pipeline.config.hypothesis import Masked, check_heads, parse_hypothesis
from pipeline.errors import ConfigError

PARTS = ("q", "k", "v", "all")  # pipeline.scrub.engine.PARTS (not imported: that module loads torch)
MISSING = "???"  # Hydra's mandatory value: conf/ leaves it for the user to give with -S


class Spec:
    """One value's type and range. `check` returns nothing or raises ConfigError naming `at`."""

    null = False

    def check(self, value: Any, at: str, partial: bool = False) -> None:
        """`partial`: keys a mapping lacks are not errors (a stage's params.yaml written by a test
        may hold only what the stage reads); what is there is checked as usual."""
        if value == MISSING:
            raise ConfigError(at, f"has no value; give one, e.g. -S {at}=...")
        if value is None:
            if not self.null:
                raise ConfigError(at, f"must be {self.describe()}, got null")
            return
        self.check_value(value, at, partial)

    def check_value(self, value: Any, at: str, partial: bool = False) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class Int(Spec):
    def __init__(self, min: int | None = None, max: int | None = None, null: bool = False):
        self.min, self.max, self.null = min, max, null

    def describe(self) -> str:
        bounds = [f"≥ {self.min}"] * (self.min is not None) + [f"≤ {self.max}"] * (self.max is not None)
        return "an integer" + (" " + " and ".join(bounds) if bounds else "") + (" or null" if self.null else "")

    def check_value(self, value: Any, at: str, partial: bool = False) -> None:
        # bool is an int to Python, but `true` for a count is a mistake
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(at, f"must be {self.describe()}, got {value!r}")
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise ConfigError(at, f"must be {self.describe()}, got {value}")


class Float(Spec):
    """A number; `above`/`below` are exclusive bounds, `min`/`max` inclusive."""

    def __init__(self, min: float | None = None, max: float | None = None, above: float | None = None,
                 below: float | None = None, null: bool = False):
        self.min, self.max, self.above, self.below, self.null = min, max, above, below, null

    def describe(self) -> str:
        bounds = [f"{op} {v}" for op, v in ((">", self.above), ("≥", self.min), ("<", self.below), ("≤", self.max))
                  if v is not None]
        return "a number" + (" " + " and ".join(bounds) if bounds else "") + (" or null" if self.null else "")

    def check_value(self, value: Any, at: str, partial: bool = False) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(at, f"must be {self.describe()}, got {value!r}")
        if ((self.min is not None and value < self.min) or (self.max is not None and value > self.max)
                or (self.above is not None and value <= self.above) or (self.below is not None and value >= self.below)):
            raise ConfigError(at, f"must be {self.describe()}, got {value}")


class Str(Spec):
    def __init__(self, choices: Iterable[str] | None = None, null: bool = False):
        self.choices, self.null = tuple(choices) if choices else None, null

    def describe(self) -> str:
        what = f"one of {', '.join(self.choices)}" if self.choices else "a string"
        return what + (" or null" if self.null else "")

    def check_value(self, value: Any, at: str, partial: bool = False) -> None:
        if not isinstance(value, str) or (self.choices and value not in self.choices):
            raise ConfigError(at, f"must be {self.describe()}, got {value!r}")


class Bool(Spec):
    def describe(self) -> str:
        return "true or false"

    def check_value(self, value: Any, at: str, partial: bool = False) -> None:
        if not isinstance(value, bool):
            raise ConfigError(at, f"must be {self.describe()}, got {value!r}")


class List(Spec):
    def __init__(self, item: Spec, min_len: int = 0, length: int | None = None, null: bool = False):
        self.item, self.min_len, self.length, self.null = item, min_len, length, null

    def describe(self) -> str:
        size = f"{self.length} " if self.length is not None else ""
        return f"a list of {size}items, each {self.item.describe()}" + (" (or null)" if self.null else "")

    def check_value(self, value: Any, at: str, partial: bool = False) -> None:
        if not isinstance(value, list):
            raise ConfigError(at, f"must be {self.describe()}, got {value!r}")
        if (self.length is not None and len(value) != self.length) or len(value) < self.min_len:
            want = self.length if self.length is not None else f"at least {self.min_len}"
            raise ConfigError(at, f"must have {want} items, got {len(value)}")
        for i, item in enumerate(value):
            self.item.check(item, f"{at}[{i}]", partial)


class Anything(Spec):
    """Checked elsewhere (e.g. a hypothesis, by parse_hypothesis)."""
    null = True

    def describe(self) -> str:
        return "any value"

    def check_value(self, value: Any, at: str, partial: bool = False) -> None:
        pass


class Map(Spec):
    """A mapping with exactly these keys (`optional` ones may be absent); with `extra`, any other
    key is allowed and its value checked by `extra`."""

    def __init__(self, fields: dict[str, Spec], optional: Iterable[str] = (), extra: Spec | None = None,
                 null: bool = False):
        self.fields, self.optional, self.extra, self.null = fields, set(optional), extra, null

    def describe(self) -> str:
        return "a mapping" + (" or null" if self.null else "")

    def check_value(self, value: Any, at: str, partial: bool = False) -> None:
        if not isinstance(value, dict):
            raise ConfigError(at, f"must be {self.describe()}, got {value!r}")
        for key in value:
            if key not in self.fields and self.extra is None:
                raise ConfigError(join(at, key), f"unknown key; {at or 'params'} has {', '.join(self.fields)}")
        for key, spec in self.fields.items():
            if key in value:
                spec.check(value[key], join(at, key), partial)
            elif key not in self.optional and not partial:
                raise ConfigError(join(at, key), "missing")
        if self.extra is not None:
            for key, item in value.items():
                if key not in self.fields:
                    self.extra.check(item, join(at, str(key)), partial)


class OneOf(Spec):
    """A config group whose options differ in their keys: the value of `key` picks the Map."""

    def __init__(self, key: str, options: dict[str, Map]):
        self.key, self.options = key, options

    def describe(self) -> str:
        return "a mapping"

    def check_value(self, value: Any, at: str, partial: bool = False) -> None:
        if not isinstance(value, dict):
            raise ConfigError(at, f"must be {self.describe()}, got {value!r}")
        if partial and self.key not in value:  # which option it is, unknown: check the keys every option has
            common = set.intersection(*(set(option.fields) for option in self.options.values()))
            for key in value:
                if key not in set().union(*(option.fields for option in self.options.values())):
                    raise ConfigError(join(at, key), "unknown key")
            for key in common & set(value):
                next(iter(self.options.values())).fields[key].check(value[key], join(at, key), partial)
            return
        Str(self.options).check(value.get(self.key), join(at, self.key))
        self.options[value[self.key]].check(value, at, partial)


def join(at: str, key: Any) -> str:
    return f"{at}.{key}" if at else str(key)


COUNT = Int(min=1)
SEED = Int(min=0)
FRACTION = Float(above=0, below=1)
MAX_DOCUMENTS = Int(min=2, null=True)  # the split needs a training and a held-out document

# One entry per option of conf/data/, keyed by its `source`.
DATA = {
    "brown": Map({"source": Str(), "cache_dir": Str(), "max_documents": MAX_DOCUMENTS,
                  "heldout_fraction": FRACTION, "split_seed": SEED}),
    "files": Map({"source": Str(), "path": Str(), "text_column": Str(), "max_documents": MAX_DOCUMENTS,
                  "heldout_fraction": FRACTION, "split_seed": SEED}),
    "openwebtext": Map({"source": Str(), "dataset": Str(), "revision": Str(null=True), "data_files": Str(null=True),
                        "text_column": Str(), "max_documents": MAX_DOCUMENTS, "heldout_fraction": FRACTION,
                        "split_seed": SEED}),
    "redwood_validation": Map({"source": Str(), "repo": Str(), "filename": Str(), "file": Str(null=True),
                               "rows_start_with_begin": Bool(), "max_documents": MAX_DOCUMENTS,
                               "heldout_fraction": FRACTION, "split_seed": SEED}),
}

# One entry per option of conf/tokenizer/, keyed by its `kind`.
TOKENIZERS = {
    "bpe": Map({"kind": Str(), "vocab_size": Int(min=260)}),  # 256 byte tokens, BEGIN, END and room to merge
    "gpt2": Map({"kind": Str(), "source": Str(), "cache_dir": Str(), "begin_id": Int(min=50257, max=50258)},
                optional=("cache_dir",)),
}

TRAIN = Map({
    "steps": COUNT, "batch_size": COUNT, "lr": Float(above=0), "warmup_steps": Int(min=0),
    "final_lr_fraction": Float(min=0, max=1), "weight_decay": Float(min=0),
    "betas": List(Float(min=0, below=1), length=2), "grad_clip": Float(above=0),
    "repeat_share": Float(min=0, max=1), "repeat_span": List(Int(min=1), length=2),
    "positions": Str(("normal", "sinusoidal")), "position_scale": Float(above=0), "seed_prev_head": Float(),
    "private_seed_dims": Bool(),
    "short_steps": Int(min=0), "short_len": COUNT, "alphabet_start": Int(min=1, null=True),
    "grow_steps": Int(min=0), "bf16": Bool(), "eval_every": COUNT,
}, optional=("betas", "grad_clip", "position_scale", "private_seed_dims"))  # pipeline.weights.train.TrainConfig has defaults for these

# One entry per option of conf/model/, keyed by its `source`.
MODELS = {
    "trained": Map({"source": Str(), "dir": Str(), "n_ctx": COUNT, "d_model": COUNT, "n_heads": COUNT,
                    "d_head": COUNT, "n_layers": Int(min=2), "train": TRAIN}),
    "redwood": Map({"source": Str(), "dir": Str(), "repo": Str(), "filename": Str(null=True)}, optional=("filename",)),
    "file": Map({"source": Str(), "dir": Str(), "file": Str()}),
}

HEAD_LIST = List(Str(), null=True)

PARAMS = Map({
    "data": OneOf("source", DATA),
    "tokenizer": OneOf("kind", TOKENIZERS),
    # one model per seed, in the order the report lists them (conf/model/*.yaml set it)
    "seeds": List(SEED, min_len=1),
    "model": OneOf("source", MODELS),
    "roles": Map({"prev": Str(null=True), "self": HEAD_LIST, "induction": HEAD_LIST}),
    "hypotheses": Map({}, extra=Anything()),
    "device": Str(("auto", "cpu", "cuda")),
    "sequences": Map({"seq_len": Int(min=2), "max_sequences": Int(min=1, null=True), "min_sequences": COUNT}),
    "whitelist": Map({"beta": Float(), "threshold": Float(), "smoothing": Float(above=0)}),
    "pairing": Map({"seed": SEED}),
    "heads": Map({"min_previous_token_score": Float(), "min_same_token_score": Float(),
                  "max_self_heads": Int(min=0), "min_induction_score": Float(), "heldout_sequences": COUNT,
                  # the head views; window ≥ 4 shows A B … A B
                  "views": Map({"max_offset": Int(min=0), "window": Int(min=4), "seed": SEED}),
                  "repeat_length": COUNT, "repeat_sequences": COUNT}),
    "cache": Map({"batch_size": COUNT, "n_offsets": COUNT, "dtype": Str(("float16", "float32"))}),
    "scrub": Map({"batch_size": COUNT, "parts": List(Str(PARTS), min_len=1), "bootstrap_samples": COUNT,
                  "seed": SEED}),
    # sweep.form: a hypothesis (conf/hypothesis/refined2.yaml), checked by check_across
    "sweep": Map({"max_offset": Int(min=0), "form": Anything()}),
    "report": Map({"reference": Map({}, extra=List(Float(null=True), length=4)),
                   "reference_losses": Map({"original": Float(null=True), "baseline": Float(null=True)})}),
    # conf/config.yaml's hook that runs this check during composition; the stages ignore it
    "checked": Anything(),
}, optional=("checked",))


def check(params: Any) -> None:
    """Raise ConfigError naming the first bad key of `params` (params.yaml as a dict)."""
    PARAMS.check(params, "")
    check_across(params)


def check_present(params: Any) -> None:
    """`check` for a params.yaml that a stage loads. One written by hand for a single stage (a
    test's) may lack keys: what it has is still checked, what it lacks is left to the stage's
    `require`, and the checks across sections need them all."""
    if not isinstance(params, dict):
        raise ConfigError("params.yaml", f"must be a mapping of sections, got {params!r}")
    try:
        PARAMS.check(params, "")
    except ConfigError:
        PARAMS.check(params, "", partial=True)  # raises the error if it is not a missing key
        return  # a partial file: the stage's `require` names what it lacks
    check_across(params)


ACROSS = ("seeds", "model", "sequences", "cache", "heads", "roles", "hypotheses", "sweep")  # the sections check_across reads


def check_across(params: dict) -> None:
    """What one key's type cannot say: hypotheses, roles and lengths against each other."""
    model, seq, cache = params["model"], params["sequences"], params["cache"]
    trained = model["source"] == "trained"
    seeds = params["seeds"]
    if len(set(seeds)) != len(seeds):
        raise ConfigError("seeds", f"{seeds} names a seed twice: each model needs its own seed")
    if not trained and len(seeds) != 1:
        raise ConfigError("seeds", f"{seeds}: model.source={model['source']} loads one model; give one seed")
    if params["data"]["source"] == "redwood_validation" and params["tokenizer"]["kind"] != "gpt2":
        raise ConfigError("tokenizer.kind", f"{params['tokenizer']['kind']}: data=redwood_validation holds "
                                            f"GPT-2 token ids; use tokenizer=gpt2")
    if seq["max_sequences"] is not None and seq["max_sequences"] < seq["min_sequences"]:
        raise ConfigError("sequences.max_sequences",
                          f"{seq['max_sequences']} is below sequences.min_sequences={seq['min_sequences']}")
    if trained:
        check_trained(model)
        # the model reads BEGIN + seq_len tokens (the last token is only a target)
        if seq["seq_len"] + 1 > model["n_ctx"]:
            raise ConfigError("sequences.seq_len", f"seq_len + 1 = {seq['seq_len'] + 1} exceeds model.n_ctx={model['n_ctx']}")
        if 2 * params["heads"]["repeat_length"] + 1 > model["n_ctx"]:
            raise ConfigError("heads.repeat_length", f"BEGIN + twice {params['heads']['repeat_length']} tokens "
                                                     f"exceed model.n_ctx={model['n_ctx']}")
    # Head names are checked against the model's size where conf/ gives it; for a loaded model,
    # only their form and layer here, and their range when the heads stage loads it.
    n_layers, n_heads = (model["n_layers"], model["n_heads"]) if trained else (10**6, 10**6)
    validate_roles(params["roles"], n_layers, n_heads)
    for key, raw in params["hypotheses"].items():
        hypothesis = parse_hypothesis(str(key), raw)
        check_heads(hypothesis, str(key), n_heads)
        for part, spec in hypothesis.inputs.items():
            for head, head_spec in spec.heads.items():
                if isinstance(head_spec, Masked) and max(head_spec.offsets) >= cache["n_offsets"]:
                    raise ConfigError(f"hypotheses.{key}.{part}.heads.{head}.mask",
                                      f"offset {max(head_spec.offsets)} is not cached: the layer-0 cache keeps "
                                      f"offsets < cache.n_offsets={cache['n_offsets']}")
    check_sweep(params["sweep"], cache["n_offsets"], n_heads)


def check_sweep(sweep: dict, n_offsets: int, n_heads: int) -> None:
    """The sweep's masks reach offset sweep.max_offset, so the cache must keep it; its form is a
    hypothesis whose errors are named under sweep.form (the parser says hypotheses.<key>)."""
    if sweep["max_offset"] >= n_offsets:
        raise ConfigError("sweep.max_offset", f"{sweep['max_offset']} is not cached: the layer-0 cache keeps "
                                              f"offsets < cache.n_offsets={n_offsets}")
    try:
        form = parse_hypothesis("sweep", sweep["form"])
        check_heads(form, "sweep", n_heads)
    except ConfigError as err:
        raise ConfigError("sweep.form" + err.param[len("hypotheses.sweep"):], str(err)[len(err.param) + 2:]) from None
    for part in ("q", "k"):
        if not any(isinstance(spec, Masked) for spec in form.inputs[part].heads.values()):
            raise ConfigError(f"sweep.form.{part}.heads", "masks no layer-0 head: the sweep has no mask to vary")


def check_trained(model: dict) -> None:
    """The architecture and training keys of source=trained against each other (as
    pipeline.weights.train and pipeline.stages.model would find them, but before anything runs)."""
    train = model["train"]
    if model["n_heads"] * model["d_head"] != model["d_model"]:
        raise ConfigError("model.d_head", f"n_heads·d_head = {model['n_heads'] * model['d_head']} ≠ d_model = {model['d_model']}")
    low, high = train["repeat_span"]
    if low > high:
        raise ConfigError("model.train.repeat_span", f"[{low}, {high}]: the first is the shortest span")
    # pipeline.weights.train shortens a span to half the row, down to repeat_span[0] but not below it
    if 2 * low > model["n_ctx"]:
        raise ConfigError("model.train.repeat_span", f"a span of {low} twice does not fit model.n_ctx={model['n_ctx']}")
    if train["short_steps"] and not 2 * low <= train["short_len"] <= model["n_ctx"]:
        raise ConfigError("model.train.short_len", f"{train['short_len']} must lie in [2·repeat_span[0], "
                                                   f"model.n_ctx={model['n_ctx']}]")
    if train["seed_prev_head"] and train["positions"] != "sinusoidal":
        raise ConfigError("model.train.seed_prev_head", "needs model.train.positions=sinusoidal")
