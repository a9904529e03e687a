"""Lightning callbacks that watch what the temperature does while training.

- :class:`TemperatureAnalysis`: uniformity, alignment, tolerance, positive vs top-10 negative
  similarities, effective rank of a probe set, every N epochs/steps.
- :class:`HardnessMonitor`: per-step hardness statistics of what the training loss compares.
- :class:`TemperatureSchedule`: advances the module's temperature schedules (epochs or steps).
"""

from lightly_temperature.callbacks.hardness_monitor import HardnessMonitor
from lightly_temperature.callbacks.temperature_analysis import (
    AVAILABLE_METRICS,
    TemperatureAnalysis,
)
from lightly_temperature.callbacks.temperature_schedule import TemperatureSchedule

__all__ = ["AVAILABLE_METRICS", "HardnessMonitor", "TemperatureAnalysis", "TemperatureSchedule"]
