"""The temperature study: train SimCLR / MoCo for each loss x temperature and evaluate them.

Example:
    >>> from lightly_temperature.study import StudyConfig, run_study
    >>> report = run_study(StudyConfig(temperatures=(0.07, 1.0), epochs=5))
"""

from lightly_temperature.study.config import RunSpec, StudyConfig, paper_preset
from lightly_temperature.study.results import COLUMNS
from lightly_temperature.study.runner import run_study

__all__ = ["COLUMNS", "RunSpec", "StudyConfig", "paper_preset", "run_study"]
