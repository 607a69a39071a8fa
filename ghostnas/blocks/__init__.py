"""Block kinds: one module per block type, found by name through one registry.

See :mod:`ghostnas.blocks.base` for what a kind provides. Shipped kinds: ``ghost`` (GhostNet V1
bottleneck, :mod:`ghostnas.blocks.ghost`) and every other module in this package.
"""

from ghostnas.blocks.base import (
    BlockKind,
    BlockRecord,
    BlockSpaceRecord,
    Context,
    Counter,
    ResolvedBlockBase,
    block_kind,
    block_kinds,
    register_block_kind,
)

__all__ = [
    "BlockKind",
    "BlockRecord",
    "BlockSpaceRecord",
    "Context",
    "Counter",
    "ResolvedBlockBase",
    "block_kind",
    "block_kinds",
    "register_block_kind",
]
