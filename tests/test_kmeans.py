"""k-means: Lloyd's and mini-batch fits against scikit-learn, reseeding, the saved codebook."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import cluster

from musiclm_jax.layers import kmeans

K = 16
DIM = 8


def _data(n=4096, seed=0):
  """Anisotropic Gaussian: no blobs, so random init is not trapped by a missed blob and every
  method should land within a few per cent of Lloyd's optimum."""
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, DIM)) * np.linspace(0.5, 3.0, DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def sklearn_inertia():
  x = _data()
  return cluster.KMeans(K, n_init=5, random_state=0).fit(x).inertia_


def _fit_minibatch(km, x, steps=150, batch=256, seed=0):
  update = jax.jit(km.update)
  rng = np.random.default_rng(seed)
  state = jax.jit(km.init_state)(jnp.asarray(x[:1024]), jax.random.key(seed))
  inertias = [float(kmeans.inertia(x, state["centroids"]))]
  for i in range(steps):
    state, _ = update(state, jnp.asarray(x[rng.integers(0, len(x), batch)]), jax.random.key(i))
    if (i + 1) % 50 == 0:
      inertias.append(float(kmeans.inertia(x, state["centroids"])))
  return state, inertias


@pytest.mark.parametrize("init", kmeans.INITS)
def test_minibatch_inertia_falls_and_matches_sklearn(init, sklearn_inertia):
  x = _data()
  _, inertias = _fit_minibatch(kmeans.MiniBatchKMeans(K, init=init), x)
  assert inertias[-1] < inertias[0], inertias
  # Mini-batch k-means ends a few per cent above Lloyd's optimum (Sculley 2010).
  assert inertias[-1] < 1.08 * sklearn_inertia, (inertias, sklearn_inertia)
  assert inertias[-1] > 0.97 * sklearn_inertia, (inertias, sklearn_inertia)


def test_lloyd_matches_sklearn(sklearn_inertia):
  x = jnp.asarray(_data())
  centroids, counts = jax.jit(kmeans.kmeans, static_argnums=(1, 2))(x, K, 30, jax.random.key(0))
  assert int(counts.sum()) == x.shape[0]
  assert float(kmeans.inertia(x, centroids)) < 1.1 * sklearn_inertia


def test_kmeans_plus_plus_spreads_centroids_over_separated_blobs():
  rng = np.random.default_rng(1)
  centres = np.eye(DIM, dtype=np.float32) * 100.0
  x = jnp.asarray(np.repeat(centres, 50, axis=0) + rng.normal(size=(400, DIM)).astype(np.float32))
  centroids = jax.jit(kmeans.kmeans_plus_plus, static_argnums=1)(x, DIM, jax.random.key(0))
  # One seed per blob: every blob centre's nearest seed is a different one.
  assert len(set(np.asarray(kmeans.nearest(centres, centroids)).tolist())) == DIM


def test_starved_clusters_are_reseeded_at_the_data():
  km = kmeans.MiniBatchKMeans(K, init="random")
  x = jnp.asarray(_data(512))
  state = km.init_state(x, jax.random.key(0))
  state["centroids"] = state["centroids"].at[:4].set(1e4)  # never nearest: starved
  state["counts"] = jnp.full((K,), 1000.0).at[:4].set(0.0)
  new_state, stats = jax.jit(km.update)(state, x, jax.random.key(1))
  assert int(stats["reseeded"]) >= 4
  moved = np.asarray(new_state["centroids"][:4])
  assert np.all(np.min(np.abs(np.asarray(x)[:, None] - moved[None]).max(-1), axis=0) < 1e-5)
  assert float(new_state["counts"][:4].min()) > 0


def test_minibatch_update_is_a_running_mean():
  km = kmeans.MiniBatchKMeans(1, reassignment_ratio=0.0)
  x = _data(300)
  state = {"centroids": jnp.zeros((1, DIM)), "counts": jnp.zeros((1,))}
  for chunk in np.split(x, 3):
    state, _ = km.update(state, jnp.asarray(chunk), jax.random.key(0))
  np.testing.assert_allclose(state["centroids"][0], x.mean(0), atol=1e-4)
  assert float(state["counts"][0]) == 300


def test_codebook_save_load_assign_and_distances(tmp_path):
  rng = np.random.default_rng(0)
  book = kmeans.Codebook(
      centroids=rng.normal(size=(K, DIM)).astype(np.float32),
      feature_mean=rng.normal(size=DIM).astype(np.float32),
      feature_std=rng.uniform(0.5, 2.0, DIM).astype(np.float32),
      metadata={"layer": 7, "sample_rate_hz": 16000, "frame_rate_hz": 25.0})
  path = tmp_path / "kmeans.npz"
  book.save(path)
  loaded = kmeans.Codebook.load(path)
  assert loaded.metadata == book.metadata and loaded.num_clusters == K
  np.testing.assert_array_equal(loaded.centroids, book.centroids)

  features = rng.normal(size=(3, 20, DIM)).astype(np.float32)
  ids = np.asarray(jax.jit(loaded.assign)(features))
  assert ids.shape == (3, 20) and ids.dtype == np.int32
  standardized = (features - book.feature_mean) / book.feature_std
  brute = np.argmin(((standardized[..., None, :] - book.centroids) ** 2).sum(-1), -1)
  np.testing.assert_array_equal(ids, brute)

  distances = loaded.distance_matrix()
  assert distances.shape == (K, K)
  np.testing.assert_allclose(distances, distances.T, atol=1e-4)
  np.testing.assert_allclose(np.diag(distances), 0.0, atol=1e-2)
  np.testing.assert_allclose(distances[0, 1], np.linalg.norm(book.centroids[0] - book.centroids[1]),
                             rtol=1e-4)


def test_token_perplexity():
  assert kmeans.token_perplexity(np.arange(64) % 16, 16) == pytest.approx(16.0)
  assert kmeans.token_perplexity(np.zeros(10, int), 16) == pytest.approx(1.0)
