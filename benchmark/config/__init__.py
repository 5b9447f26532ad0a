"""The run configuration: every section's dataclass and choice list, strict YAML reading,
`--set` overrides and the checks a config passes before any work starts.

The lowest room of benchmark/: it imports no other room (and neither torch nor timm), so the
command line can read and check a config fast. `load_config(path_or_name, overrides) -> RunConfig`
is the entry point; ConfigError is what a bad config raises.
"""

from benchmark.config.errors import ConfigError
from benchmark.config.run import CHOICES, LearnerConfig, RunConfig, config_from_dict, load_config

__all__ = [
    "CHOICES",
    "ConfigError",
    "LearnerConfig",
    "RunConfig",
    "config_from_dict",
    "load_config",
]
