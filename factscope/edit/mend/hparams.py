"""MEND hyperparameters: the network, its training, and how an edit finds a trained editor.

Usage::

    hp = MENDHyperParams.for_model(adapter)              # last 3 layers, rank 128, ...
    layers = resolve_mend_layers(adapter, hp.layers)     # [27, 28, 29] on the bundled model
    key_fields(hp)                                       # what a trained editor is keyed by

Layers are absolute indices, negative indices counted from the end (``-1`` = last
layer) or fractions of depth in [0, 1). ``steps`` is not part of the cache key:
with a constant learning rate a run of N steps is the first N steps of a longer run,
so training more resumes the same run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from factscope.edit.hparams import EditHyperParams, hp

if TYPE_CHECKING:
    from factscope.models.adapter import ModelAdapter

# Fields that only say where the editor comes from or how often to report: not keyed.
_UNKEYED = {"steps", "val_every", "checkpoint_every", "editor_file", "train_data", "train_if_missing", "val_size"}


@dataclass
class MENDHyperParams(EditHyperParams):
    """MEND (Mitchell et al. 2022): a trained network maps fine-tuning gradient factors to an edit."""

    FAMILY_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {
        "gpt2": {"layers": [-3, -2, -1]},  # MEND's GPT-style setting: the last 3 MLP layers
    }

    # network
    layers: list = hp([-3, -2, -1], "Edited layers (their MLP down-projection): indices, negative from the end, or fractions.")
    rank: int = hp(128, "Rank of the network's residual blocks (the paper: 1920).")
    n_blocks: int = hp(2, "Residual blocks per network.")
    shared: bool = hp(True, "Layers with weights of one shape share a network (with per-layer scale and offset).")
    edit_lr: float = hp(1e-2, "Initial per-layer step alpha of the edit dW = -alpha * sum_t dtilde_t utilde_t^T.")
    # training
    steps: int = hp(300, "Training steps (one edit batch each).")
    batch_size: int = hp(1, "Edits per training step (edited together, as one batch edit).")
    lr: float = hp(1e-4, "Adam learning rate of the network.")
    alpha_lr: float = hp(1e-2, "Adam learning rate of log(alpha) (relative steps of the edit size).")
    c_edit: float = hp(0.1, "Weight of the edit loss NLL(target | paraphrase, edited weights).")
    c_loc: float = hp(1.0, "Weight of the locality loss KL(p_W || p_W~) on unrelated prompts.")
    grad_clip: float = hp(100.0, "Clip the training gradient to this global norm.")
    seed: int = hp(0, "Seed of the network's initialisation and of the data order.")
    max_equiv: int = hp(2, "Paraphrase prompts per example in the edit loss.")
    equiv_include_prompt: bool = hp(True, "Also count the rewrite prompt itself in the edit loss.")
    max_loc: int = hp(2, "Unrelated (neighbourhood / loc) prompts per example in the locality loss.")
    val_size: int = hp(50, "Validation examples split off the end of the training file (when no --val-data).")
    val_every: int = hp(100, "Validate every this many steps (0: only at the end).")
    checkpoint_every: int = hp(25, "Write the training state every this many steps.")
    # where an edit finds its editor
    editor_file: str = hp("", "A trained editor file (editor.safetensors); default: look it up in the cache.")
    train_data: str = hp("", "The training file the editor must come from (default: the most recently trained one).")
    train_if_missing: bool = hp(False, "Train an editor on train_data first when none is cached.")

    @classmethod
    def for_model(cls, adapter: "ModelAdapter | None" = None, family: str | None = None) -> "MENDHyperParams":
        """The family defaults, with layers counted from the end turned into indices of ``adapter``."""
        result = super().for_model(adapter, family)
        if adapter is not None and any(isinstance(x, int) and x < 0 for x in result.layers):
            result = result.override(layers=[adapter.n_layers + x if isinstance(x, int) and x < 0 else x
                                             for x in result.layers])
        return result

    def edited_layers(self, adapter: "ModelAdapter") -> list[int]:
        """Absolute indices of :attr:`layers` (negative ones counted from the end), checked before any work."""
        return resolve_mend_layers(adapter, self.layers)

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.layers, (list, tuple)) or not self.layers:
            raise ValueError("layers must be a non-empty list of layer indices / fractions.")
        if self.rank < 1 or self.n_blocks < 0:
            raise ValueError("rank must be >= 1 and n_blocks >= 0.")
        if self.edit_lr <= 0 or self.lr <= 0 or self.alpha_lr < 0:
            raise ValueError("edit_lr and lr must be > 0, alpha_lr >= 0.")
        if self.steps < 0 or self.batch_size < 1 or self.max_equiv < 0 or self.max_loc < 0:
            raise ValueError("steps >= 0, batch_size >= 1, max_equiv >= 0 and max_loc >= 0 are required.")
        if self.max_equiv == 0 and not self.equiv_include_prompt:
            raise ValueError("The edit loss needs a prompt: max_equiv > 0 or equiv_include_prompt.")
        if self.c_edit < 0 or self.c_loc < 0 or self.grad_clip <= 0:
            raise ValueError("c_edit and c_loc must be >= 0 and grad_clip > 0.")
        if self.val_size < 0 or self.val_every < 0 or self.checkpoint_every < 1:
            raise ValueError("val_size, val_every >= 0 and checkpoint_every >= 1 are required.")


def resolve_mend_layers(adapter: "ModelAdapter", layers: Any) -> list[int]:
    """Sorted absolute layer indices (checked against the model)."""
    from factscope.edit.hparams import resolve_layer

    out = set()
    for layer in layers:
        if isinstance(layer, int) and not isinstance(layer, bool) and layer < 0:
            layer = adapter.n_layers + layer
            if layer < 0:
                raise ValueError(f"Layer {layer - adapter.n_layers} is out of range for {adapter.name} "
                                 f"with {adapter.n_layers} layers.")
        out.add(resolve_layer(adapter, layer))
    return sorted(out)


def key_fields(hp_: MENDHyperParams) -> dict[str, Any]:
    """The hyperparameters a trained editor depends on (network and training, not steps or reporting)."""
    return {k: v for k, v in hp_.to_dict().items() if k not in _UNKEYED and k != "layers"}
