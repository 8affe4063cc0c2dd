"""Process plumbing: run and tuning locks (locks.py), SIGINT/SIGTERM (interrupts.py), DDP (distributed.py), thread
allocation (allocator.py), every seed by purpose (seeding.py), and Slurm/local job arrays (launch.py)."""
