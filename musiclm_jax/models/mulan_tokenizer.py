"""MuLan + a 12 x 1024 RVQ as the cascade's `tokenizers.ConditioningTokenizer`.

M_A (training) and M_T (inference) come from the same RVQ, fitted on MuLan
*audio* embeddings only (paper): the swap works only as far as MuLan puts a
caption near its music.

  tokenizer = MuLanTokenizer.load("runs/mulan_tiny_export", "runs/mulan_tiny/rvq.npz")
  tokenizer.audio_tokens(audio_24k)          # [batch, 12] int32 in [0, 1024)
  tokenizer.text_tokens(["calm solo piano"]) # [batch, 12]

Fitting (`fit_rvq`) is one k-means per level on the residuals of the level
before (`ResidualVQ.seed`). A level of K codes needs several vectors per
code: with n embeddings only K' = min(K, n // min_vectors_per_code) codes per
level are fitted and the codebook is filled up to K with copies of its first
code, which the nearest-code search never returns (ties go to the lowest
index). So a few hundred training clips give valid, deterministic ids in
[0, K) that use fewer than K codes per level, instead of k-means with more
clusters than points, which would put one code on every embedding at level 1
and leave the 11 levels after it quantizing exact zeros. With paper-scale
data (K' = K) nothing changes.
"""
import json
import os
from typing import Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax import exports
from musiclm_jax.data import caption_batches
from musiclm_jax.errors import UserError
from musiclm_jax.layers import bert
from musiclm_jax.layers import rvq as rvq_lib
from musiclm_jax.models import mulan
from musiclm_jax.models.base import Params


class MuLanTokenizer:
  """A frozen MuLan and its RVQ: numpy audio / strings in, int32 tokens out."""

  def __init__(self, model: mulan.MuLanModel, params: Params, quantizer: rvq_lib.ResidualVQ,
               rvq_state: rvq_lib.State):
    if quantizer.dim != model.config.embedding_dim:
      raise UserError(f"the RVQ quantizes {quantizer.dim}-d vectors but MuLan embeds in "
                      f"{model.config.embedding_dim}-d: fit the RVQ on this MuLan")
    self.model = model
    self.params = params
    self.quantizer = quantizer
    self.rvq_state = rvq_state
    self.codebook_size = quantizer.codebook_size
    self.num_levels = quantizer.num_levels
    self.sample_rate_hz = model.config.sample_rate_hz
    self._text_tokenizer = bert.BertTokenizer(model.config.tokenizer_dir, model.config.max_text_length)
    self._embed_audio = jax.jit(model.embed_audio)
    self._embed_text = jax.jit(model.embed_text)
    self._quantize = jax.jit(lambda state, x: quantizer.encode(state, x[:, None, :])[:, 0])

  @classmethod
  def load(cls, export_dir: str, rvq_path: str) -> "MuLanTokenizer":
    """From a musiclm-export folder of a MuLan run and the file `fit_rvq_on_dataset` wrote."""
    model = exports.model_from_export(export_dir)
    if not isinstance(model, mulan.MuLanModel):
      raise UserError(f"{export_dir} holds a {type(model).__name__}, not MuLan: "
                      "point at the export of a MuLan run")
    quantizer, state = load_rvq(rvq_path)
    return cls(*load_params(model, export_dir), quantizer, state)

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


def load_params(model: mulan.MuLanModel, export_dir: str) -> tuple[mulan.MuLanModel, Params]:
  c = model.config
  spec = {"audio": jax.ShapeDtypeStruct((1, c.window_samples), jnp.float32),
          "text_ids": jax.ShapeDtypeStruct((1, c.max_text_length), jnp.int32)}
  return exports.load_export(export_dir, spec, model)


def fit_rvq(embeddings: np.ndarray, num_levels: int = 12, codebook_size: int = 1024,
            min_vectors_per_code: int = 2, kmeans_iterations: int = 20,
            seed: int = 0) -> tuple[rvq_lib.ResidualVQ, rvq_lib.State]:
  """A `num_levels` x `codebook_size` RVQ fitted by per-level k-means on embeddings [n, D].

  Only min(codebook_size, n // min_vectors_per_code) codes per level are
  fitted when data is scarce; the rest copy code 0 and are never emitted
  (see the module docstring).
  """
  embeddings = np.asarray(embeddings, np.float32)
  n, dim = embeddings.shape
  fitted = max(1, min(codebook_size, n // min_vectors_per_code))
  if fitted < codebook_size:
    logging.warning("fitting %d of %d codes per level: %d embeddings are too few for more "
                    "(min_vectors_per_code=%d)", fitted, codebook_size, n, min_vectors_per_code)
  small = rvq_lib.ResidualVQ(num_levels, fitted, dim, kmeans_iterations=kmeans_iterations)
  state = jax.jit(small.seed)(small.init_state(), jnp.asarray(embeddings)[:, None, :],
                              jax.random.key(seed))
  fill = codebook_size - fitted
  codebooks = jnp.concatenate(
      [state["codebooks"], jnp.repeat(state["codebooks"][:, :1], fill, axis=1)], axis=1)
  counts = jnp.pad(state["cluster_size"], ((0, 0), (0, fill)))
  quantizer = rvq_lib.ResidualVQ(num_levels, codebook_size, dim)
  return quantizer, {"codebooks": codebooks, "cluster_size": counts,
                     "embed_sum": codebooks * counts[..., None],
                     "initialized": jnp.ones((), jnp.float32)}


def save_rvq(path: str, quantizer: rvq_lib.ResidualVQ, state: rvq_lib.State) -> str:
  """Writes the RVQ state and its sizes to one .npz file; returns its path."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  sizes = {"num_levels": quantizer.num_levels, "codebook_size": quantizer.codebook_size,
           "dim": quantizer.dim}
  with open(path, "wb") as f:
    np.savez(f, sizes=json.dumps(sizes), **{k: np.asarray(v) for k, v in state.items()})
  return path


def load_rvq(path: str) -> tuple[rvq_lib.ResidualVQ, rvq_lib.State]:
  if not os.path.isfile(path):
    raise UserError(f"no RVQ file at {path}: fit one with python -m musiclm_jax.fit_mulan_rvq")
  with np.load(path) as data:
    sizes = json.loads(str(data["sizes"]))
    state = {k: jnp.asarray(data[k]) for k in ("codebooks", "cluster_size", "embed_sum", "initialized")}
  return rvq_lib.ResidualVQ(**sizes), state


def window_embeddings(model: mulan.MuLanModel, params: Params, clips: Sequence[np.ndarray],
                      batch_size: int = 16) -> np.ndarray:
  """Embeddings [windows, D] of every MuLan window of every clip (not averaged)."""
  c = model.config
  embed = jax.jit(model.embed_audio)
  windows = [clip[s * c.stft_hop_samples:s * c.stft_hop_samples + c.window_samples]
             for clip in clips for s in mulan.window_starts(len(clip), c)]
  windows = [np.pad(w, (0, c.window_samples - len(w))) for w in windows]
  out = [np.asarray(embed(params, np.stack(windows[i:i + batch_size])))
         for i in range(0, len(windows), batch_size)]
  return np.concatenate(out)


def fit_rvq_on_dataset(*, export_dir: str, rvq_path: str, dataset: str, data_dir: str | None,
                       split: str = "train", num_levels: int = 12, codebook_size: int = 1024,
                       min_vectors_per_code: int = 2, kmeans_iterations: int = 20,
                       seed: int = 0) -> MuLanTokenizer:
  """Fits the RVQ on MuLan audio embeddings of every window of a TFDS split; saves it to RVQ_PATH.

  Windows (10 s every 1 s at paper scale), not whole-clip means, are what the
  RVQ sees: more vectors from the same clips, spread like the embeddings
  M_A is taken from.
  """
  model = exports.model_from_export(export_dir)
  if not isinstance(model, mulan.MuLanModel):
    raise UserError(f"{export_dir} holds a {type(model).__name__}, not MuLan: "
                    "point at the export of a MuLan run")
  model, params = load_params(model, export_dir)
  clips = caption_batches.load_captioned_clips(dataset, data_dir, split,
                                               sample_rate_hz=model.config.sample_rate_hz)
  embeddings = window_embeddings(model, params, clips.audio)
  logging.info("fitting the RVQ on %d window embeddings of %d clips", len(embeddings), len(clips.audio))
  quantizer, state = fit_rvq(embeddings, num_levels, codebook_size, min_vectors_per_code,
                             kmeans_iterations, seed)
  save_rvq(rvq_path, quantizer, state)
  return MuLanTokenizer(model, params, quantizer, state)


def rvq_file(output_dir: str) -> str:
  """Where the fit binary writes the RVQ: OUTPUT_DIR/rvq.npz."""
  return os.path.join(output_dir, "rvq.npz")
