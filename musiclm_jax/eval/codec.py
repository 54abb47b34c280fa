"""Codec quality: multi-scale mel distance and SI-SNR of reconstructions per bitrate.

  model, params = load_trained_codec(model, "runs/soundstream_tiny")
  rows = codec_quality(model, params, clips, levels=(12, 8, 4, 1))

`codec_quality` reconstructs held-out clips through the first n RVQ levels and
compares them with the originals (codec_losses.mel_distance: lower is better;
codec_losses.si_snr_db: higher is better).
"""
import functools
import os
import tempfile
from typing import Iterable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax import checkpoints
from musiclm_jax.audio import io
from musiclm_jax.models import codec_losses
from musiclm_jax.models import soundstream


def load_trained_codec(model: soundstream.SoundStreamModel, model_dir: str,
                       step: int | None = None):
  """Params of step `step` (default: the latest) of MODEL_DIR/checkpoints, through an export.

  Exporting first (checkpoints.export_checkpoint) reads the params whatever
  optimizer wrote the checkpoint; their shapes are checked against `model`.
  """
  spec = {"audio": jax.ShapeDtypeStruct((1, model.config.hop_length), jnp.float32)}
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
                          jax.eval_shape(lambda: nn.unbox(model.init(jax.random.key(0), spec))))
  with tempfile.TemporaryDirectory() as export_dir:
    checkpoints.export_checkpoint(model_dir=model_dir, output_dir=export_dir, step=step)
    return checkpoints.load_exported_params(export_dir, abstract)


def untrained_codec(model: soundstream.SoundStreamModel, seed_audio: np.ndarray, seed: int = 0):
  """Fresh params, with codebooks seeded by k-means on `seed_audio` [batch, time]."""
  spec = {"audio": jax.ShapeDtypeStruct(seed_audio.shape, jnp.float32)}
  params = nn.unbox(model.init(jax.random.key(seed), spec))
  embeddings = model.embed(params[soundstream.GENERATOR], jnp.asarray(seed_audio))
  params[soundstream.QUANTIZER] = model.rvq.seed(params[soundstream.QUANTIZER], embeddings,
                                                 jax.random.key(seed + 1))
  return params


@functools.partial(jax.jit, static_argnums=(0, 3))
def _measure(model, params, audio, num_levels):
  decoded = model.reconstruct(params, audio, num_levels)
  rate = model.config.sample_rate_hz
  return (codec_losses.mel_distance(audio, decoded, rate) * audio.shape[0],
          jnp.sum(codec_losses.si_snr_db(audio, decoded)), decoded)


def codec_quality(model: soundstream.SoundStreamModel, params, batches: Iterable[np.ndarray],
                  levels: Sequence[int] = (12, 8, 4, 1),
                  keep_examples: int = 0) -> tuple[list[dict], dict[int, np.ndarray]]:
  """Mean mel distance and SI-SNR over all clips, per number of levels.

  batches: [batch, time] float32 arrays of held-out audio.
  Returns (rows {'levels', 'bitrate_bps', 'mel_distance', 'si_snr_db', 'clips'},
  {levels: the first `keep_examples` reconstructions [n, time]}).
  """
  totals = {n: [0.0, 0.0, 0] for n in levels}
  kept: dict[int, list[np.ndarray]] = {n: [] for n in levels}
  for audio in batches:
    for n in levels:
      mel, snr, decoded = jax.device_get(_measure(model, params, jnp.asarray(audio), n))
      totals[n][0] += float(mel)
      totals[n][1] += float(snr)
      totals[n][2] += audio.shape[0]
      room = keep_examples - sum(len(k) for k in kept[n])
      if room > 0:
        kept[n].append(np.asarray(decoded[:room]))
  rows = [{"levels": n, "bitrate_bps": model.config.frame_rate_hz * model.rvq.bits_per_frame(n),
           "mel_distance": mel / count, "si_snr_db": snr / count, "clips": count}
          for n, (mel, snr, count) in totals.items()]
  examples = {n: np.concatenate(k) for n, k in kept.items() if k}
  return rows, examples


def save_examples(out_dir: str, originals: np.ndarray, reconstructions: dict[int, np.ndarray],
                  sample_rate_hz: int) -> list[str]:
  """Writes original_i.wav and levels{n}_i.wav for listening; returns the paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for i, clip in enumerate(originals):
    paths.append(os.path.join(out_dir, f"original_{i}.wav"))
    io.save_wav(paths[-1], clip, sample_rate_hz)
    for n, decoded in reconstructions.items():
      if i < len(decoded):
        paths.append(os.path.join(out_dir, f"levels{n:02d}_{i}.wav"))
        io.save_wav(paths[-1], decoded[i], sample_rate_hz)
  return paths
