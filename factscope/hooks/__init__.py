"""Trace/patch primitives on named sites (module inputs or outputs)."""

from factscope.hooks.sites import Site
from factscope.hooks.trace import SiteTrace, StopForward, add_at_positions, replace_positions, zero_positions

__all__ = ["Site", "SiteTrace", "StopForward", "add_at_positions", "replace_positions", "zero_positions"]
