"""A run, from config to result file: the orchestrator (benchmark.run.orchestrator), the objects
each config section becomes, the evaluation loop that writes records, the run folder and its
identity, the report, several training seeds, the step timer, and `doctor`."""
