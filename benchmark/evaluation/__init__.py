"""Evaluation of learners on episodes: feature learners over cached features (batched), image
learners over episode pixels, and scoring of a method that runs its own loop. What is evaluated
in which order, and where the records go, is benchmark.run's business."""
