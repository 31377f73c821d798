"""MEND (Mitchell et al. 2022, "Fast Model Editing at Scale"): a trained gradient-to-edit network.

Usage::

    from factscope.edit.mend import train_mend, mend_edit
    train_mend(adapter, "../shared/data/counterfact/counterfact-train.json", steps=300)   # once per model
    delta = mend_edit(adapter, [request])            # or edit(adapter, [request], editor="mend")

Modules: ``hparams`` (settings), ``network`` (g), ``factors`` (gradient factors, hooked
edits), ``data`` (training examples), ``store`` (cache keys, checkpoints, editor files),
``training`` (the trainer), ``editor`` (the editor).
"""

from factscope.edit.mend.data import MENDDataError, MENDExample, load_examples
from factscope.edit.mend.editor import EDITOR, MENDNotTrainedError, delta_from_network, edit_with_mend, mend_edit
from factscope.edit.mend.hparams import MENDHyperParams, resolve_mend_layers
from factscope.edit.mend.network import MENDNetwork
from factscope.edit.mend.store import MENDCheckpointError
from factscope.edit.mend.training import TrainResult, train_mend

__all__ = [
    "MENDCheckpointError", "MENDDataError", "MENDExample", "MENDHyperParams", "MENDNetwork", "MENDNotTrainedError",
    "EDITOR", "TrainResult", "delta_from_network", "edit_with_mend", "load_examples", "mend_edit", "resolve_mend_layers", "train_mend",
]  # fmt: skip
