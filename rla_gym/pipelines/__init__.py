"""Pipelines: multi-step jobs that turn datasets and trained models into products.

``build_bundle``: a real dataset + a trained world model -> the artifacts bundle a dreamed env
loads (``rla-gym build-bundle``).

Modules are imported on use; importing this package imports nothing heavy.
"""

from __future__ import annotations
