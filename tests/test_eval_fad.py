"""FAD: zero on itself, the Gaussian closed form, singular covariances, the N -> infinity fit."""
import numpy as np
import pytest
import scipy.linalg

from musiclm_jax.errors import UserError
from musiclm_jax.eval import fad


def _exact_samples(mean, covariance, num_clips, seed):
  """[num_clips, dim] samples whose sample mean and (unbiased) covariance are exactly `mean`, `covariance`."""
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(num_clips, len(mean)))
  z -= z.mean(axis=0)
  z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # sample covariance -> I
  return z @ np.linalg.cholesky(covariance).T + mean


def _random_covariance(dim, seed):
  a = np.random.default_rng(seed).normal(size=(dim, dim))
  return a @ a.T / dim + 0.1 * np.eye(dim)


def test_fad_of_a_set_with_itself_is_zero():
  embeddings = np.random.default_rng(0).normal(size=(50, 16)) * 3 + 1
  assert fad.frechet_audio_distance(embeddings, embeddings) == pytest.approx(0.0, abs=1e-9)


def test_fad_of_two_gaussians_matches_the_closed_form():
  # Diagonal covariances commute: tr((S1 S2)^1/2) = sum sqrt(s1 s2) by hand.
  mean_1, mean_2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.5])
  var_1, var_2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
  expected = np.sum((mean_1 - mean_2) ** 2) + np.sum((np.sqrt(var_1) - np.sqrt(var_2)) ** 2)
  got = fad.frechet_audio_distance(_exact_samples(mean_1, np.diag(var_1), 40, 0),
                                   _exact_samples(mean_2, np.diag(var_2), 60, 1))
  assert got == pytest.approx(expected, rel=1e-9)


def test_fad_matches_scipy_sqrtm_on_well_conditioned_covariances():
  dim = 6
  covariance_1, covariance_2 = _random_covariance(dim, 0), _random_covariance(dim, 1)
  mean_1, mean_2 = np.zeros(dim), np.full(dim, 0.5)
  reference = (np.sum((mean_1 - mean_2) ** 2) + np.trace(covariance_1) + np.trace(covariance_2)
               - 2 * np.trace(scipy.linalg.sqrtm(covariance_1 @ covariance_2)).real)
  got = fad.frechet_audio_distance(_exact_samples(mean_1, covariance_1, 30, 2),
                                   _exact_samples(mean_2, covariance_2, 30, 3))
  assert got == pytest.approx(reference, rel=1e-9)


def test_singular_covariances_give_finite_exact_distances():
  # Rank-3 covariance in 32 dimensions plus a 1e-12 ridge: sqrtm of S1 S2 is ill-posed here.
  a = np.random.default_rng(0).normal(size=(32, 3))
  covariance = a @ a.T + 1e-12 * np.eye(32)
  shift = np.linspace(-1, 1, 32)
  assert fad.frechet_distance(np.zeros(32), covariance, shift, covariance) == pytest.approx(
      shift @ shift, rel=1e-6)
  # S2 = 4 S1: tr(S1) + 4 tr(S1) - 2 tr(2 S1) = tr(S1).
  assert fad.frechet_distance(np.zeros(32), covariance, np.zeros(32), 4 * covariance) == pytest.approx(
      np.trace(covariance), rel=1e-6)
  # Rounding can leave a covariance slightly indefinite: no NaN from the negative eigenvalues.
  indefinite = covariance - 2e-12 * np.eye(32)
  assert fad.frechet_distance(np.zeros(32), indefinite, shift, indefinite) == pytest.approx(
      shift @ shift, rel=1e-6)
  # Fewer clips than dimensions: the sample covariance is singular, the distance to itself is still 0.
  few = np.random.default_rng(1).normal(size=(10, 64))
  assert fad.frechet_audio_distance(few, few) == pytest.approx(0.0, abs=1e-8)


def test_too_few_clips_and_mismatched_embedders_are_one_line_errors():
  with pytest.raises(UserError, match="too few for a covariance"):
    fad.frechet_audio_distance(np.zeros((1, 4)), np.ones((5, 4)))
  with pytest.raises(UserError, match="same embedder"):
    fad.frechet_audio_distance(np.ones((5, 4)), np.ones((5, 3)))
  with pytest.raises(UserError, match="NaN"):
    fad.frechet_audio_distance(np.full((5, 4), np.nan), np.ones((5, 4)))


def test_extrapolation_fits_a_known_line():
  sizes = [50, 100, 200, 400]
  fit = fad.extrapolate_to_infinity(sizes, [3.0 + 120.0 / n for n in sizes])
  assert fit["fad_inf"] == pytest.approx(3.0) and fit["slope"] == pytest.approx(120.0)
  assert fit["r2"] == pytest.approx(1.0)


def test_fad_infinity_recovers_the_population_distance():
  # Reference and generated pool both have their population's exact statistics, so FAD on
  # N drawn clips is the true distance plus the small-sample bias (~c/N) the fit removes.
  dim = 8
  covariance = _random_covariance(dim, 0)
  mean_1, mean_2 = np.zeros(dim), np.full(dim, 0.1)
  true_distance = fad.frechet_distance(mean_1, covariance, mean_2, 1.5 * covariance)
  reference = _exact_samples(mean_1, covariance, 100, 0)
  generated = _exact_samples(mean_2, 1.5 * covariance, 10000, 1)
  result = fad.fad_infinity(reference, generated, sizes=[50, 100, 200, 400, 800],
                            draws_per_size=32, seed=0)
  smallest_bias = result["fad"][0] - true_distance
  assert smallest_bias > 0.5 * true_distance  # a bias worth removing
  assert abs(result["fad_inf"] - true_distance) < 0.1 * true_distance
  assert result["r2"] > 0.95


def test_fad_infinity_default_sizes_and_range_check():
  embeddings = np.random.default_rng(0).normal(size=(40, 4))
  result = fad.fad_infinity(embeddings, embeddings + 1.0)
  assert result["sizes"][0] == 10 and result["sizes"][-1] == 40
  assert result["fad_full"] == pytest.approx(4.0, rel=1e-9)
  with pytest.raises(UserError, match="must lie between"):
    fad.fad_infinity(embeddings, embeddings, sizes=[10, 80])
