"""k-means in JAX: Lloyd's for codebook seeding, mini-batch k-means for semantic tokens.

Two users with different needs:
  * `kmeans` (Lloyd's, all vectors at once) seeds RVQ codebooks from one batch
    inside a jitted train step (layers/rvq.py);
  * `MiniBatchKMeans` (Sculley 2010, as scikit-learn's MiniBatchKMeans) fits
    the semantic-token centroids on features streamed from a dataset, too many
    to hold at once: k-means++ or random-sample init on a first sample, then
    per-cluster running means with learning rate 1/count, and clusters that
    fall far behind the busiest one reseeded at poorly served vectors.
`Codebook` is the fitted result as it is saved: centroids in a per-dimension
standardised feature space (AudioLM standardises w2v-BERT features before
clustering), the standardisation, and metadata saying where the features come
from (layer, sample rate, frame rate). `Codebook.assign` runs batched on device.

  km = MiniBatchKMeans(num_clusters=1024)
  state = km.init_state(first_sample, rng)            # [n, dim]
  for x in batches: state, stats = update(state, x, rng_i)   # update = jax.jit(km.update)
"""
import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax import paths
from musiclm_jax.errors import UserError

State = dict[str, jax.Array]
INITS = ("kmeans++", "random")


def _expanded_distances(vectors: jax.Array, centroids: jax.Array) -> jax.Array:
  """|x|^2 - 2 x.c + |c|^2: one matmul instead of an [..., clusters, dim] difference."""
  vectors = vectors.astype(jnp.float32)
  centroids = centroids.astype(jnp.float32)
  return (jnp.sum(jnp.square(vectors), -1, keepdims=True)
          - 2.0 * vectors @ centroids.T + jnp.sum(jnp.square(centroids), -1))


def squared_distances(vectors: jax.Array, centroids: jax.Array) -> jax.Array:
  """vectors [..., dim], centroids [clusters, dim] -> [..., clusters] float32, >= 0."""
  # The expansion can dip below zero by rounding.
  return jnp.maximum(_expanded_distances(vectors, centroids), 0.0)


def nearest(vectors: jax.Array, centroids: jax.Array) -> jax.Array:
  """Index of the nearest centroid: vectors [..., dim], centroids [clusters, dim] -> [...] int32."""
  return jnp.argmin(_expanded_distances(vectors, centroids), axis=-1).astype(jnp.int32)


def inertia(vectors: jax.Array, centroids: jax.Array) -> jax.Array:
  """Sum over vectors [n, dim] of the squared distance to the nearest centroid."""
  return jnp.sum(jnp.min(squared_distances(vectors, centroids), axis=-1))


def centroid_distances(centroids: np.ndarray) -> np.ndarray:
  """centroids [vocab, dim] -> Euclidean distances [vocab, vocab] in float64 (numpy: exact for ground costs)."""
  centroids = np.asarray(centroids, dtype=np.float64)
  squared = np.sum(centroids ** 2, axis=1)
  # |x|^2 + |y|^2 - 2 x.y can round below zero for equal centroids.
  return np.sqrt(np.clip(squared[:, None] + squared[None, :] - 2 * centroids @ centroids.T, 0.0, None))


def kmeans(vectors: jax.Array, num_clusters: int, iterations: int,
           rng: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Lloyd's k-means from centroids drawn among the vectors.

  vectors: [n, dim]. Returns (centroids [num_clusters, dim], counts
  [num_clusters]); a cluster that loses all its vectors keeps its centroid.
  Fewer vectors than clusters are drawn with replacement.
  """
  centroids = random_init(vectors, num_clusters, rng)

  def step(centroids, _):
    onehot = jax.nn.one_hot(nearest(vectors, centroids), num_clusters, dtype=jnp.float32)
    counts = onehot.sum(0)
    means = (onehot.T @ vectors) / jnp.maximum(counts, 1.0)[:, None]
    return jnp.where(counts[:, None] > 0, means, centroids), counts

  centroids, counts = jax.lax.scan(step, centroids, None, length=iterations)
  return centroids, counts[-1]


def random_init(vectors: jax.Array, num_clusters: int, rng: jax.Array) -> jax.Array:
  """num_clusters vectors [n, dim] drawn uniformly (with replacement only if n < num_clusters)."""
  n = vectors.shape[0]
  return vectors[jax.random.choice(rng, n, (num_clusters,), replace=n < num_clusters)]


def kmeans_plus_plus(vectors: jax.Array, num_clusters: int, rng: jax.Array) -> jax.Array:
  """k-means++ seeding (Arthur & Vassilvitskii 2007): each next centroid is drawn
  with probability proportional to its squared distance to the chosen ones.

  vectors [n, dim] -> centroids [num_clusters, dim]; O(num_clusters * n * dim).
  """
  vectors = vectors.astype(jnp.float32)
  first_rng, rest_rng = jax.random.split(rng)
  first = vectors[jax.random.randint(first_rng, (), 0, vectors.shape[0])]
  centroids = jnp.zeros((num_clusters, vectors.shape[1]), jnp.float32).at[0].set(first)
  closest = squared_distances(vectors, first[None])[:, 0]

  def body(i, carry):
    centroids, closest = carry
    # The tiny floor keeps a draw possible when every vector is already a centroid.
    pick = jax.random.categorical(jax.random.fold_in(rest_rng, i), jnp.log(closest + 1e-30))
    chosen = vectors[pick]
    closest = jnp.minimum(closest, squared_distances(vectors, chosen[None])[:, 0])
    return centroids.at[i].set(chosen), closest

  centroids, _ = jax.lax.fori_loop(1, num_clusters, body, (centroids, closest))
  return centroids


@dataclasses.dataclass(frozen=True)
class MiniBatchKMeans:
  """Mini-batch k-means over a stream of [n, dim] batches.

  Attributes:
    num_clusters: K.
    init: 'kmeans++' or 'random' (uniform sample of the first vectors).
    reassignment_ratio: after each batch, a cluster whose count is below this
      fraction of the largest count is moved to a vector of the batch drawn by
      its squared distance to its centroid (scikit-learn's rule, with
      distance-weighted draws instead of uniform ones), and given the smallest
      count among the others so that it is not moved again at once.
  """
  num_clusters: int
  init: str = "kmeans++"
  reassignment_ratio: float = 0.01

  def __post_init__(self):
    if self.init not in INITS:
      raise ValueError(f"init must be one of {INITS}, got {self.init!r}")

  def init_state(self, vectors: jax.Array, rng: jax.Array) -> State:
    """Centroids from the first sample [n, dim] (n >= num_clusters), counts from its assignment.

    Counting the sample keeps the first mini-batch, which reaches few of many
    clusters, from reseeding most of the seeds it did not reach.
    """
    if vectors.shape[0] < self.num_clusters:
      raise UserError(f"k-means init needs at least {self.num_clusters} vectors, got "
                      f"{vectors.shape[0]}: read more audio for the init sample")
    seed = kmeans_plus_plus if self.init == "kmeans++" else random_init
    centroids = seed(vectors.astype(jnp.float32), self.num_clusters, rng)
    counts = jnp.zeros((self.num_clusters,), jnp.float32).at[nearest(vectors, centroids)].add(1.0)
    return {"centroids": centroids, "counts": counts}

  def update(self, state: State, vectors: jax.Array,
             rng: jax.Array) -> tuple[State, dict[str, jax.Array]]:
    """One mini-batch step on vectors [n, dim].

    Returns (state, {'batch_inertia': mean squared distance before the step,
    'reseeded': clusters moved}).
    """
    vectors = vectors.astype(jnp.float32)
    centroids, counts = state["centroids"], state["counts"]
    distances = squared_distances(vectors, centroids)
    codes = jnp.argmin(distances, axis=-1)
    closest = jnp.min(distances, axis=-1)
    onehot = jax.nn.one_hot(codes, self.num_clusters, dtype=jnp.float32)
    batch_counts = onehot.sum(0)
    new_counts = counts + batch_counts
    # c <- c + (sum_batch - n_batch * c) / count: each vector ever assigned has weight 1/count.
    step = (onehot.T @ vectors - batch_counts[:, None] * centroids) / jnp.maximum(new_counts, 1.0)[:, None]
    centroids = centroids + step

    starved = new_counts < self.reassignment_ratio * jnp.max(new_counts)
    picks = jax.random.categorical(rng, jnp.log(closest + 1e-30), shape=(self.num_clusters,))
    centroids = jnp.where(starved[:, None], vectors[picks], centroids)
    floor = jnp.min(jnp.where(starved, jnp.inf, new_counts))
    new_counts = jnp.where(starved, floor, new_counts)
    return ({"centroids": centroids, "counts": new_counts},
            {"batch_inertia": jnp.mean(closest), "reseeded": jnp.sum(starved)})


@dataclasses.dataclass(frozen=True)
class Codebook:
  """Fitted centroids and how to apply them.

  Attributes:
    centroids: [clusters, dim] float32, in standardised feature space.
    feature_mean, feature_std: [dim], standardisation: (x - mean) / std.
    metadata: JSON-able facts about the features (e.g. layer, sample_rate_hz,
      frame_rate_hz, model) and the fit (e.g. inertia).
  """
  centroids: np.ndarray
  feature_mean: np.ndarray
  feature_std: np.ndarray
  metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def num_clusters(self) -> int:
    return self.centroids.shape[0]

  def assign(self, features: jax.Array) -> jax.Array:
    """features [..., dim] (raw, not standardised) -> ids [...] int32 in [0, clusters). Jittable."""
    return nearest(self.standardize(features), jnp.asarray(self.centroids))

  def standardize(self, features: jax.Array) -> jax.Array:
    return (features.astype(jnp.float32) - jnp.asarray(self.feature_mean)) / jnp.asarray(self.feature_std)

  def distance_matrix(self) -> np.ndarray:
    """[clusters, clusters] Euclidean distances between centroids (token-to-token distances)."""
    return centroid_distances(self.centroids)

  def save(self, path: str | os.PathLike) -> None:
    """Writes one .npz (no pickles): arrays plus the metadata as a JSON string."""
    with paths.resolve(path).open("wb") as f:
      np.savez(f, centroids=np.asarray(self.centroids, np.float32),
               feature_mean=np.asarray(self.feature_mean, np.float32),
               feature_std=np.asarray(self.feature_std, np.float32),
               metadata=np.array(json.dumps(self.metadata, sort_keys=True)))

  @classmethod
  def load(cls, path: str | os.PathLike) -> "Codebook":
    file = paths.resolve(path)
    if not file.exists():
      raise UserError(f"no k-means file at {path}: fit one with `python -m musiclm_jax.fit_kmeans`")
    with file.open("rb") as f, np.load(f, allow_pickle=False) as data:
      return cls(centroids=data["centroids"], feature_mean=data["feature_mean"],
                 feature_std=data["feature_std"], metadata=json.loads(str(data["metadata"])))


def standardization(vectors: np.ndarray, floor: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
  """Per-dimension (mean, std) of vectors [n, dim]; std floored so constant dims stay finite."""
  vectors = np.asarray(vectors, np.float64)
  return (vectors.mean(0).astype(np.float32),
          np.maximum(vectors.std(0), floor).astype(np.float32))


def token_perplexity(ids: np.ndarray, num_clusters: int) -> float:
  """exp(entropy) of the histogram of ids: num_clusters when all are used equally."""
  counts = np.bincount(np.asarray(ids).reshape(-1), minlength=num_clusters).astype(np.float64)
  probs = counts[counts > 0] / counts.sum()
  return float(np.exp(-np.sum(probs * np.log(probs))))
