"""grporm: open reproduction suite for GRPO-RM (arXiv 2511.15256).

Python API: ``grporm.load_runs(*results)``, ``grporm.run(experiment, overrides=[...], results=...)``,
``grporm.verdict(*results)`` (grporm.api), ``grporm.load_model(run_folder)`` (grporm.training.saved: a finished
run's fine-tuned backbone and head, in eval mode). They load on first use, so ``import grporm`` imports
neither torch nor pandas.
"""
import importlib

__version__ = "0.1.0"

# name -> the module that holds it, imported on first access (PEP 562)
LAZY = {"load_runs": "grporm.api", "run": "grporm.api", "verdict": "grporm.api", "load_model": "grporm.training.saved"}
__all__ = ["__version__", *LAZY]


def __getattr__(name: str):
    if name in LAZY:
        return getattr(importlib.import_module(LAZY[name]), name)
    raise AttributeError(f"module 'grporm' has no attribute {name!r}")
