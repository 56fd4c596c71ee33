"""Layers beyond the dense chain: batch and layer normalization, dropout with a given mask, named skip
connections, and the losses log-softmax + NLL, stable softmax cross-entropy, Huber and hinge."""
from .spec import BlockSpec, uses_blocks, from_mapping
from .engine import BlockDerivation, derive_blocks
from .check import check_blocks

__all__ = ["BlockSpec", "BlockDerivation", "derive_blocks", "check_blocks", "uses_blocks", "from_mapping"]
