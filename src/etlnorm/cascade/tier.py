"""The tier contract: what a tier acts on, and how the normalizer hands it exactly those items.

A tier declares the items it wants (``ActsOn``); ``run_tier`` selects them from the batch and
nothing else, so a term's answer never depends on which other terms share its batch. Heavy
parts (a model, an index) load on first use; if loading fails, the tier is switched off with
one log line and its items go on to the next tier.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from etlnorm.cascade.answer import WorkItem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActsOn:
    """Which items a tier is given: undecided ones, ones decided by given methods, and whether
    an item must carry candidates (from an earlier tier) to be worth giving."""

    undecided: bool = True
    decided_by: frozenset[str] = field(default_factory=frozenset)
    needs_candidates: bool = False

    def wants(self, item: WorkItem) -> bool:
        if self.needs_candidates and not (item.candidates or (item.decision and item.decision.candidates)):
            return False
        if item.decision is None:
            return self.undecided
        return item.decision.method in self.decided_by


class Tier(Protocol):
    """A tier of the cascade: lexical match, retrieval, LLM generation, LLM reranking."""

    name: str
    acts_on: ActsOn

    def __call__(self, items: list[WorkItem]) -> None:
        """Act in place on ``items``, which are exactly those ``acts_on`` wants."""
        ...


class LazyTier:
    """A tier built on first use; a failed build switches it off once, loudly, not once per item."""

    def __init__(self, name: str, acts_on: ActsOn, build: Callable[[], Tier]) -> None:
        self.name, self.acts_on, self._build = name, acts_on, build
        self._tier: Tier | None = None
        self.failed: str | None = None

    def __call__(self, items: list[WorkItem]) -> None:
        if self.failed is not None:
            return
        if self._tier is None:
            try:
                self._tier = self._build()
            except Exception as exc:
                self.failed = f"{type(exc).__name__}: {exc}"
                log.error("%s tier could not load (%s): switched off; its terms go to the next tier",
                          self.name, self.failed)  # fmt: skip
                return
        self._tier(items)


def run_tier(tier: Tier, items: list[WorkItem]) -> None:
    """Give ``tier`` the items it acts on; if it fails on them, retry one by one so a bad term
    costs only itself."""
    todo = [item for item in items if tier.acts_on.wants(item)]
    if not todo:
        return
    try:
        tier(todo)
    except Exception:
        log.exception("%s tier failed on a batch of %d; retrying item by item", tier.name, len(todo))
        for item in todo:
            try:
                tier([item])
            except Exception as exc:
                log.warning("%s tier failed on %r: %s", tier.name, item.text[:80], exc)
