"""Discontinuity at window joins: does the audio jump where the cascade starts a new window?

  times = join_seconds(record["windows"], 60.0, "coarse")     # [joins] s: 10, 15, ..., 55
  figures = join_discontinuity(clips, 24_000, [times] * len(clips))
  figures["ratio"], figures["p_value"]

A long generation is stitched from windows (`window_plan`, as the cascade plans them);
each stage starts its later windows from a prefix of the previous one, and a
seam the prefix does not smooth over is a jump in the sound. The measure is
spectral flux: the L2 distance of the log magnitude spectra of consecutive
non-overlapping Hann-windowed frames of one acoustic frame (20 ms) each, so every
join falls on a frame boundary. Per stage, the ratio of the mean flux at the
boundaries of its joins to the mean flux at every boundary (1: the joins are as
smooth as anywhere else), over all clips pooled, with a one-sided permutation
p-value against as many random boundaries per clip. The first and last
`MARGIN_SECONDS` of a clip (onsets, endings) are neither joins nor drawn.

Real audio measured at the same join times shows what a signal without seams
scores (`joins_report`).
"""
from typing import NamedTuple, Sequence

import numpy as np

from musiclm_jax import musiclm_spec as spec
from musiclm_jax import window_plan

FRAME_SECONDS = 1 / spec.ACOUSTIC_RATE_HZ
MARGIN_SECONDS = 0.5
DRAWS = 2000
RELATIVE_FLOOR = 1e-3  # -60 dB below the clip's loudest bin


class Stitching(NamedTuple):
  """How one clip was generated: the cascade's windows (`dataclasses.asdict(window_plan.Windows())`,
  as results.jsonl records hold them) and its segments' seconds (one for a plain text line)."""
  windows: dict
  segment_seconds: tuple[float, ...]


def join_seconds(windows: dict | window_plan.Windows, duration_seconds: float, stage: str,
                 story_seconds: Sequence[float] = ()) -> np.ndarray:
  """The times [joins] (s) at which `stage` starts a new window in a clip of `duration_seconds`.

  story_seconds: a story's seconds per segment (summing to duration_seconds); () is one
  segment. A window that starts at a segment boundary is a change of prompt, not a seam,
  and is left out.
  """
  if stage not in spec.STAGES:
    raise ValueError(f"stage must be one of {spec.STAGES}, got {stage!r}")
  if story_seconds and not np.isclose(sum(story_seconds), duration_seconds):
    raise ValueError(f"story segments {tuple(story_seconds)} do not sum to {duration_seconds} s")
  if isinstance(windows, dict):
    windows = window_plan.Windows(**windows)
  boundaries = window_plan.segment_boundaries(story_seconds or (duration_seconds,))
  chunks = window_plan.stage_chunks(windows, stage, window_plan.num_semantic_frames(duration_seconds),
                                    boundaries=boundaries)
  segment_starts = window_plan.stage_boundaries(stage, boundaries)
  starts = [start for _, start, _ in chunks if start and start not in segment_starts]
  return np.asarray(starts, np.float64) / window_plan.frame_rate_hz(stage)


def boundary_flux(audio: np.ndarray, sample_rate_hz: int,
                  frame_seconds: float = FRAME_SECONDS) -> tuple[np.ndarray, np.ndarray]:
  """audio [time] -> (flux [frames - 1], boundary time (s) [frames - 1]): the L2 distance of
  log(floor + |rfft|) of consecutive non-overlapping Hann-windowed frames, and where they meet.

  The floor is RELATIVE_FLOOR of the clip's largest magnitude: with a fixed one, quiet
  background noise far below the music would dominate the distance between frames.
  """
  frame = round(frame_seconds * sample_rate_hz)
  frames = len(audio) // frame
  if frames < 2:
    return np.zeros(0), np.zeros(0)
  x = np.asarray(audio[:frames * frame], np.float64).reshape(frames, frame) * np.hanning(frame)
  magnitudes = np.abs(np.fft.rfft(x, axis=1))
  spectra = np.log(max(RELATIVE_FLOOR * magnitudes.max(), 1e-12) + magnitudes)
  return (np.linalg.norm(np.diff(spectra, axis=0), axis=1),
          np.arange(1, frames) * frame / sample_rate_hz)


def join_discontinuity(clips: Sequence[np.ndarray], sample_rate_hz: int,
                       join_times: Sequence[np.ndarray], *, draws: int = DRAWS,
                       seed: int = 0) -> dict | None:
  """Pooled flux at the joins over flux elsewhere, with its permutation p-value.

  clips: audio [time] each; join_times: each clip's joins [joins] (s). Returns {"ratio":
  mean flux at the boundaries nearest the joins / mean flux at every boundary, "p_value":
  (1 + draws whose mean flux at as many random boundaries per clip reaches the joins') /
  (1 + draws), "joins", "clips" (with joins)}; None when no clip has a join. Boundaries
  within MARGIN_SECONDS of a clip's ends are left out of all three: the ratio is 1 in
  expectation when the joins are no different from the boundaries drawn.
  """
  rng = np.random.default_rng(seed)
  frame_s = round(FRAME_SECONDS * sample_rate_hz) / sample_rate_hz  # boundary i is at (i + 1) frames
  pools, picked = [], []  # per clip: flux at its inner boundaries [n], which are joins [k]
  for audio, times in zip(clips, join_times):
    flux, boundary_s = boundary_flux(audio, sample_rate_hz)
    end_s = len(audio) / sample_rate_hz
    inner = (boundary_s >= MARGIN_SECONDS) & (boundary_s <= end_s - MARGIN_SECONDS)
    nearest = np.unique(np.rint(np.asarray(times) / frame_s).astype(np.int64) - 1)
    nearest = nearest[(nearest >= 0) & (nearest < len(flux))]
    is_join = np.zeros(len(flux), bool)
    is_join[nearest[inner[nearest]]] = True
    pools.append(flux[inner])
    picked.append(is_join[inner])
  joins = sum(int(p.sum()) for p in picked)
  if not joins:
    return None
  observed = sum(pool[p].sum() for pool, p in zip(pools, picked)) / joins
  null = np.zeros(draws)
  for pool, p in zip(pools, picked):
    k = int(p.sum())
    if k:
      # k distinct boundaries per draw: the k smallest of uniform keys.
      keys = rng.random((draws, len(pool)), dtype=np.float32)
      null += pool[np.argpartition(keys, k - 1, axis=1)[:, :k]].sum(axis=1)
  null /= joins
  return {"ratio": float(observed / np.mean(np.concatenate(pools))),
          "p_value": float((1 + np.sum(null >= observed)) / (1 + draws)),
          "joins": joins, "clips": sum(bool(p.any()) for p in picked)}


def joins_report(generated_clips: Sequence[np.ndarray], stitchings: Sequence[Stitching],
                 sample_rate_hz: int, baseline_clips: Sequence[np.ndarray],
                 baseline_sample_rate_hz: int, *, draws: int = DRAWS, seed: int = 0) -> dict | str:
  """{stage: {"generated": join_discontinuity, "real": the same of the baseline clips at the
  joins a clip of their length would have (None: they are too short)}} for every stage with
  joins in the generated clips, or one line saying why there are none.

  generated_clips [time] each with its Stitching; the baseline takes the first clip's windows
  (one musiclm-infer folder is one cascade's).
  """
  if not stitchings:
    return "no text or story line in the musiclm-infer folder"
  figures = {}
  for stage in spec.STAGES:
    times = [join_seconds(s.windows, sum(s.segment_seconds), stage,
                          s.segment_seconds if len(s.segment_seconds) > 1 else ())
             for s in stitchings]
    generated = join_discontinuity(generated_clips, sample_rate_hz, times, draws=draws, seed=seed)
    if generated is None:
      continue
    baseline_times = [join_seconds(stitchings[0].windows, len(a) / baseline_sample_rate_hz, stage)
                      for a in baseline_clips]
    figures[stage] = {"generated": generated,
                      "real": join_discontinuity(baseline_clips, baseline_sample_rate_hz,
                                                 baseline_times, draws=draws, seed=seed)}
  if not figures:
    shortest = min(spec.STAGES, key=lambda stage: stitchings[0].windows[f"{stage}_window_seconds"])
    return (f"no generated clip has a window join {MARGIN_SECONDS:g} s or more from its ends (the "
            f"shortest window, {shortest}, is {stitchings[0].windows[f'{shortest}_window_seconds']:g} "
            f"s): generate longer clips")
  return figures
