"""docs/BENCHMARKS.md and its plots from one run's results. Only what was
measured in this run is written; anything missing says "not measured".

The targets are data (bench/report/targets.py); facts.py records the machine,
the versions and the profile; tables.py, analysis.py and plots.py write the
parts; ``write`` puts them together."""

from bench.report.document import write
from bench.report.facts import hot_spots, machine, versions

__all__ = ["hot_spots", "machine", "versions", "write"]
