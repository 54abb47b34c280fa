"""Semantic tokens: MLM accuracy, cluster usage, do tokens carry musical content?

  .venv/bin/python benchmarks/semantic_content.py runs/demo/w2v_bert/export runs/demo/w2v_bert/kmeans.npz runs/demo/tfds
"""
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from musiclm_jax.data import audio_batches
from musiclm_jax.layers import kmeans
from musiclm_jax.tokenizers import semantic

export_dir, kmeans_path, data_dir = sys.argv[1:4]
tok = semantic.SemanticTokenizer.load(export_dir, kmeans_path)
K = tok.codebook_size

# MLM accuracy on held-out crops (fixed masks, noise-free codes), as eval does.
source = audio_batches.AudioBatchSource("synth_music/tiny", data_dir=data_dir, split="validation",
                                        batch_size=4, crop_seconds=4.0, repeat=False)
loss_fn = jax.jit(lambda p, b: tok.model.loss_fn(p, b, None)[1])
evals = [jax.device_get(loss_fn(tok.params, {"audio": jnp.asarray(b["audio"])}))
         for b in source.get_batches()]
mlm_accuracy = float(np.mean([e["mlm_accuracy"] for e in evals]))
mlm_majority_accuracy = float(np.mean([e["mlm_majority_accuracy"] for e in evals]))
contrastive_accuracy = float(np.mean([e["contrastive_accuracy"] for e in evals]))
codes_used = float(np.mean([e["codes_used"] for e in evals]))

# Held-out pieces (validation + test) with a melody pair: the same notes, other instruments.
clips, pairs, all_tokens = [], [], []
for split in ("validation", "test"):
  for ex in tfds.builder("synth_music/tiny", data_dir=data_dir).as_dataset(split=split).as_numpy_iterator():
    tokens = tok.tokenize(ex["audio"][None])[0]
    all_tokens.append(tokens)
    if ex["has_melody_pair"]:
      clips.append(tokens)
      pairs.append(tok.tokenize(ex["melody_pair"]["audio"][None])[0])
all_tokens = np.concatenate(all_tokens)
n = len(clips)
distances = tok.distance_matrix()


def histogram(t):
  return np.bincount(t, minlength=K) / len(t)


def measures(a, b):
  """Frame agreement, histogram intersection, mean centroid distance of aligned tokens."""
  m = min(len(a), len(b))
  return (float(np.mean(a[:m] == b[:m])), float(np.minimum(histogram(a), histogram(b)).sum()),
          float(np.mean(distances[a[:m], b[:m]])))


def compare(clips, pairs):
  same = np.mean([measures(clips[i], pairs[i]) for i in range(n)], axis=0)
  different = np.mean([measures(clips[i], pairs[j]) for i in range(n) for j in range(n) if i != j], axis=0)
  names = ("frame_agreement", "histogram_intersection", "aligned_centroid_distance")
  return {f"{name}_{kind}": round(float(v), 4) for kind, vals in (("same_piece", same), ("different_piece", different))
          for name, v in zip(names, vals)}


rng = np.random.default_rng(0)
random_clips = [rng.integers(0, K, len(c)) for c in clips]
random_pairs = [rng.integers(0, K, len(c)) for c in pairs]
print(json.dumps({
    "eval_mlm_accuracy": round(mlm_accuracy, 4), "eval_mlm_majority_accuracy": round(mlm_majority_accuracy, 4),
    "eval_contrastive_accuracy": round(contrastive_accuracy, 4),
    "eval_quantizer_codes_used_per_batch": codes_used,
    "heldout_tokens": int(len(all_tokens)), "kmeans_clusters": K,
    "heldout_token_perplexity": round(kmeans.token_perplexity(all_tokens, K), 1),
    "heldout_clusters_used": int(len(np.unique(all_tokens))),
    "melody_pairs": n, "trained_tokens": compare(clips, pairs),
    "random_tokens": compare(random_clips, random_pairs)}, indent=1))
