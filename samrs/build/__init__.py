"""``samrs build``: plan -> sharded workers -> atomic commits -> finalize."""

from samrs.build.config import BuildConfig
from samrs.build.run import BuildError, BuildSummary, run_build

__all__ = ["BuildConfig", "BuildError", "BuildSummary", "run_build"]
