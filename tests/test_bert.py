"""The Flax BERT reproduces all-MiniLM-L6-v2's sentence embedding from the wheel's own files.

The reference is computed independently of the Flax module: HF BertModel's
forward written directly in numpy on the safetensors arrays (with their HF
names and [out, in] layout), then sentence-transformers' mean pooling and L2
normalisation. Golden values pin the reference itself to what
sentence-transformers printed for the same sentence (computed once, offline).
"""
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file

from musiclm_jax.errors import UserError
from musiclm_jax.layers import bert

# sentence-transformers 6.2 (torch, CPU) on SENTENCES[0], first six dims; its cosine
# between the two sentences was 0.389.
GOLDEN_FIRST_DIMS = [-0.04801062, -0.03439073, 0.02430299, -0.01788735, -0.0535439, 0.04181867]
SENTENCES = ["A calm piano melody with soft strings.",
             "Fast electronic dance track with a four-on-the-floor beat and a driving synth bass."]


def _erf(x):
  return np.vectorize(math.erf)(x)


def _layer_norm(x, w, b, eps=1e-12):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * w + b


def numpy_reference(tensors, ids, mask, num_layers=6, num_heads=12):
  """sentence-transformers' all-MiniLM-L6-v2 embedding, in float64 numpy."""
  t = {k: v.astype(np.float64) for k, v in tensors.items() if v.dtype.kind == "f"}
  x = (t["embeddings.word_embeddings.weight"][ids]
       + t["embeddings.position_embeddings.weight"][None, :ids.shape[1]]
       + t["embeddings.token_type_embeddings.weight"][0])
  x = _layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
  batch, length, d = x.shape
  hd = d // num_heads
  extended = (1.0 - mask[:, None, None, :]) * np.finfo(np.float32).min

  def dense(y, name):
    return y @ t[f"{name}.weight"].T + t[f"{name}.bias"]

  for i in range(num_layers):
    p = f"encoder.layer.{i}."
    split = lambda y: y.reshape(batch, length, num_heads, hd).transpose(0, 2, 1, 3)
    q, k, v = (split(dense(x, f"{p}attention.self.{n}")) for n in ("query", "key", "value"))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + extended
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    probs = scores / scores.sum(-1, keepdims=True)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, d)
    x = _layer_norm(dense(context, f"{p}attention.output.dense") + x,
                    t[f"{p}attention.output.LayerNorm.weight"], t[f"{p}attention.output.LayerNorm.bias"])
    hidden = dense(x, f"{p}intermediate.dense")
    hidden = 0.5 * hidden * (1.0 + _erf(hidden / np.sqrt(2.0)))
    x = _layer_norm(dense(hidden, f"{p}output.dense") + x,
                    t[f"{p}output.LayerNorm.weight"], t[f"{p}output.LayerNorm.bias"])
  pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
  return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def minilm():
  path = bert.minilm_dir()
  config = bert.BertConfig.from_pretrained(path)
  tokenizer = bert.BertTokenizer(path, max_length=32)
  ids, mask = tokenizer(SENTENCES)
  tensors = load_file(os.path.join(path, "model.safetensors"))
  return path, config, ids, mask, tensors


def test_tokenizer_pads_truncates_and_marks_real_tokens(minilm):
  _, _, ids, mask, _ = minilm
  assert ids.shape == mask.shape == (2, 32) and ids.dtype == np.int32
  assert ids[0, 0] == 101 and 102 in ids[0]  # [CLS] ... [SEP]
  assert mask[0].sum() < 32 and (ids[0][mask[0] == 0] == 0).all()
  long_ids, long_mask = bert.BertTokenizer(minilm[0], max_length=8)(["word " * 50])
  assert long_ids.shape == (1, 8) and long_mask.all() and long_ids[0, -1] == 102


def test_numpy_reference_matches_sentence_transformers(minilm):
  """Pins the reference to sentence-transformers' output (first dims, printed once offline)."""
  _, _, ids, mask, tensors = minilm
  reference = numpy_reference(tensors, ids, mask.astype(np.float64))
  np.testing.assert_allclose(reference[0, :6], GOLDEN_FIRST_DIMS, atol=1e-5)


def test_flax_bert_reproduces_minilm_sentence_embedding(minilm):
  path, config, ids, mask, tensors = minilm
  params = bert.load_pretrained(path, config)
  hidden = jax.jit(lambda p, i, m: bert.BertEncoder(config).apply({"params": p}, i, m))(
      params, jnp.asarray(ids), jnp.asarray(mask))
  pooled = bert.mean_pool(hidden, jnp.asarray(mask))
  ours = np.asarray(pooled / jnp.linalg.norm(pooled, axis=-1, keepdims=True))
  reference = numpy_reference(tensors, ids, mask.astype(np.float64))
  np.testing.assert_allclose(ours, reference, atol=2e-5)
  # The two captions are different music: a real sentence encoder keeps them apart.
  np.testing.assert_allclose(float(reference[0] @ reference[1]), 0.389, atol=1e-3)


def test_loaded_tree_matches_module_params(minilm):
  path, config, ids, mask, _ = minilm
  abstract = jax.eval_shape(bert.BertEncoder(config).init, jax.random.key(0), ids, mask)
  loaded = jax.tree.map(lambda x: x.shape, bert.load_pretrained(path, config))
  assert jax.tree.map(lambda x: x.shape, nn.unbox(abstract["params"])) == loaded


def test_wrong_config_is_a_one_line_user_error(minilm):
  path = minilm[0]
  with pytest.raises(UserError, match="from_pretrained"):
    bert.load_pretrained(path, bert.BertConfig(hidden_size=768, num_heads=12, intermediate_size=3072))
