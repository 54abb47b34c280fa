"""Long-term coherence against length: how an embedding of consecutive windows moves over a clip.

  profile = clip_profile(window_embeddings)            # [windows, D], consecutive windows of one clip
  by_length = coherence_by_length([(seconds, window_embeddings), ...], window_seconds=3.0)

Per clip, over its windows (e.g. musicnn's 3 s windows, FAD's embedding):
  self_similarity [windows, windows]  cosine of every pair of windows
  drift [windows]                     1 - cosine to the first window: how far the clip has
                                      wandered from its start at each position
  steps [windows - 1]                 1 - cosine of neighbouring windows
A long generation that holds together drifts like real music of that length and
has no step far above its others; a join between generation windows that breaks
the music shows as one step far above the median step (`largest_step_ratio`),
without needing to know where the cascade's joins are.
"""
from typing import Sequence

import numpy as np


def clip_profile(window_embeddings: np.ndarray) -> dict[str, np.ndarray]:
  """window_embeddings [windows, D] -> self_similarity [windows, windows], drift [windows], steps [windows - 1]."""
  x = np.asarray(window_embeddings, np.float64)
  x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  similarity = x @ x.T
  return {"self_similarity": similarity, "drift": 1.0 - similarity[0],
          "steps": 1.0 - np.diagonal(similarity, offset=1)}


def largest_step_ratio(steps: np.ndarray) -> float:
  """The largest neighbour step over the median step (1: even steps; NaN: fewer than 2 steps)."""
  if len(steps) < 2:
    return float("nan")
  return float(np.max(steps) / max(np.median(steps), 1e-12))


def coherence_by_length(clips: Sequence[tuple[float, np.ndarray]], window_seconds: float) -> dict:
  """Clips grouped by length (whole seconds) -> per group: clip count, mean drift at each window
  start (seconds), mean neighbour step, mean largest-step ratio and mean self-similarity of
  distinct windows (None where a group's clips have one window). clips: (seconds, window
  embeddings [windows, D]) per clip."""
  groups: dict[int, list[dict]] = {}
  for seconds, embeddings in clips:
    groups.setdefault(int(round(seconds)), []).append(clip_profile(embeddings))
  result = {}
  for length_s, profiles in sorted(groups.items()):
    windows = min(len(p["drift"]) for p in profiles)
    off_diagonal = [p["self_similarity"][~np.eye(len(p["drift"]), dtype=bool)] for p in profiles]
    ratios = [largest_step_ratio(p["steps"]) for p in profiles]
    result[str(length_s)] = {
        "clips": len(profiles),
        "position_s": [i * window_seconds for i in range(windows)],
        "drift": np.mean([p["drift"][:windows] for p in profiles], axis=0).tolist(),
        "mean_step": float(np.mean(np.concatenate([p["steps"] for p in profiles]))) if windows > 1
                     else None,
        "largest_step_ratio": None if np.all(np.isnan(ratios)) else float(np.nanmean(ratios)),
        "self_similarity": float(np.mean(np.concatenate(off_diagonal))) if windows > 1 else None}
  return result
