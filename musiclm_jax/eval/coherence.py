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

Per window position (`per_window_metrics`): FAD and MCC of each window of the
long clips against its prompt, as a function of where in the clip it starts.
"""
from typing import Any, Sequence

import numpy as np

from musiclm_jax.audio import io as audio_io
from musiclm_jax.eval import fad


def unit_rows(x: np.ndarray) -> np.ndarray:
  """x [..., D] with every row scaled to unit length: their dot products are cosines."""
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def clip_profile(window_embeddings: np.ndarray) -> dict[str, np.ndarray]:
  """window_embeddings [windows, D] -> self_similarity [windows, windows], drift [windows], steps [windows - 1]."""
  x = unit_rows(np.asarray(window_embeddings, np.float64))
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


def windows_per_clip(window_embeddings: np.ndarray, clip_of_window: np.ndarray) -> list[np.ndarray]:
  """Stacked window embeddings [windows, D] of consecutive clips, and clip_of_window [windows]
  (whose each is) -> each clip's [its windows, D], in clip order."""
  clips = int(clip_of_window.max()) + 1
  return [window_embeddings[clip_of_window == i] for i in range(clips)]


def per_window_metrics(audio: Sequence[np.ndarray], sample_rate_hz: int, texts: Sequence[str],
                       window_seconds: float, tagger: Any, real_windows: np.ndarray,
                       mulan: Any | None) -> dict | None:
  """Metrics of each `window_seconds` window position of the clips longer than one window.

  audio [time] per clip, generated for texts[i]; tagger: a musicnn tagger
  (`eval/musicnn.MusicnnTagger`); mulan: a `tokenizers.conditioning.MuLanTokenizer` or None.
  Returns {"window_seconds", "clips", "start_s": [...], "windows": [clips per position],
  "MCC": [...] (None without MuLan), "FAD_musicnn": [...] (None where a position has fewer
  musicnn rows than a covariance needs), "fad_rows": [...]}, or None when no clip is longer.
  A position's FAD is its windows' musicnn rows against `real_windows` [rows, D], the real
  set's; its MCC the mean cosine of each window's audio and its clip's prompt text.
  """
  window = round(window_seconds * sample_rate_hz)
  long_clips = [i for i, clip in enumerate(audio) if len(clip) > window]
  if not long_clips:
    return None
  positions: list[list[tuple[int, np.ndarray]]] = []
  for i in long_clips:
    for p in range(len(audio[i]) // window):
      if p == len(positions):
        positions.append([])
      positions[p].append((i, audio[i][p * window:(p + 1) * window]))
  result = {"window_seconds": window_seconds, "clips": len(long_clips),
            "start_s": [p * window_seconds for p in range(len(positions))],
            "windows": [len(at) for at in positions], "MCC": [], "FAD_musicnn": [], "fad_rows": []}
  for at in positions:
    rows = np.concatenate([tagger(clip, sample_rate_hz)["mean_pool"] for _, clip in at])
    result["fad_rows"].append(len(rows))
    result["FAD_musicnn"].append(fad.frechet_audio_distance(real_windows, rows)
                                 if len(rows) >= fad.MIN_CLIPS else None)
    if mulan is None:
      result["MCC"].append(None)
      continue
    resampled = [audio_io.resample(clip, sample_rate_hz, mulan.sample_rate_hz) for _, clip in at]
    cosine = np.sum(unit_rows(mulan.text_embeddings([texts[i] for i, _ in at]))
                    * unit_rows(mulan.audio_embeddings(np.stack(resampled))), axis=-1)
    result["MCC"].append(float(np.mean(cosine)))
  return result
