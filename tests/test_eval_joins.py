"""Window joins: join times by hand, a stitched tone jumps at its seams only, p-values against
exact enumeration, short clips have no joins, and the report with a real baseline."""
import dataclasses

import numpy as np
import pytest

from musiclm_jax import window_plan
from musiclm_jax.eval import joins
from musiclm_jax.eval import report as report_lib

RATE_HZ = 24_000
# Small windows for short test clips: joins every second (fine), from 2 s (coarse), at 4 s (semantic).
SMALL_WINDOWS = dataclasses.asdict(window_plan.Windows(
    semantic_window_seconds=4.0, semantic_stride_seconds=2.0, coarse_window_seconds=2.0,
    coarse_stride_seconds=1.0, fine_window_seconds=1.0, fine_stride_seconds=1.0))


def _stitched(rng, pieces, noise=1e-3):
  """Pieces of 1 s of sine waves of random frequency and phase, joined: seams at 1, 2, ... s.
  The noise (-54 dB) keeps the flux between frames of one piece above 0."""
  t = np.arange(RATE_HZ) / RATE_HZ
  tone = np.concatenate([0.5 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t + rng.uniform(0, 2 * np.pi))
                         for _ in range(pieces)])
  return (tone + noise * rng.normal(size=len(tone))).astype(np.float32)


def _steady(rng, seconds, noise=1e-3):
  """One sine wave throughout: no seam anywhere."""
  t = np.arange(round(seconds * RATE_HZ)) / RATE_HZ
  return (0.5 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)
          + noise * rng.normal(size=len(t))).astype(np.float32)


def test_join_times_of_the_default_windows_in_a_30_s_clip():
  # Windows of 30/10/3 s advancing by 15/5/1.5 s: the semantic window covers the whole clip,
  # coarse starts new windows after its first 10 s every 5 s, fine after 3 s every 1.5 s.
  expected = {"semantic": [], "coarse": [10.0, 15.0, 20.0, 25.0],
              "fine": [3.0, 4.5, 6.0, 7.5, 9.0, 10.5, 12.0, 13.5, 15.0, 16.5, 18.0, 19.5, 21.0, 22.5,
                       24.0, 25.5, 27.0, 28.5]}
  for stage, times in expected.items():
    np.testing.assert_allclose(joins.join_seconds(window_plan.Windows(), 30.0, stage), times, err_msg=stage)
    # The dict form musiclm-infer records hold.
    np.testing.assert_allclose(
        joins.join_seconds(dataclasses.asdict(window_plan.Windows()), 30.0, stage), times, err_msg=stage)
  # A story of two 15 s segments: the coarse window after 10 s ends at the segment boundary,
  # and the window starting there is a prompt change, not a seam; fine windows ignore segments.
  np.testing.assert_allclose(joins.join_seconds(window_plan.Windows(), 30.0, "coarse", (15.0, 15.0)),
                             [10.0, 20.0, 25.0])
  np.testing.assert_allclose(joins.join_seconds(window_plan.Windows(), 30.0, "semantic", (15.0, 15.0)), [])
  np.testing.assert_allclose(joins.join_seconds(window_plan.Windows(), 30.0, "fine", (15.0, 15.0)),
                             expected["fine"])


def test_a_stitched_tone_jumps_at_its_seams_and_nowhere_else():
  rng = np.random.default_rng(0)
  clips = [_stitched(rng, 8) for _ in range(3)]
  seams = [np.arange(1.0, 8.0)] * len(clips)
  at_seams = joins.join_discontinuity(clips, RATE_HZ, seams)
  assert at_seams["ratio"] > 3 and at_seams["p_value"] < 0.01, at_seams
  assert at_seams["joins"] == 21 and at_seams["clips"] == 3
  between = joins.join_discontinuity(clips, RATE_HZ, [s - 0.5 for s in seams])
  assert 0.7 < between["ratio"] < 1.3 and between["p_value"] > 0.05, between
  assert joins.join_discontinuity(clips, RATE_HZ, seams) == at_seams  # deterministic given the seed


def test_one_join_p_value_is_the_share_of_boundaries_as_rough():
  # With one join in one clip, the exact p-value is the share of inner boundaries whose flux
  # reaches the join's: enumerated here from boundary_flux, sampled by the permutation test.
  rng = np.random.default_rng(1)
  clip = _stitched(rng, 4, noise=1e-3)
  flux, times = joins.boundary_flux(clip, RATE_HZ)
  assert len(flux) == 4 * 50 - 1 and times[0] == pytest.approx(0.02) and times[-1] == pytest.approx(3.98)
  is_inner = (times >= 0.5) & (times <= 3.5)
  inner = flux[is_inner]
  # The join is the inner boundary of median flux, so its p-value is near 1/2.
  join = times[is_inner][np.argsort(inner)[len(inner) // 2]]
  exact = np.mean(inner >= flux[np.argmin(np.abs(times - join))])
  result = joins.join_discontinuity([clip], RATE_HZ, [np.array([join])], draws=20000, seed=3)
  assert result["p_value"] == pytest.approx(exact, abs=0.015) and 0.4 < exact < 0.6
  assert result["ratio"] == pytest.approx(flux[np.argmin(np.abs(times - join))] / inner.mean())


def test_clips_shorter_than_a_window_have_no_joins():
  assert joins.join_seconds(window_plan.Windows(), 2.5, "fine").size == 0
  rng = np.random.default_rng(2)
  short = [_stitched(rng, 2), _stitched(rng, 2)]
  assert joins.join_discontinuity(short, RATE_HZ, [np.zeros(0)] * 2) is None
  reason = joins.joins_report(short, [joins.Stitching(dataclasses.asdict(window_plan.Windows()), (2.0,))] * 2,
                              RATE_HZ, short, RATE_HZ)
  assert isinstance(reason, str) and "shortest window, fine, is 3 s" in reason
  # A 3.2 s clip has a fine join at 3 s, too near its end to count.
  clip = _stitched(rng, 4)[:round(3.2 * RATE_HZ)]
  assert joins.join_discontinuity([clip], RATE_HZ, [joins.join_seconds(window_plan.Windows(), 3.2, "fine")]) is None


def test_report_gives_generated_and_real_figures_per_stage(tmp_path):
  rng = np.random.default_rng(4)
  generated = [_stitched(rng, 6) for _ in range(3)]
  real = [_steady(rng, 3.0) for _ in range(4)]  # shorter than the semantic window
  figures = joins.joins_report(generated, [joins.Stitching(SMALL_WINDOWS, (6.0,))] * 3, RATE_HZ,
                               real, RATE_HZ)
  assert list(figures) == ["semantic", "coarse", "fine"]
  # Every join of these windows is a seam of the stitched clips: 4 s; 2, 3, 4, 5 s; 1, ..., 5 s.
  assert [figures[stage]["generated"]["joins"] for stage in figures] == [3, 12, 15]
  for stage in figures:
    assert figures[stage]["generated"]["ratio"] > 3, (stage, figures[stage])
  assert figures["fine"]["generated"]["p_value"] < 0.01
  # The real clips are steady: joins at 2 s (coarse) and 1, 2 s (fine) are like anywhere else.
  assert figures["semantic"]["real"] is None
  assert figures["coarse"]["real"]["joins"] == 4 and figures["fine"]["real"]["joins"] == 8
  for stage in ("coarse", "fine"):
    assert 0.7 < figures[stage]["real"]["ratio"] < 1.3, (stage, figures[stage])
  report = {"sets": {"generated": {"title": "generated", "clips": 3, "paired_clips": 0}},
            "metrics": {}, "unavailable": {}, "sets_not_given": {}, "notes": {}, "fad_curves": {},
            "joins": figures}
  line = next(line for line in report_lib.headline(report).splitlines() if line.startswith("window joins"))
  assert "coarse ratio" in line and "semantic ratio" in line and "real no joins" in line
  page = (tmp_path / "eval.html")
  report_lib.write_html(str(page), report)
  assert "Window joins" in page.read_text()
