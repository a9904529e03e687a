"""Lightning callbacks that watch what the temperature does while training.

- :class:`TemperatureAnalysis`: uniformity, alignment, tolerance, positive vs top-10 negative
  similarities, effective rank of a probe set, every N epochs/steps.
- :class:`HardnessMonitor`: per-step hardness statistics of what the training loss compares.
"""

from lightly_temperature.callbacks.hardness_monitor import HardnessMonitor
from lightly_temperature.callbacks.temperature_analysis import (
    AVAILABLE_METRICS,
    TemperatureAnalysis,
)

__all__ = ["AVAILABLE_METRICS", "HardnessMonitor", "TemperatureAnalysis"]
