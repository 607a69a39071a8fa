"""Ghost network families built from configs."""

from ghostnas.models.ghostnet import GhostBottleneck, GhostModule, GhostNet, SqueezeExcite

__all__ = ["GhostBottleneck", "GhostModule", "GhostNet", "SqueezeExcite"]
