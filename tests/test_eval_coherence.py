"""Coherence profiles: drift and steps by hand on known embeddings, a broken join stands out, grouping by length."""
import numpy as np
import pytest

from musiclm_jax.eval import coherence


def test_profile_of_a_rotating_embedding_is_its_angles():
  # Window i points at angle i * 10 degrees: drift is 1 - cos(10 i), every step 1 - cos(10).
  angles = np.deg2rad(10.0 * np.arange(5))
  embeddings = 3.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
  profile = coherence.clip_profile(embeddings)
  np.testing.assert_allclose(profile["drift"], 1 - np.cos(angles), atol=1e-12)
  np.testing.assert_allclose(profile["steps"], 1 - np.cos(np.deg2rad(10.0)), atol=1e-12)
  np.testing.assert_allclose(np.diagonal(profile["self_similarity"]), 1.0)
  assert coherence.largest_step_ratio(profile["steps"]) == pytest.approx(1.0)


def test_a_broken_join_shows_as_a_large_step():
  rng = np.random.default_rng(0)
  first, second = rng.normal(size=16), rng.normal(size=16)
  steady = first + 0.05 * rng.normal(size=(10, 16))
  broken = np.concatenate([steady[:5], second + 0.05 * rng.normal(size=(5, 16))])
  assert coherence.largest_step_ratio(coherence.clip_profile(broken)["steps"]) > 10
  assert coherence.largest_step_ratio(coherence.clip_profile(steady)["steps"]) < 5
  assert coherence.clip_profile(broken)["drift"][-1] > 5 * coherence.clip_profile(steady)["drift"][-1]


def test_grouped_by_length():
  rng = np.random.default_rng(1)
  clips = [(9.8, rng.normal(size=(3, 4))), (10.2, rng.normal(size=(3, 4))), (30.0, rng.normal(size=(10, 4))),
           (3.0, rng.normal(size=(1, 4)))]
  result = coherence.coherence_by_length(clips, window_seconds=3.0)
  assert sorted(result, key=int) == ["3", "10", "30"]
  assert result["10"]["clips"] == 2 and result["10"]["position_s"] == [0.0, 3.0, 6.0]
  expected = np.mean([coherence.clip_profile(e)["drift"] for _, e in clips[:2]], axis=0)
  np.testing.assert_allclose(result["10"]["drift"], expected)
  assert len(result["30"]["drift"]) == 10
  assert result["3"]["drift"] == [0.0] and result["3"]["mean_step"] is None


def test_windows_per_clip_splits_stacked_windows_in_clip_order():
  embeddings = np.arange(12.0).reshape(6, 2)
  per_clip = coherence.windows_per_clip(embeddings, np.array([0, 0, 0, 1, 2, 2]))
  assert len(per_clip) == 3
  np.testing.assert_array_equal(per_clip[0], embeddings[:3])
  np.testing.assert_array_equal(per_clip[1], embeddings[3:4])
  np.testing.assert_array_equal(per_clip[2], embeddings[4:])
