"""MuLan + a 12 x 1024 RVQ as the cascade's `tokenizers.ConditioningTokenizer`.

M_A (training) and M_T (inference) come from the same RVQ, fitted on MuLan
*audio* embeddings only (paper, `tokenizers/rvq_fit.py`): the swap works only
as far as MuLan puts a caption near its music.

  tokenizer = MuLanTokenizer.load("runs/mulan_tiny_export", "runs/mulan_tiny/rvq.npz")
  tokenizer.audio_tokens(audio_24k)          # [batch, 12] int32 in [0, 1024)
  tokenizer.text_tokens(["calm solo piano"]) # [batch, 12]
"""
import json
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax import gin_models
from musiclm_jax import paths
from musiclm_jax.errors import UserError
from musiclm_jax.layers import bert
from musiclm_jax.layers import rvq as rvq_lib
from musiclm_jax.models import mulan
from musiclm_jax.models.base import Params
from musiclm_jax.tokenizers import embedding_rvq


class MuLanTokenizer(embedding_rvq.EmbeddingRVQTokenizer):
  """A frozen MuLan and its RVQ: numpy audio / strings in, int32 tokens out."""

  def __init__(self, model: mulan.MuLanModel, params: Params, quantizer: rvq_lib.ResidualVQ,
               rvq_state: rvq_lib.State):
    super().__init__(model, params, quantizer, rvq_state, "MuLan")
    self._text_tokenizer = bert.BertTokenizer(model.config.tokenizer_dir, model.config.max_text_length)
    self._embed_audio = jax.jit(model.embed_audio)
    self._embed_text = jax.jit(model.embed_text)
    self._quantize = jax.jit(lambda state, x: quantizer.encode(state, x[:, None, :])[:, 0])

  @classmethod
  def load(cls, export_dir: str, rvq_path: str) -> "MuLanTokenizer":
    """From a musiclm-export folder of a MuLan run and the file `rvq_fit.fit_rvq_on_dataset` wrote."""
    quantizer, state = load_rvq(rvq_path)
    return cls(*load_mulan(export_dir), quantizer, state)

  def audio_embeddings(self, audio: np.ndarray) -> np.ndarray:
    """audio [batch, samples] at 24 kHz -> [batch, D] (mean over 10 s windows, 1 s hop)."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 2:
      raise UserError(f"audio must be [batch, samples], got shape {audio.shape}")
    return np.asarray(self._embed_audio(self.params, audio))

  def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
    """texts [batch] -> [batch, D]."""
    if isinstance(texts, str):
      raise UserError("text_tokens takes a list of strings, not one string: wrap it in [...]")
    ids, mask = self._text_tokenizer(texts)
    return np.asarray(self._embed_text(self.params, ids, mask))

  def tokens(self, embeddings: np.ndarray) -> np.ndarray:
    """[batch, D] -> [batch, num_levels] int32 in [0, codebook_size)."""
    return np.asarray(self._quantize(self.rvq_state, jnp.asarray(embeddings, jnp.float32)), np.int32)

  def audio_tokens(self, audio: np.ndarray) -> np.ndarray:
    """M_A: audio [batch, samples] at 24 kHz -> [batch, num_levels] int32."""
    return self.tokens(self.audio_embeddings(audio))

  def text_tokens(self, texts: Sequence[str]) -> np.ndarray:
    """M_T: texts [batch] -> [batch, num_levels] int32."""
    return self.tokens(self.text_embeddings(texts))


def load_mulan(export_dir: str) -> tuple[mulan.MuLanModel, Params]:
  """(model, params) of a musiclm-export folder of a MuLan run."""
  model = gin_models.model_from_export(export_dir, mulan.MuLanModel, "MuLan")
  c = model.config
  spec = {"audio": jax.ShapeDtypeStruct((1, c.window_samples), jnp.float32),
          "text_ids": jax.ShapeDtypeStruct((1, c.max_text_length), jnp.int32)}
  return gin_models.load_export(export_dir, spec, model)


def save_rvq(path: str, quantizer: rvq_lib.ResidualVQ, state: rvq_lib.State) -> str:
  """Writes the RVQ state and its sizes to one .npz file; returns its path."""
  file = paths.resolve(path)
  file.parent.mkdir(parents=True, exist_ok=True)
  sizes = {"num_levels": quantizer.num_levels, "codebook_size": quantizer.codebook_size,
           "dim": quantizer.dim}
  with file.open("wb") as f:
    np.savez(f, sizes=json.dumps(sizes), **{k: np.asarray(v) for k, v in state.items()})
  return path


def load_rvq(path: str) -> tuple[rvq_lib.ResidualVQ, rvq_lib.State]:
  file = paths.resolve(path)
  if not file.is_file():
    raise UserError(f"no RVQ file at {path}: fit one with python -m musiclm_jax.fit_mulan_rvq")
  with file.open("rb") as f, np.load(f) as data:
    sizes = json.loads(str(data["sizes"]))
    state = {k: jnp.asarray(data[k]) for k in ("codebooks", "cluster_size", "embed_sum", "initialized")}
  return rvq_lib.ResidualVQ(**sizes), state

