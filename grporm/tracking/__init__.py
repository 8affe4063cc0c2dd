"""What a run reports as it goes: guarded W&B logging (tracker.py), W&B read-back, dashboard and sync
(wandb_tools.py), the lines a run prints (progress.py) and one-time notices (notices.py)."""
