"""Results: per-episode records -> tables with 95% CIs, paired comparisons, leaderboard files, plots.

Builds everything from files alone (pandas, numpy, scipy, matplotlib; never torch, never a
learner). Modules: records (JSONL writer/reader), stats (CIs, paired tests), tables, schema
(result files), provenance (versions, git, hashes), leaderboard, plots, cli (validate /
leaderboard entry points). Import the module you need: this package imports nothing eagerly,
so `import results` stays cheap.
"""
