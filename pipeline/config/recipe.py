"""Where a trained model lives: derived from what it is trained on, so that no preset or changed
recipe can overwrite the committed default models.

A model of `model.source=trained` is a function of its recipe: the `model` section (architecture
and `train`) and the text it is trained on (`data`, `tokenizer`). `data/model/recipe.json`,
committed with the default models, records the recipe they were trained with. A composition with
exactly that recipe is `model.recipe = default` with `model.dir = data/model`; any other is
`recipe-<digest>` (a digest of its recipe) with its own folder `data/model/recipe-<digest>`
(git-ignored). The recipe names the model stages too (`model@<seed>-<recipe>` in dvc.yaml), so
that each recipe keeps its own entry in dvc.lock: a preset's run does not overwrite the committed
models' entry, and the default composed after it finds its models up to date.
conf/model/trained.yaml sets `recipe: ${pipeline.recipe:}` and
`dir: ${pipeline.model_dir:${model.recipe}}`, resolvers that call `recipe_id` and `model_dir` during
composition (pipeline.config.compose registers them); the schema refuses any other value, even one
set by hand. Recipes are compared as the schema's models dump them, defaults
filled in, so writing a default out changes nothing.

To make a new recipe the committed one: train it, move its folder's models to data/model/seed<N>/,
record its recipe (`python -m pipeline.config --record-recipe` with the same overrides), commit.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline.errors import ConfigError

COMMITTED_DIR = "data/model"
RECIPE_FILE = f"{COMMITTED_DIR}/recipe.json"
ROOT = Path(__file__).resolve().parents[2]
COMMITTED = "default"


def recipe(params: dict) -> dict:
    """What a trained model is a function of: `model` but where it goes (`dir`, `recipe`), `data`,
    `tokenizer`."""
    model = {key: value for key, value in params["model"].items() if key not in ("dir", "recipe")}
    return {"model": model, "data": params["data"], "tokenizer": params["tokenizer"]}


def digest(params: dict) -> str:
    return hashlib.sha256(json.dumps(recipe(params), sort_keys=True).encode()).hexdigest()[:12]


def committed_recipe(root: Path = ROOT) -> dict | None:
    path = root / RECIPE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def recipe_id(params: dict, root: Path = ROOT) -> str:
    """`default` for the committed recipe, `recipe-<digest>` for any other."""
    return COMMITTED if recipe(params) == committed_recipe(root) else f"recipe-{digest(params)}"


def model_dir(name: str) -> str:
    """The folder of recipe `name` (recipe_id): data/model for the committed one, data/model/<name> else."""
    return COMMITTED_DIR if name == COMMITTED else f"{COMMITTED_DIR}/{name}"


def check_model_dir(params: dict, root: Path = ROOT) -> None:
    """A trained model's folder must be the one its recipe derives: data/model only for the
    committed recipe (params: params.yaml as a dict, `model.source` trained)."""
    name = recipe_id(params, root)
    if params["model"]["recipe"] != name:
        raise ConfigError("model.recipe", f"{params['model']['recipe']} is not this recipe's name {name} "
                                          f"({RECIPE_FILE} holds the committed models'); leave model.recipe to "
                                          f"conf/model/trained.yaml")
    wanted, given = model_dir(name), params["model"]["dir"]
    if given != wanted:
        raise ConfigError("model.dir", f"{given} is not this recipe's folder {wanted}: a trained model's folder "
                                       f"follows its recipe ({RECIPE_FILE} holds the committed models'); leave "
                                       f"model.dir to conf/model/trained.yaml")
