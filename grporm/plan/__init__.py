"""What to run: experiment files to validated runs (experiment.py, declaration.py, measures.py), the checks
before any run (requirements.py, preflight.py), and the loops over a matrix of runs (matrix.py; sequential_runner.py:
seeds in batches until decided). run_options.py: the options of `grporm run`, shared by the CLI, the API and a relaunch."""
