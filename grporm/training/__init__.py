"""One run: the method registry (methods.py), its splits, model and initial weights (build.py), the one training
loop (train.py), checkpoints (checkpoints.py), the run from build to record (runner.py) and a finished run's model
loaded back (saved.py)."""
