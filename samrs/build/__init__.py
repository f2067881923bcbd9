"""``samrs build``: plan -> sharded workers -> atomic commits -> finalize."""

from samrs.build.config import BuildConfig
from samrs.build.run import BuildError, BuildInterrupted, BuildSummary, run_build

__all__ = ["BuildConfig", "BuildError", "BuildInterrupted", "BuildSummary", "run_build"]
