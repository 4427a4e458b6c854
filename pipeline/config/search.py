"""The search space and rule of the search stage (`search` in params.yaml, from conf/search/*.yaml).

A point of the space is a hypothesis in the vocabulary of conf/hypothesis/: for each input of the
induction heads (q, k, v), the embedding `clean` or `other`, and each layer-0 head `other`,
`clean`, or a masked split (inside the mask: pattern from the other sequence, values clean;
outside: other) with a mask from `masks`. docs/hypotheses.md states the rule and the complexity.
"""
from __future__ import annotations

from typing import Annotated, Literal

from annotated_types import Ge, Gt, Lt, MinLen
from pydantic import Field

from pipeline.config.base import Count, Section, Seed, Text, integer, number
from pipeline.config.heads import is_layer0_head
from pipeline.config.hypothesis import Mask
from pipeline.errors import ConfigError

PARTS = ("q", "k", "v", "all")


class Cost(Section):
    """Complexity units: what each kept piece of a hypothesis adds."""
    embedding: integer(Ge(0)) = Field(1, description="an input that keeps its own token embedding")
    offset: integer(Ge(0)) = Field(1, description="a masked split, per relative position whose values it keeps")
    clean: integer(Ge(0)) = Field(4, description="a head kept whole: its pattern and its values at every position")


class Search(Section):
    objective: Literal[PARTS] = Field("all", description="the part whose % loss recovered the search maximises")
    # "all", or head names (0.H) and roles (prev, self) of layer 0: the heads a step may change
    heads: Annotated[list[Text], MinLen(1)] | Literal["all"] = "all"
    masks: list[Mask] = Field(description="the masks a split may take, as offsets ([0], [1], [0, 1], …)")
    cost: Cost = Cost()
    selection_fraction: number(Gt(0), Lt(1)) = Field(0.5, description="the share of sequences that picks each step; the rest measure it")
    max_selection: Count | None = Field(None, description="at most this many sequences select (the rest "
                                                          "measure); null: no cap")
    selection_seed: Seed = 0
    max_steps: Count = 20
    min_gain: number(Ge(0)) = Field(0.25, description="points of % recovered per unit of complexity a forward "
                                                     "step must gain")
    prune_tolerance: number(Ge(0)) = Field(1.0, description="points below forward selection's end that "
                                                            "pruning may go")
    batch_size: Count = 16


def check_search(search: Search, n_offsets: int, n_heads: int) -> None:
    """What one key's type cannot say: masks within the cache, head names within the model, a clean
    head costing more than any split (else forward selection could not tell them apart)."""
    for i, mask in enumerate(search.masks):
        if max(mask) >= n_offsets:
            raise ConfigError(f"search.masks[{i}]", f"offset {max(mask)} is not cached: the layer-0 cache keeps "
                                                    f"offsets < cache.n_offsets={n_offsets}")
    largest = max((search.cost.offset * len(mask) for mask in search.masks), default=0)
    if search.cost.clean <= largest:
        raise ConfigError("search.cost.clean", f"{search.cost.clean} must exceed the largest split's cost {largest} "
                                               f"(search.cost.offset × its offsets): a clean head keeps more than "
                                               f"any split")
    if search.heads != "all":
        for i, name in enumerate(search.heads):
            if name in ("prev", "self"):
                continue
            if not is_layer0_head(name, n_heads):
                raise ConfigError(f"search.heads[{i}]", f"{name}: unknown layer-0 head; use all, prev, self or "
                                                        f"0.0 … 0.{n_heads - 1}")
