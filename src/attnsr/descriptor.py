"""Compatibility name: the model descriptor is the :class:`~attnsr.runner.Runner`
(spandrel calls it a descriptor; attnsr's one inference contract lives in
:mod:`attnsr.runner`)."""

from __future__ import annotations

from attnsr.runner import Runner, describe

ModelDescriptor = Runner

__all__ = ["ModelDescriptor", "Runner", "describe"]
