"""The causal scrubbing engine: a library with no file I/O (see engine.py)."""
from pipeline.scrub.engine import PARTS, Losses, build_cache, scrub_losses
from pipeline.scrub.hypothesis import Hypothesis, check_heads, parse_hypothesis
from pipeline.scrub.resample import classify_positions, draw_matching, resolve_rules
from pipeline.scrub.stats import recovered, summarize

__all__ = ["PARTS", "Losses", "build_cache", "scrub_losses", "Hypothesis", "check_heads", "parse_hypothesis",
           "classify_positions", "draw_matching", "resolve_rules", "recovered", "summarize"]
