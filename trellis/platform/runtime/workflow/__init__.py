"""Workflows at run time: their documents (``documents``), the hook that holds every
write to them (``guard``) and firing transitions (``transitions``). The decisions are the
pure engine's (``trellis.platform.workflow``)."""

from __future__ import annotations

from trellis.platform.runtime.workflow import pending  # registers its hook
from trellis.platform.runtime.workflow.guard import moving, seeding

__all__ = ["moving", "pending", "seeding"]
