"""Learning-rate tuning: the decision rules and the decision store (decisions.py), and the trials that train the
candidates (trials.py)."""
