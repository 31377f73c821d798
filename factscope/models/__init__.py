"""Model access: architecture maps (data), the adapter, and loading incl. the bundled model."""

from factscope.models.adapter import LayerOutOfRangeError, LinearWeight, ModelAdapter
from factscope.models.architectures import ARCHITECTURES, ArchitectureSpec, UnknownArchitectureError, architecture_for
from factscope.models.loading import LoadedModel, ModelLoadError, cache_dir, load_model

__all__ = [
    "ARCHITECTURES",
    "ArchitectureSpec",
    "LayerOutOfRangeError",
    "LinearWeight",
    "LoadedModel",
    "ModelAdapter",
    "ModelLoadError",
    "UnknownArchitectureError",
    "architecture_for",
    "cache_dir",
    "load_model",
]
