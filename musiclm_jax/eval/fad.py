"""Fréchet audio distance (FAD) between two sets of clip embeddings, and its N -> infinity limit.

  fad = frechet_audio_distance(reference_embeddings, generated_embeddings)   # [clips, dim] each
  fit = fad_infinity(reference_embeddings, generated_embeddings)             # fit["fad_inf"]

FAD fits one Gaussian to each set and measures
  |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)).
It depends on the embedder, so callers name it after one (`FAD_musicnn`); the
numbers are not comparable with the paper's VGGish/TRILL ones.

FAD estimated from N clips is biased upwards, and the bias is linear in 1/N
(Gui et al. 2024, "Adapting Frechet Audio Distance for Generative Music
Evaluation"): `fad_infinity` measures FAD on subsets of several sizes, fits
FAD = fad_inf + slope / N, and reports the intercept, which does not depend on
how many clips a run happened to generate.
"""
from typing import Sequence

import numpy as np

from musiclm_jax.errors import UserError

# A covariance needs two clips; fewer give a zero-by-zero degree of freedom.
MIN_CLIPS = 2


def _check_embeddings(embeddings: np.ndarray, name: str) -> np.ndarray:
  embeddings = np.asarray(embeddings, dtype=np.float64)
  if embeddings.ndim != 2:
    raise UserError(f"{name} embeddings have shape {embeddings.shape}, expected [clips, dim]: "
                    f"embed each clip as one vector (or each window as one row)")
  if embeddings.shape[0] < MIN_CLIPS:
    raise UserError(f"{name} has {embeddings.shape[0]} clip(s), too few for a covariance: "
                    f"FAD needs at least {MIN_CLIPS} per set; evaluate more clips")
  if not np.all(np.isfinite(embeddings)):
    raise UserError(f"{name} embeddings contain NaN or inf: check the audio for silence, "
                    f"clipping or NaN samples before embedding it")
  return embeddings


def gaussian_statistics(embeddings: np.ndarray, name: str = "a set") -> tuple[np.ndarray, np.ndarray]:
  """embeddings [clips, dim] -> mean [dim], unbiased covariance [dim, dim] (float64)."""
  embeddings = _check_embeddings(embeddings, name)
  return embeddings.mean(axis=0), np.cov(embeddings, rowvar=False).reshape(
      embeddings.shape[1], embeddings.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  """Symmetric square root of a symmetric PSD matrix [dim, dim]; rounding's negative eigenvalues -> 0."""
  eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
  return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def trace_sqrt_product(covariance_1: np.ndarray, covariance_2: np.ndarray) -> float:
  """tr((S_1 S_2)^(1/2)) for symmetric PSD S_1, S_2 [dim, dim].

  S_1 S_2 is similar to R S_2 R with R = S_1^(1/2), which is symmetric PSD:
  its eigenvalues are real and non-negative, so the trace is the sum of their
  square roots. Unlike a general matrix square root (scipy.linalg.sqrtm of
  S_1 S_2) this never turns complex or NaN when a covariance is singular,
  e.g. when there are fewer clips than embedding dimensions.
  """
  root_1 = _psd_sqrt(np.asarray(covariance_1, dtype=np.float64))
  product = root_1 @ np.asarray(covariance_2, dtype=np.float64) @ root_1
  eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
  return float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))


def frechet_distance(mean_1: np.ndarray, covariance_1: np.ndarray,
                     mean_2: np.ndarray, covariance_2: np.ndarray) -> float:
  """Fréchet (2-Wasserstein squared) distance between N(mean_1, covariance_1) and N(mean_2, covariance_2)."""
  if np.shape(mean_1) != np.shape(mean_2):
    raise UserError(f"embeddings of {np.shape(mean_1)[0]} and {np.shape(mean_2)[0]} dimensions "
                    f"cannot be compared: embed both sets with the same embedder")
  difference = np.asarray(mean_1, np.float64) - np.asarray(mean_2, np.float64)
  distance = (difference @ difference + np.trace(covariance_1) + np.trace(covariance_2)
              - 2 * trace_sqrt_product(covariance_1, covariance_2))
  # Rounding can take a zero distance a hair below zero.
  return max(float(distance), 0.0)


def frechet_audio_distance(reference_embeddings: np.ndarray, generated_embeddings: np.ndarray) -> float:
  """FAD between two embedding sets, each [clips, dim]."""
  return frechet_distance(*gaussian_statistics(reference_embeddings, "the reference set"),
                          *gaussian_statistics(generated_embeddings, "the generated set"))


def extrapolate_to_infinity(sizes: Sequence[int], fads: Sequence[float]) -> dict[str, float]:
  """Least-squares fit FAD = fad_inf + slope / N over (sizes[i], fads[i]); r2 says how straight the line is."""
  inverse_sizes = 1.0 / np.asarray(sizes, dtype=np.float64)
  fads = np.asarray(fads, dtype=np.float64)
  if len(np.unique(inverse_sizes)) < 2:
    raise UserError(f"FAD extrapolation needs at least two different set sizes, got {list(sizes)}")
  slope, intercept = np.polyfit(inverse_sizes, fads, deg=1)
  residual = fads - (intercept + slope * inverse_sizes)
  spread = np.sum((fads - fads.mean()) ** 2)
  r2 = 1.0 - np.sum(residual ** 2) / spread if spread > 0 else 1.0
  return {"fad_inf": float(intercept), "slope": float(slope), "r2": float(r2)}


def fad_infinity(reference_embeddings: np.ndarray, generated_embeddings: np.ndarray,
                 sizes: Sequence[int] | None = None, num_sizes: int = 10,
                 draws_per_size: int = 1, seed: int = 0) -> dict:
  """FAD at several generated-set sizes N and its extrapolation to N -> infinity.

  Args:
    reference_embeddings: [reference_clips, dim]; its statistics use every clip,
      as in Gui et al. (the reference set is the fixed background).
    generated_embeddings: [generated_clips, dim]; each FAD uses N of these,
      drawn without replacement.
    sizes: the N to measure at; default `num_sizes` sizes evenly spaced in 1/N
      (where the fit is linear) between a quarter of the clips and all of them.
    draws_per_size: random subsets averaged per N (their spread is the noise of
      the fit's points).
    seed: seeds the subset draws, so a report can be reproduced.

  Returns:
    {"sizes": [N...], "fad": [mean FAD at each N], "fad_inf", "slope", "r2",
     "fad_full": FAD with every generated clip}.
  """
  reference_mean, reference_covariance = gaussian_statistics(reference_embeddings, "the reference set")
  generated = _check_embeddings(generated_embeddings, "the generated set")
  num_clips = generated.shape[0]
  if sizes is None:
    smallest = max(MIN_CLIPS, num_clips // 4)
    sizes = np.unique(np.round(1.0 / np.linspace(1.0 / smallest, 1.0 / num_clips, num_sizes)).astype(int))
  sizes = [int(n) for n in sizes]
  if min(sizes) < MIN_CLIPS or max(sizes) > num_clips:
    raise UserError(f"FAD set sizes {sizes} must lie between {MIN_CLIPS} and the {num_clips} "
                    f"generated clips")
  rng = np.random.default_rng(seed)
  fads = []
  for n in sizes:
    draws = [generated[rng.choice(num_clips, size=n, replace=False)] for _ in range(draws_per_size)]
    fads.append(float(np.mean([frechet_distance(reference_mean, reference_covariance,
                                                *gaussian_statistics(draw)) for draw in draws])))
  return {"sizes": sizes, "fad": fads, **extrapolate_to_infinity(sizes, fads),
          "fad_full": frechet_distance(reference_mean, reference_covariance,
                                       *gaussian_statistics(generated))}
