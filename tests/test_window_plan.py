"""The window plan the cascade samples by and the join measure reads: windows, stage frames, segments."""
import pytest

from musiclm_jax import window_plan
from musiclm_jax.errors import UserError

# Semantic windows of 0.4 s (10 frames) every 0.2 s; coarse 0.16 s (4) every 0.08 s (2);
# fine 0.08 s (4 acoustic frames) every 0.04 s (2).
SMALL = window_plan.Windows(0.4, 0.2, 0.16, 0.08, 0.08, 0.04, 0.2, 0.2)


def test_plan_chunks_paper_windows_boundaries_and_continuation():
  # 60 s of semantic tokens: 30 s first, then 15 s at a time with 15 s of prefix (paper).
  assert window_plan.plan_chunks(1500, 750, 375) == [(0, 0, 750), (375, 750, 1125),
                                                     (750, 1125, 1500)]
  # A story boundary at 20 s ends the first window there; the next keeps a full window.
  assert window_plan.plan_chunks(1500, 750, 375, boundaries=[500]) == [
      (0, 0, 500), (125, 500, 875), (500, 875, 1250), (750, 1250, 1500)]
  # 5 s of prompt audio: the first window fills up to 30 s.
  assert window_plan.plan_chunks(800, 750, 375, start=125) == [(0, 125, 750), (50, 750, 800)]
  for plan in (window_plan.plan_chunks(97, 10, 3, 4, [30, 31, 60]),
               window_plan.plan_chunks(7, 10, 5)):
    starts, ends = [s for _, s, _ in plan], [e for _, _, e in plan]
    assert starts[1:] == ends[:-1] and all(e - p <= 10 for p, _, e in plan)


def test_stage_chunks_count_each_stages_frames_and_only_conditioned_stages_end_at_segments():
  # 0.6 s = 15 semantic frames, a segment boundary at frame 6 (0.24 s): the first window
  # ends there, the next takes a stride (5) past it, the last ends with the music.
  assert window_plan.stage_chunks(SMALL, "semantic", 15, boundaries=(6,)) == [
      (0, 0, 6), (1, 6, 11), (5, 11, 15)]
  assert window_plan.stage_chunks(SMALL, "coarse", 15, boundaries=(6,))[:4] == [
      (0, 0, 4), (2, 4, 6), (4, 6, 8), (6, 8, 10)]
  # Fine: 30 acoustic frames in windows of 4 every 2, the boundary ignored.
  fine = window_plan.stage_chunks(SMALL, "fine", 15, boundaries=(6,))
  assert fine[0] == (0, 0, 4) and fine[-1] == (26, 28, 30)
  assert [start for _, start, _ in fine] == [0] + list(range(4, 30, 2))
  # Continuing 5 semantic frames of prompt audio: fine starts at acoustic frame 10.
  assert window_plan.stage_chunks(SMALL, "fine", 15, start=5)[0] == (8, 10, 12)
  assert window_plan.stage_chunks(SMALL, "semantic", 15, start=5)[0] == (0, 5, 10)


def test_frames_segments_and_window_errors():
  assert window_plan.num_semantic_frames(0.79) == 20  # a partial last frame counts
  assert window_plan.num_semantic_frames(2.0) == 50  # float error does not add a frame
  assert window_plan.segment_boundaries((15.0,)) == ()
  assert window_plan.segment_boundaries((1.0, 0.5, 2.0)) == (25, 38)
  assert window_plan.stage_boundaries("fine", (25,)) == ()
  assert window_plan.stage_boundaries("coarse", (25,)) == (25,)
  assert window_plan.Windows().frames("semantic") == (750, 375)  # the paper's 30 s every 15 s
  assert window_plan.Windows().frames("fine") == (150, 75)
  assert window_plan.Windows().frames("decode") == (500, 50)
  with pytest.raises(UserError, match="not a positive whole number of 40 ms frames"):
    window_plan.Windows(coarse_window_seconds=0.41).frames("coarse")
  with pytest.raises(UserError, match="more than max_length 512"):
    window_plan.Windows().check(512)
  # A 90 s semantic window is BOS + 2250 S + 12 M, as long as the paper's coarse window (BOS +
  # 250 S + 500 x 4 A + 12 M); a melody stage's window adds 30 melody frames of 24 levels.
  long_semantic = window_plan.Windows(semantic_window_seconds=90.0)
  long_semantic.check(2263)
  with pytest.raises(UserError, match="a semantic window is 2983 tokens, more than max_length 2263"):
    long_semantic.check(2263, {"semantic": "melody"})
