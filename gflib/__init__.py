"""gflib: gradient flow in sparse neural networks (Tessera, Hooker & Rosman 2021), reproduced.

The public API, for a sparse PyTorch model of your own:

- :func:`measure` / :func:`measure_table`: EGF and the gradient norms of a model on a batch,
  whole-model or per layer; the masks are found where the model keeps them (:func:`masks_of`:
  ``torch.nn.utils.prune``, ``parametrize`` / ``torch.ao.pruning``, gflib's :func:`apply_masks`)
  or passed as a dict.
- :class:`FlowMonitor`: the same measures recorded anywhere in your own training loop, as a
  tidy table and a figure (``gflib.lightning_flow.FlowCallback`` for Lightning).
- :func:`matched_pairs` / :func:`pairs_table`: SC-SDC sparse/dense pairs with equal active
  weights per layer for any ``width -> nn.Module`` builder, and the regime check.
- :class:`RunConfig` / :func:`run`: one run of the study's training loop.

``gflib <command>`` (:mod:`gflib.cli`) runs the book's tools.
"""
__version__ = "0.1.0"

from .config import RunConfig
from .flow import measure, measure_table
from .found_masks import masks_of
from .masks import apply_masks, random_masks
from .monitor import FlowMonitor
from .scsdc import matched_pairs, pairs_table
from .train import run

__all__ = ["FlowMonitor", "RunConfig", "apply_masks", "masks_of", "matched_pairs", "measure",
           "measure_table", "pairs_table", "random_masks", "run", "__version__"]
