"""An example partbench plugin: see learners.py (a feature learner) and own_loop.py (own loop + score)."""
