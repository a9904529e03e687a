"""Lightning callbacks that watch what the temperature does while training.

- :class:`TemperatureAnalysis`: uniformity, alignment, tolerance, positive vs top-10 negative
  similarities, effective rank of a probe set, every N epochs/steps.
- :class:`HardnessMonitor`: cheap per-step statistics of the training loss's similarities.
"""

from lightly_temperature.callbacks.hardness_monitor import HardnessMonitor, find_pairwise_loss
from lightly_temperature.callbacks.temperature_analysis import (
    AVAILABLE_METRICS,
    TemperatureAnalysis,
)

__all__ = ["AVAILABLE_METRICS", "HardnessMonitor", "TemperatureAnalysis", "find_pairwise_loss"]
