"""Synthetic SeqIO tasks in each stage's real token layout, with learnable targets.

One task per stage (`synthetic_semantic`, `synthetic_coarse`,
`synthetic_fine`); an example is one 'targets' sequence
[conditioning | prefix | target] built by `tasks.stage_sequence`, as the
stage tasks on the token cache are. DecoderFeatureConverter gives every
position loss weight 1; the stage LM keeps only its target kind's positions.

Every level uses a small alphabet of `ALPHABET_SIZE` codes, and each target
token is, with probability 1 - NOISE, a fixed function of what came before
(else a uniformly random code of the alphabet):

  semantic  S_t = perm_g(S_t-1), with g a "genre" that also fixes the 12 MuLan tokens
  coarse    Ac[t, 0] = table(S[t // 2]), Ac[t, q] = perm_q(Ac[t, q - 1])
            (coarse frames are 50 Hz, semantic 25 Hz)
  fine      Af[t, q] = perm_q(Ac[t, q % 4])

so a model that reads its context beats the unigram entropy of the targets,
and a model that does not cannot.
"""
import functools

import numpy as np
import seqio
import tensorflow as tf

from musiclm_jax.data import tasks
from musiclm_jax.data import token_layout

ALPHABET_SIZE = 16
NUM_GENRES = 8
NOISE = 0.1
# Frames per example: small enough to train a tiny model in seconds.
FRAMES = {"semantic": {"semantic": 24},
          "coarse": {"semantic": 4, "coarse": 8},
          "fine": {"coarse": 4, "fine": 4}}
LAYOUTS = tasks.LAYOUTS
_EXAMPLES_PER_SPLIT = {"train": 2048, "validation": 256}
_SPLIT_SEEDS = {"train": 1, "validation": 2}


def task_name(stage: str) -> str:
  return f"synthetic_{stage}"


class _Rules:
  """The fixed random functions the data follows (the same for every split)."""

  def __init__(self, seed: int = 0):
    rng = np.random.default_rng(seed)
    perm = lambda n: np.stack([rng.permutation(ALPHABET_SIZE) for _ in range(n)])
    # No pitch codes here: the synthetic stages read no tune (and 13 codes hold no alphabet).
    self.alphabets = {name: np.stack([rng.choice(kind.codebook_size, ALPHABET_SIZE, replace=False)
                                      for _ in range(kind.num_levels)])
                      for name, kind in token_layout.KINDS.items()
                      if name != token_layout.PITCH.name}
    self.mulan = rng.integers(0, ALPHABET_SIZE, (NUM_GENRES, token_layout.MULAN.num_levels))
    self.genre_perms = perm(NUM_GENRES)
    self.semantic_to_coarse = rng.integers(0, ALPHABET_SIZE, ALPHABET_SIZE)
    self.coarse_perms = perm(token_layout.COARSE.num_levels)
    self.fine_perms = perm(token_layout.FINE.num_levels)


def _noisy(rng, symbols):
  """Replaces each symbol by a random one with probability NOISE."""
  noise = rng.random(symbols.shape) < NOISE
  return np.where(noise, rng.integers(0, ALPHABET_SIZE, symbols.shape), symbols)


def _semantic(rules, rng, genres, frames):
  """[num, frames] symbols of each row's genre walk."""
  walk = np.empty((len(genres), frames), np.int64)
  walk[:, 0] = rng.integers(0, ALPHABET_SIZE, len(genres))
  for t in range(1, frames):
    walk[:, t] = _noisy(rng, rules.genre_perms[genres, walk[:, t - 1]])
  return walk


def _coarse(rules, rng, semantic, frames):
  """[num, frames, 4] symbols following the semantic symbols (two coarse frames each)."""
  out = np.empty((len(semantic), frames, token_layout.COARSE.num_levels), np.int64)
  out[:, :, 0] = _noisy(rng, rules.semantic_to_coarse[semantic[:, np.arange(frames) // 2]])
  for q in range(1, out.shape[-1]):
    out[:, :, q] = _noisy(rng, rules.coarse_perms[q][out[:, :, q - 1]])
  return out


def _fine(rules, rng, coarse):
  """[num, frames, 8] symbols following the coarse symbols of the same frame."""
  levels = token_layout.FINE.num_levels
  out = np.stack([rules.fine_perms[q][coarse[:, :, q % coarse.shape[-1]]] for q in range(levels)],
                 axis=-1)
  return _noisy(rng, out)


def _codes(rules, kind, symbols):
  """Symbols [..., time, levels] -> codes of the same shape, through each level's alphabet."""
  codes = np.take_along_axis(rules.alphabets[kind].T, symbols.reshape(-1, symbols.shape[-1]), axis=0)
  return codes.reshape(symbols.shape)


def make_sequences(stage: str, num: int, seed: int) -> np.ndarray:
  """[num, length] int32 stage sequences [conditioning | prefix | target]."""
  rules, rng = _Rules(), np.random.default_rng(seed)
  layout, frames = LAYOUTS[stage], FRAMES[stage]
  genres = rng.integers(0, NUM_GENRES, num)
  codes = {}
  if stage in ("semantic", "coarse"):
    codes["mulan"] = _codes(rules, "mulan", rules.mulan[genres][:, None, :])
  if stage == "fine":
    semantic = _semantic(rules, rng, genres, -(-frames["coarse"] // 2))
    coarse = _coarse(rules, rng, semantic, frames["coarse"])
    codes["coarse"] = _codes(rules, "coarse", coarse)
    codes["fine"] = _codes(rules, "fine", _fine(rules, rng, coarse))
  else:
    semantic = _semantic(rules, rng, genres, frames["semantic"])
    codes["semantic"] = _codes(rules, "semantic", semantic[..., None])
    if stage == "coarse":
      codes["coarse"] = _codes(rules, "coarse", _coarse(rules, rng, semantic, frames["coarse"]))
  return tasks.stage_sequence(layout, codes)


def sequence_length(stage: str) -> int:
  kinds = {"semantic": ["mulan"], "coarse": ["mulan"], "fine": []}[stage]
  return (sum(token_layout.KINDS[k].num_levels for k in kinds)
          + sum(token_layout.KINDS[k].num_levels * n for k, n in FRAMES[stage].items()))


def _dataset_fn(split: str, shuffle_files: bool, seed: int | None = None,
                stage: str = "semantic") -> tf.data.Dataset:
  del shuffle_files, seed  # The data is generated; shuffling happens in SeqIO.
  seqs = make_sequences(stage, _EXAMPLES_PER_SPLIT[split], _SPLIT_SEEDS[split])
  return tf.data.Dataset.from_tensor_slices({"targets": seqs})


def register() -> None:
  """Registers the three tasks (idempotent)."""
  for stage, layout in LAYOUTS.items():
    if task_name(stage) in seqio.TaskRegistry.names():
      continue
    seqio.TaskRegistry.add(
        task_name(stage),
        source=seqio.FunctionDataSource(functools.partial(_dataset_fn, stage=stage),
                                        splits=list(_EXAMPLES_PER_SPLIT)),
        preprocessors=[],
        output_features={"targets": seqio.Feature(
            seqio.PassThroughVocabulary(layout.vocab_size), add_eos=False)})


register()
