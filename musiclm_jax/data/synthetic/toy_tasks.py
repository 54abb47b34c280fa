"""A toy SeqIO task with learnable structure, to exercise the trainer end to end.

Each sequence is a walk of a fixed random Markov chain (every token has a few
likely successors), and its second half repeats its first half. A model that
learns the chain gets well under the uniform loss; one that also learns to
copy through attention gets the second half almost free.
"""
import functools

import numpy as np
import seqio
import tensorflow as tf

TOY_TASK_NAME = "toy_lm"
TOY_VOCAB_SIZE = 128
FIRST_ID = 2  # Ids 0 (PAD/BOS) and 1 (EOS) are SeqIO's.
SUCCESSORS_PER_TOKEN = 4
_EXAMPLES_PER_SPLIT = {"train": 4096, "validation": 256}


def transition_matrix(vocab_size: int = TOY_VOCAB_SIZE, seed: int = 0) -> np.ndarray:
  """[vocab, vocab] row-stochastic; rows/cols below FIRST_ID are unused."""
  rng = np.random.default_rng(seed)
  n = vocab_size - FIRST_ID
  probs = np.zeros((vocab_size, vocab_size))
  for row in range(FIRST_ID, vocab_size):
    successors = rng.choice(n, SUCCESSORS_PER_TOKEN, replace=False) + FIRST_ID
    probs[row, successors] = rng.dirichlet(np.ones(SUCCESSORS_PER_TOKEN))
  return probs


def make_sequences(num: int, length: int, seed: int, vocab_size: int = TOY_VOCAB_SIZE) -> np.ndarray:
  """[num, length] int32: a Markov walk of length // 2, then the same walk again."""
  probs = transition_matrix(vocab_size)
  cumulative = probs.cumsum(axis=1)
  rng = np.random.default_rng(seed)
  half = (length + 1) // 2
  walk = np.empty((num, half), np.int64)
  walk[:, 0] = rng.integers(FIRST_ID, vocab_size, num)
  for t in range(1, half):
    u = rng.random(num)[:, None]
    walk[:, t] = np.minimum((cumulative[walk[:, t - 1]] < u).sum(axis=1), vocab_size - 1)
  return np.concatenate([walk, walk], axis=1)[:, :length].astype(np.int32)


def markov_entropy_nats(vocab_size: int = TOY_VOCAB_SIZE) -> float:
  """Mean per-step entropy of the chain (uniform start), a floor for the first half."""
  probs = transition_matrix(vocab_size)[FIRST_ID:]
  return float(-(probs * np.log(np.where(probs > 0, probs, 1))).sum(axis=1).mean())


def _dataset_fn(split: str, shuffle_files: bool, seed: int | None = None,
                length: int = 128) -> tf.data.Dataset:
  del shuffle_files, seed  # The data is generated; shuffling happens in SeqIO.
  split_seed = {"train": 1, "validation": 2}[split]
  seqs = make_sequences(_EXAMPLES_PER_SPLIT[split], length, split_seed)
  return tf.data.Dataset.from_tensor_slices({"targets": seqs})


def register(name: str = TOY_TASK_NAME, length: int = 128) -> None:
  """Registers the toy task (idempotent) for sequences of `length` tokens."""
  if name in seqio.TaskRegistry.names():
    return
  seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(functools.partial(_dataset_fn, length=length),
                                      splits=list(_EXAMPLES_PER_SPLIT)),
      preprocessors=[],
      output_features={"targets": seqio.Feature(seqio.PassThroughVocabulary(TOY_VOCAB_SIZE),
                                                add_eos=False)})


register()
