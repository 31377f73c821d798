"""Localization: causal tracing (subject/relation corruption, severed) and the vocabulary lens."""
