"""factscope: locate where a language model stores a fact, edit it, and measure the edit.

Usage::

    from factscope import load_model, position_groups
    model, tokenizer, adapter = load_model()          # bundled SmolLM2-135M-Instruct
"""

from factscope.gc_control import paused_gc

with paused_gc():  # importing torch: see factscope.gc_control
    from factscope.hooks import Site, SiteTrace
    from factscope.models import LoadedModel, ModelAdapter, load_model
    from factscope.tokens import PositionGroups, position_groups

__version__ = "0.1.0"

__all__ = ["LoadedModel", "ModelAdapter", "PositionGroups", "Site", "SiteTrace", "load_model", "position_groups"]
