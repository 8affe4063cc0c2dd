"""Tiny name -> object registries (in the spirit of timm's model registry)."""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from grporm.errors import ConfigError

T = TypeVar("T")


def summary(doc: str) -> str:
    """The first paragraph of a docstring as one line (a first line alone can stop mid-sentence)."""
    return " ".join(doc.strip().split("\n\n")[0].split())


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._docs: dict[str, str] = {}

    def register(self, name: str, doc: str | None = None) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            text = doc if doc is not None else (getattr(obj, "__doc__", None) or "")
            self._docs[name] = summary(text)
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(sorted(self._items))}"
            ) from None

    def describe(self) -> dict[str, str]:
        return {name: self._docs[name] for name in sorted(self._items)}

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
