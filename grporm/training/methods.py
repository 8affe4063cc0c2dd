"""Methods by name: everything a method means, in one entry (docs/method.md, 'Baseline and reference rows').

A run's `method` is looked up here by the config validator, the runner (train or not, frozen
backbone or not, a head for the classes or not), the objective builder, the divergence message and
the report (label, row order). Adding a method is adding one `register(Method(...))`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from grporm.registry import Registry


@dataclass(frozen=True)
class Method:
    """name: the config value; label: its name in tables; objective: the OBJECTIVES entry it trains
    with (None: it does not train); frozen_backbone: only the head trains; has_head: the model has a
    classifier for the data set's classes (a pretrained backbone has none: no head accuracy, no ECE);
    divergence_hint(run): what to change first after a non-finite loss, or None."""

    name: str
    label: str
    objective: str | None
    frozen_backbone: bool = False
    has_head: bool = True
    divergence_hint: Callable[[object], str | None] | None = None
    doc: str = ""

    @property
    def trains(self) -> bool:
        return self.objective is not None


METHODS: Registry[Method] = Registry("method")
_ORDER: list[str] = []  # registration order = the paper's row order in tables


def register(method: Method) -> Method:
    METHODS.register(method.name, method.doc)(method)
    _ORDER.append(method.name)
    return method


def method(name: str) -> Method:
    """The entry of `name`; ConfigError naming the choices when there is none."""
    return METHODS.get(name)


def method_names() -> tuple[str, ...]:
    return tuple(_ORDER)


def method_rank(name: str) -> tuple[int, str]:
    """Sort key: registration order first, unknown methods after, alphabetically."""
    return (_ORDER.index(name) if name in _ORDER else len(_ORDER), name)


def method_label(name: str) -> str:
    """The table label of `name`; an unknown name (e.g. a record of a removed method) shows as itself."""
    return METHODS.get(name).label if name in METHODS else name


def _grpo_rm_hint(run) -> str | None:
    # docs/method.md, 'Dual clip (not in the paper)': inner steps past the first can overflow the ratio.
    if run.grpo_rm.inner_steps > 1 and run.grpo_rm.dual_clip is None:
        return "set grpo_rm.dual_clip=3 (with inner_steps > 1 the policy ratio can overflow)"
    return None


register(Method("pretrained", "Pretrained", objective=None, has_head=False,
                doc="the backbone as loaded, no training (reference row; no head for these classes)"))
register(Method("linear_probe", "Linear probe", objective="ce", frozen_backbone=True,
                doc="a linear head trained with CE on the frozen backbone"))
register(Method("ce", "CE", objective="ce", doc="cross-entropy fine-tuning of backbone and head (the baseline)"))
register(Method("grpo_rm", "GRPO-RM", objective="grpo_rm", divergence_hint=_grpo_rm_hint,
                doc="GRPO-RM fine-tuning of backbone and head"))
