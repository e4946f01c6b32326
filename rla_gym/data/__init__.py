"""Episodes, feature caches, training windows and data collection."""

from __future__ import annotations

from rla_gym.data.episodes import Episode, EpisodeStore, FeatureEpisode

__all__ = ["Episode", "EpisodeStore", "FeatureEpisode"]
