"""Memorization (paper section 5): does the semantic stage replay its training data?

  examples = read_examples(token_cache_dir, split="train", num_examples=32)
  study = memorization_study(examples, greedy_continuer(stage), ground_cost)

For each training example the semantic stage is prompted with the example's
M_A (MuLan audio tokens) and its first T seconds of semantic tokens, and
greedily decodes the next `continuation_seconds` (or what remains of the
clip); the result is compared with the example's own continuation:

  exact match        the whole continuation identical (also: the share of
                     tokens that agree, position by position)
  approximate match  the optimal-transport cost between the two continuations'
                     token histograms, with k-means centroid distances as the
                     ground cost (`transport.py`), below a threshold set on
                     negative pairs: a generated continuation against the
                     continuation of another example. The threshold admits
                     `false_positive_rate` of the negatives, so a match rate
                     above that rate is memorization, not chance likeness.

Token rates come from `musiclm_spec`; a T that leaves no continuation in the
shortest clip is left out with its reason (the paper's T reach 10 s of 30 s
clips, a 2 s corpus keeps T = 0 and 1 s).
"""
import os
from typing import Callable, Sequence

import jax
import numpy as np

from musiclm_jax import cascade
from musiclm_jax import decoding
from musiclm_jax import musiclm_spec as spec
from musiclm_jax.data import token_cache
from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError
from musiclm_jax.eval import transport
from musiclm_jax.layers import kmeans

PAPER_PROMPT_SECONDS = (0.0, 1.0, 2.5, 5.0, 10.0)
PAPER_CONTINUATION_SECONDS = 5.0
DEFAULT_FALSE_POSITIVE_RATE = 0.01
# Negative pairs per prompt length: all ordered pairs of distinct examples up to this many,
# else this many drawn at random; 1 / this bounds the false-positive rate that can be set.
MAX_NEGATIVE_PAIRS = 400

# (M_A [batch, mulan_levels], semantic prefix [batch, prompt frames], frames) -> [batch, frames]
Continuer = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def seconds_to_frames(seconds: float) -> int:
  return int(round(seconds * spec.SEMANTIC_RATE_HZ))


def read_examples(cache_dir: str, split: str, num_examples: int) -> list[token_cache.Record]:
  """The first `num_examples` records of a token cache split; each must carry M_A."""
  token_cache.load_metadata(cache_dir)  # a one-line error for a folder that is no cache
  reader = token_cache.SplitReader(cache_dir, split)
  if len(reader) < 2:
    raise UserError(f"the {split} split of the token cache {cache_dir} has {len(reader)} "
                    f"record(s): the study needs 2 (negative pairs are other examples)")
  examples = [reader[i] for i in range(min(num_examples, len(reader)))]
  if any(len(e.mulan) == 0 for e in examples):
    raise UserError(f"the token cache {cache_dir} has records without M_A (MuLan audio tokens): "
                    f"re-tokenize it with a MuLan tokenizer (musiclm-tokenize MULAN_EXPORT_DIR)")
  return examples


def greedy_continuer(stage) -> Continuer:
  """Greedy decoding (temperature 0) with a semantic stage `cascade.StageLM`: [M_A | S prefix] -> S.

  A stage trained on [M | melody] gets NULL melody tokens, the M-only prompt its melody
  dropout trained it on: the study asks what the MuLan tokens alone bring back.
  """
  model, params = stage
  layout = model.stage.layout
  if model.stage.target_kind != "semantic":
    raise UserError(f"MEMORIZATION_SEMANTIC_EXPORT_DIR holds a {model.stage.name} stage: export "
                    f"the semantic stage")
  knobs = decoding.SamplingConfig(temperature=0.0).predict_kwargs()

  def continue_(mulan: np.ndarray, prefix: np.ndarray, num_frames: int) -> np.ndarray:
    kind = model.stage.melody_kind
    melody = ([cascade.melody_ids(layout, kind, None, 0, prefix.shape[1] + num_frames, len(mulan))]
              if kind else [])
    prompt = np.concatenate([layout.encode("mulan", mulan), *melody,
                             layout.encode_stream("semantic", prefix[..., None])], axis=1)
    ids = model.predict_batch(params, {"prompt_tokens": prompt}, jax.random.PRNGKey(0),
                              decode_fn=decoding.temperature_sample, num_steps=num_frames, **knobs)
    return layout.decode_stream("semantic", np.asarray(ids))[..., 0]

  return continue_


def negative_pairs(num_examples: int, max_pairs: int, seed: int) -> np.ndarray:
  """[pairs, 2] (generated example, other example): every ordered pair of distinct examples, or
  `max_pairs` of them drawn without replacement."""
  pairs = np.argwhere(~np.eye(num_examples, dtype=bool))
  if len(pairs) > max_pairs:
    pairs = pairs[np.sort(np.random.default_rng(seed).choice(len(pairs), max_pairs, replace=False))]
  return pairs


def calibrate_threshold(negative_costs: np.ndarray, false_positive_rate: float) -> float:
  """The cost below which (strictly) at most `false_positive_rate` of the negatives fall."""
  costs = np.sort(np.asarray(negative_costs, np.float64))
  return float(costs[int(np.floor(false_positive_rate * len(costs)))])


def usable_prompt_seconds(prompt_seconds: Sequence[float], clip_frames: int,
                          explicit: bool) -> tuple[list[float], dict[str, str]]:
  """(the T that leave a continuation in a clip of `clip_frames`, {T: why not} of the others).

  explicit: the caller chose the T, so one that does not fit is a one-line error instead.
  """
  usable, skipped = [], {}
  for seconds in prompt_seconds:
    if seconds_to_frames(seconds) < clip_frames:
      usable.append(float(seconds))
      continue
    reason = (f"the shortest training clip is {clip_frames / spec.SEMANTIC_RATE_HZ:g} s, no "
              f"continuation after {seconds:g} s")
    if explicit:
      raise UserError(f"{reason}: drop {seconds:g} from MEMORIZATION_PROMPT_SECONDS or use "
                      f"longer clips")
    skipped[f"{seconds:g}"] = reason
  return usable, skipped


def memorization_study(examples: Sequence[token_cache.Record], continuer: Continuer,
                       ground_cost: np.ndarray, prompt_seconds: Sequence[float] | None = None,
                       continuation_seconds: float = PAPER_CONTINUATION_SECONDS,
                       false_positive_rate: float = DEFAULT_FALSE_POSITIVE_RATE,
                       max_negative_pairs: int = MAX_NEGATIVE_PAIRS, seed: int = 0) -> dict:
  """Exact and approximate match fractions against the prompt length T.

  Args:
    examples: training records (M_A and S); all are cut to the shortest clip.
    continuer: e.g. `greedy_continuer(stage)`.
    ground_cost: [vocab, vocab] k-means centroid distances (`kmeans.Codebook.distance_matrix`).
    prompt_seconds: the T; None: the paper's that fit the shortest clip.
  Returns:
    {"prompt_seconds": [T...], "exact_match": [...], "token_agreement": [...],
     "approximate_match": [...], "continuation_seconds": [...], "threshold": [...],
     "negative_pairs": [...], "negatives_below_threshold": [...], "examples",
     "false_positive_rate", "skipped": {T: reason}}.
  """
  if len(examples) < 2:
    raise UserError(f"the memorization study needs 2 examples, got {len(examples)}")
  if not 0 <= false_positive_rate < 1:
    raise UserError(f"false_positive_rate must be in [0, 1), got {false_positive_rate}")
  clip_frames = min(len(e.semantic) for e in examples)
  usable, skipped = usable_prompt_seconds(
      PAPER_PROMPT_SECONDS if prompt_seconds is None else prompt_seconds, clip_frames,
      explicit=prompt_seconds is not None)
  mulan = np.stack([e.mulan for e in examples]).astype(np.int32)
  semantic = np.stack([e.semantic[:clip_frames] for e in examples]).astype(np.int32)
  pairs = negative_pairs(len(examples), max_negative_pairs, seed)
  result = {key: [] for key in ("prompt_seconds", "continuation_seconds", "exact_match",
                                "token_agreement", "approximate_match", "threshold",
                                "negative_pairs", "negatives_below_threshold")}
  for seconds in usable:
    start = seconds_to_frames(seconds)
    frames = min(seconds_to_frames(continuation_seconds), clip_frames - start)
    generated = np.asarray(continuer(mulan, semantic[:, :start], frames))
    target = semantic[:, start:start + frames]
    cost = lambda i, j: transport.optimal_transport_cost(generated[i], target[j], ground_cost)
    positives = np.array([cost(i, i) for i in range(len(examples))])
    negatives = np.array([cost(i, j) for i, j in pairs])
    threshold = calibrate_threshold(negatives, false_positive_rate)
    values = {"prompt_seconds": seconds, "continuation_seconds": frames / spec.SEMANTIC_RATE_HZ,
              "exact_match": float(np.mean(np.all(generated == target, axis=1))),
              "token_agreement": float(np.mean(generated == target)),
              "approximate_match": float(np.mean(positives < threshold)), "threshold": threshold,
              "negative_pairs": len(pairs),
              "negatives_below_threshold": float(np.mean(negatives < threshold))}
    for key, value in values.items():
      result[key].append(value)
  return {**result, "examples": len(examples), "false_positive_rate": false_positive_rate,
          "skipped": skipped}



def load_inputs(token_cache_dir: str, semantic_export_dir: str, kmeans_path: str,
                num_examples: int, split: str = "train") -> tuple[list, Continuer, np.ndarray]:
  """(`read_examples`, `greedy_continuer` of the stage export, the k-means ground cost
  [vocab, vocab]), each path checked with a one-line error."""
  examples = read_examples(token_cache_dir, split, num_examples)
  if not os.path.isfile(os.path.join(semantic_export_dir, "config.gin")):
    raise UserError(f"MEMORIZATION_SEMANTIC_EXPORT_DIR {semantic_export_dir!r} has no config.gin: "
                    f"point it at the semantic stage's musiclm-export folder")
  ground_cost = stage_ground_cost(kmeans.Codebook.load(kmeans_path).distance_matrix(),
                                  token_layout.SEMANTIC.codebook_size)
  return examples, greedy_continuer(cascade.load_stage(semantic_export_dir)), ground_cost


def stage_ground_cost(centroid_distances: np.ndarray, vocab_size: int) -> np.ndarray:
  """The k-means ground cost [clusters, clusters] widened to the stage's codes [vocab, vocab].

  A stage predicts any of its layout's codes, also those above a smaller k-means's clusters
  that no training example holds: such a code is as far from every other as the two
  farthest centroids, and at 0 from itself.
  """
  clusters = len(centroid_distances)
  if clusters > vocab_size:
    raise UserError(f"the k-means file has {clusters} clusters, more than the stage's "
                    f"{vocab_size} semantic codes: use the k-means that made the token cache")
  cost = np.full((vocab_size, vocab_size), float(np.max(centroid_distances)))
  cost[:clusters, :clusters] = centroid_distances
  np.fill_diagonal(cost, 0.0)
  return cost
