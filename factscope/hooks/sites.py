"""Site names, kept importable from here; they live beside the adapter in :mod:`factscope.models.sites`.

Usage::

    from factscope.hooks.sites import Site
    Site.parse("mlp_key.5")
"""

from factscope.models.sites import INPUT_SITE_KINDS, SITE_KINDS, Site

__all__ = ["INPUT_SITE_KINDS", "SITE_KINDS", "Site"]
