"""The command line: one module per command (`register` its arguments, `main` runs it);
benchmark.cli.main builds the parser and turns user errors into one line and exit code 2."""
