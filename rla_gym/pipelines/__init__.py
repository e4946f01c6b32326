"""Pipelines: multi-step jobs that turn datasets and trained models into products.

``build_bundle``: a real dataset + a trained world model -> the artifacts bundle a dreamed env
loads (``rla-gym build-bundle``).
``world_action``: behaviour cloning from a dataset, optionally with the RLA latent head that lets
action-free videos train the policy (``rla-gym train-bc``).
``wmrl``: BC base -> residual PPO in the dream -> imagined and real evaluation (the main job).

Modules are imported on use; importing this package imports nothing heavy.
"""

from __future__ import annotations
