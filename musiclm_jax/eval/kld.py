"""KL divergence between the label distributions of reference and generated clips (the paper's KLD).

  per_pair = kl_divergence(reference_probabilities, generated_probabilities)   # [pairs]
  score = mean_kl_divergence(reference_probabilities, generated_probabilities)

Row i of both arrays belongs to one caption: the labels a classifier (e.g.
musicnn's 50 MTT or MSD tags) gives its reference clip and the clip generated
for it. The divergence is KL(reference || generated), as AudioCraft's `kld`:
large when the generated clip misses labels the reference has. KL is not
symmetric; swap the arguments for the other direction.

Tagger outputs are independent per-label probabilities, not a distribution:
each row gets EPSILON added (so a label one clip lacks entirely gives a large,
finite divergence) and is renormalised to sum to one, making it a distribution
over labels. Lower is better; identical rows give 0.
"""
import numpy as np

from musiclm_jax.errors import UserError

# Added to every label probability before renormalising; caps log(p/q) at
# about log(1/EPSILON) = 13.8 nats per label. AudioCraft's KLD (MusicGen's
# evaluation) adds the same 1e-6, to the generated side only.
EPSILON = 1e-6


def label_distribution(probabilities: np.ndarray) -> np.ndarray:
  """probabilities [clips, labels] >= 0 -> rows that sum to one, after adding EPSILON."""
  probabilities = np.asarray(probabilities, dtype=np.float64) + EPSILON
  return probabilities / probabilities.sum(axis=-1, keepdims=True)


def _check(probabilities: np.ndarray, name: str) -> np.ndarray:
  probabilities = np.asarray(probabilities, dtype=np.float64)
  if probabilities.ndim != 2:
    raise UserError(f"{name} label probabilities have shape {probabilities.shape}, "
                    f"expected [clips, labels]")
  if not np.all(np.isfinite(probabilities)) or np.any(probabilities < 0):
    raise UserError(f"{name} label probabilities contain negative, NaN or inf values: "
                    f"give the classifier's probabilities (after sigmoid/softmax), not logits")
  return probabilities


def kl_divergence(reference_probabilities: np.ndarray,
                  generated_probabilities: np.ndarray) -> np.ndarray:
  """KL(reference_i || generated_i) in nats per row i; inputs [pairs, labels] -> [pairs]."""
  reference = _check(reference_probabilities, "reference")
  generated = _check(generated_probabilities, "generated")
  if reference.shape != generated.shape:
    raise UserError(f"reference labels {reference.shape} and generated labels {generated.shape} "
                    f"do not pair up: give one reference and one generated clip per caption, "
                    f"tagged by the same classifier")
  p, q = label_distribution(reference), label_distribution(generated)
  return np.sum(p * (np.log(p) - np.log(q)), axis=-1)


def mean_kl_divergence(reference_probabilities: np.ndarray,
                       generated_probabilities: np.ndarray) -> float:
  """The paper's KLD: `kl_divergence` averaged over the pairs (captions)."""
  return float(np.mean(kl_divergence(reference_probabilities, generated_probabilities)))
