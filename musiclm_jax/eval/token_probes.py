"""Where does the prompt's information get lost? Linear probes of the chain's token streams.

  train, held_out = read_records(cache_dir, "train"), read_records(cache_dir, "validation")
  probes = fit_probes(train)                         # {representation: LabelJudge}
  rows = probe_real(probes, train, held_out)         # real tokens: score, baseline, p
  texts, codes = read_generated(samples_dir)         # musiclm-infer run with SAVE_TOKENS
  rows = probe_generated(probes, train, held_out, texts, codes)   # true vs shuffled prompts

Every representation a clip has in the chain -- M_T (its caption's MuLan tokens),
M_A (its audio's), semantic, coarse (acoustic levels the coarse stage makes) and
fine (the rest) -- becomes a fixed bag-of-tokens feature: per level, the
normalised histogram of its codes ([clips, levels * codebook_size], codebook
sizes from `token_layout`, so real and generated codes share columns). The label
judge's heads (`label_judge.fit`: genre, instruments, mood) are fitted on the
token cache's train split and score held-out clips:

  real       held-out clips' own tokens against their own labels: genre and mood
             accuracy, instrument F1, beside the majority-class baseline (the
             training split's most common genre and mood, the tags most training
             clips have) and a permutation p-value (the held-out labels shuffled
             across clips, predictions fixed). What a representation of REAL
             audio carries of its caption: where the probe falls to the baseline,
             no stage downstream of it can carry that label.
  generated  tokens a cascade generated (results.jsonl's `tokens` files) for a
             held-out clip's caption, scored against that clip's labels (true
             prompt) and against the labels of another prompt's clip (a
             derangement of the distinct prompts, as musiclm-eval's shuffled
             set), with the paired permutation p-value that true > shuffled.
             The semantic tokens of generated music carrying the prompt's genre
             while the audio judge hears none puts the loss in the acoustic
             stages or the codec; M_T carrying it while generated semantic
             tokens do not puts it in the semantic stage.

A generated clip is paired with the held-out clip whose caption (or, without
one, its aspects) is its prompt, as `clip_sets.paired_set` pairs audio; M_A has
no generated counterpart (the generated audio is not run through MuLan).
"""
from typing import Sequence

import numpy as np

from musiclm_jax import results_file
from musiclm_jax.data import caption_batches
from musiclm_jax.data import token_cache
from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError
from musiclm_jax.eval import clip_sets
from musiclm_jax.eval import label_judge
from musiclm_jax.eval import prompt_adherence
from musiclm_jax.eval import significance

# Representation -> the token kind whose levels and codebook size shape its histogram.
KINDS = {"M_T": token_layout.MULAN, "M_A": token_layout.MULAN,
         "semantic": token_layout.SEMANTIC, "coarse": token_layout.COARSE,
         "fine": token_layout.FINE}
REPRESENTATIONS = tuple(KINDS)
GENERATED_REPRESENTATIONS = ("M_T", "semantic", "coarse", "fine")
# Head -> (the figure reported, label_judge.score_predictions' per-clip score).
METRICS = {"genre": ("genre_accuracy", "genre_correct"),
           "instruments": ("instrument_f1", "instrument_f1"),
           "mood": ("mood_accuracy", "mood_correct")}

Codes = dict[str, np.ndarray]  # representation -> codes [frames, levels]
NO_TOKENS = ("no text line of the musiclm-infer folder saved its tokens: run musiclm-infer with "
             "SAVE_TOKENS=True")


def read_records(cache_dir: str, split: str, max_records: int | None = None
                 ) -> list[token_cache.Record]:
  """The records of a token cache split, at most `max_records` of them evenly spaced through it
  (None: all); a one-line error for no cache or an empty split."""
  metadata = token_cache.load_metadata(cache_dir)
  records = list(token_cache.read_split(cache_dir, split))
  if not records:
    raise UserError(f"the token cache {cache_dir} has no {split!r} records: use one of "
                    f"{sorted(metadata.splits)}")
  if max_records is not None and len(records) > max_records:
    records = [records[i * len(records) // max_records] for i in range(max_records)]
  return records


def clip_codes(semantic: np.ndarray, acoustic: np.ndarray, mulan_text: np.ndarray,
               mulan: np.ndarray | None = None, clip: str = "a clip") -> Codes:
  """A clip's representations, codes [frames, levels] each, from its tokens as a token-cache
  record holds them (semantic [T_s], acoustic [T_a, levels], M [mulan_levels] or
  [segments, mulan_levels]); an empty M (M_T without a caption, M_A without MuLan) is left out,
  and so is fine when acoustic holds the coarse levels only (a cascade that decoded no fine
  level did not sample them)."""
  acoustic = np.asarray(acoustic)
  coarse_levels = KINDS["coarse"].num_levels
  if acoustic.ndim != 2 or acoustic.shape[1] not in (coarse_levels,
                                                     coarse_levels + KINDS["fine"].num_levels):
    raise UserError(f"{clip} has acoustic tokens of shape {acoustic.shape}, the stages read "
                    f"[frames, {coarse_levels} coarse (+ {KINDS['fine'].num_levels} fine)]: "
                    f"tokenize with the cascade's SoundStream")
  codes = {"semantic": np.asarray(semantic).reshape(-1, 1), "coarse": acoustic[:, :coarse_levels]}
  if acoustic.shape[1] > coarse_levels:
    codes["fine"] = acoustic[:, coarse_levels:]
  for name, m in (("M_T", mulan_text), ("M_A", mulan)):
    if m is not None and np.size(m):
      codes[name] = np.atleast_2d(np.asarray(m))
  return codes


def record_codes(record: token_cache.Record) -> Codes:
  """`clip_codes` of a token-cache record."""
  return clip_codes(record.semantic, record.acoustic, record.mulan_text, record.mulan,
                    f"clip {record.clip_id}")


def bag_of_tokens(codes: np.ndarray, representation: str) -> np.ndarray:
  """codes [frames, levels] -> [levels * codebook_size]: per level, the share of frames
  holding each code (a level's histogram sums to 1)."""
  kind = KINDS[representation]
  codes = np.asarray(codes)
  if codes.ndim != 2 or codes.shape[1] != kind.num_levels or not len(codes):
    raise UserError(f"{representation} codes of shape {codes.shape}: expected [frames >= 1, "
                    f"{kind.num_levels}] ({kind.name} tokens)")
  if codes.min() < 0 or codes.max() >= kind.codebook_size:
    raise UserError(f"{representation} codes span [{codes.min()}, {codes.max()}], outside "
                    f"[0, {kind.codebook_size}): these are not {kind.name} codes without offsets")
  shifted = codes + kind.codebook_size * np.arange(kind.num_levels)
  return np.bincount(shifted.reshape(-1), minlength=kind.size) / len(codes)


def features(clips: Sequence[Codes], representation: str) -> np.ndarray:
  """[clips, levels * codebook_size] bag-of-tokens features of one representation."""
  return np.stack([bag_of_tokens(codes[representation], representation) for codes in clips])


def record_labels(records: Sequence[token_cache.Record]) -> dict[str, list]:
  """Per head of the judge [clips]: genre, instruments (tuple), mood class (`clip_sets.mood_class`)."""
  missing = [r.clip_id for r in records if not all(head in r.labels for head in label_judge.HEADS)]
  if missing:
    raise UserError(f"clip {missing[0]} (and {len(missing) - 1} more) has no "
                    f"{'/'.join(label_judge.HEADS)} labels: probe a token cache of a labelled "
                    f"corpus (synth_music)")
  return {"genre": [r.labels["genre"] for r in records],
          "instruments": [tuple(r.labels["instruments"]) for r in records],
          "mood": [clip_sets.mood_class(r.labels["mood"]) for r in records]}


def record_text(record: token_cache.Record) -> str:
  """The text evaluation pairs with the clip (`caption_batches.eval_text`): the prompt that
  asks for it."""
  aspects = tuple(record.labels.get("aspect_list", ()))
  return caption_batches.eval_text(caption_batches.CaptionedClips((), (record.caption,), (aspects,)), 0)


def _shared_representations(clips: Sequence[Codes], wanted: Sequence[str]) -> list[str]:
  return [name for name in wanted if all(name in codes for codes in clips)]


def fit_probes(train: Sequence[token_cache.Record], representations: Sequence[str] = REPRESENTATIONS,
               c: float = label_judge.DEFAULT_C) -> dict[str, label_judge.LabelJudge]:
  """One label judge per representation every training record has, fitted on their bags of tokens."""
  clips = [record_codes(r) for r in train]
  labels = record_labels(train)
  return {name: label_judge.fit(features(clips, name), labels["genre"], labels["instruments"],
                                labels["mood"], feature_name=f"bag of {name} tokens", c=c)
          for name in _shared_representations(clips, representations)}


def pairwise_scores(judge: label_judge.LabelJudge, x: np.ndarray,
                    labels: dict[str, list]) -> dict[str, np.ndarray]:
  """Per head [clips, references]: clip i's prediction (from x [clips, D]) scored against
  reference j's labels (`labels`: per head [references])."""
  predicted = label_judge.predict(judge, x)
  columns = [label_judge.score_predictions(judge, predicted, *[[labels[head][j]] * len(x)
                                                              for head in label_judge.HEADS])
             for j in range(len(labels["genre"]))]
  return {head: np.stack([column[key] for column in columns], axis=1)
          for head, (_, key) in METRICS.items()}


def majority_predictions(judge: label_judge.LabelJudge, train_labels: dict[str, list],
                         clips: int) -> dict[str, list]:
  """`label_judge.predict`'s shape for `clips` clips, from the training labels alone: the most
  common genre and mood, and the judge's tags that more than half the training clips have."""
  predicted = {}
  for head in ("genre", "mood"):
    values, counts = np.unique(train_labels[head], return_counts=True)
    predicted[head] = [str(values[counts.argmax()])] * clips
  tags = tuple(t for t in judge.classes["instruments"]
               if 2 * sum(t in clip for clip in train_labels["instruments"]) > len(train_labels["instruments"]))
  predicted["instruments"] = [tags] * clips
  return predicted


def _label_permutation_p(scores: np.ndarray, reference_index: np.ndarray, seed: int) -> float:
  """One-sided p of mean(scores[i, reference_index[i]]) against the references' labels
  redrawn by a permutation (prompt_adherence's test: its cosine p is any score matrix's)."""
  return prompt_adherence.permutation_p_values(scores, reference_index, seed=seed)["p_value_cosine"]


def probe_real(probes: dict[str, label_judge.LabelJudge], train: Sequence[token_cache.Record],
               held_out: Sequence[token_cache.Record], seed: int = 0) -> list[dict]:
  """One row per probed representation the held-out records have: per head the held-out score,
  the majority baseline, the mean over shuffled labels and the label-permutation p-value."""
  if len(held_out) < 2:
    raise UserError(f"{len(held_out)} held-out clip(s): shuffling labels needs 2")
  clips = [record_codes(r) for r in held_out]
  labels, train_labels = record_labels(held_out), record_labels(train)
  rows = []
  for name in _shared_representations(clips, list(probes)):
    judge = probes[name]
    x = features(clips, name)
    scores = pairwise_scores(judge, x, labels)
    baseline = label_judge.score_predictions(
        judge, majority_predictions(judge, train_labels, len(x)), *[labels[h] for h in label_judge.HEADS])
    own = np.arange(len(x))
    heads = {head: {"metric": metric, "score": float(np.mean(np.diag(scores[head]))),
                    "baseline": float(np.mean(baseline[key])),
                    "shuffled_labels": float(np.mean(scores[head])),
                    "p_value": _label_permutation_p(scores[head], own, seed)}
             for head, (metric, key) in METRICS.items()}
    rows.append({"source": "real", "representation": name, "train_clips": len(train),
                 "clips": len(x), "features": int(x.shape[1]), **heads})
  return rows


def read_generated(samples_dir: str) -> tuple[list[str], list[Codes]]:
  """(prompt per clip, its generated representations) of every sample of the plain text lines
  of a musiclm-infer folder that saved its tokens (none: NO_TOKENS says what to do)."""
  samples = results_file.text_line_tokens(samples_dir)  # a story has no single prompt
  return ([text for text, _, _ in samples],
          [clip_codes(**tokens, clip=name) for _, name, tokens in samples])


def probe_generated(probes: dict[str, label_judge.LabelJudge], train: Sequence[token_cache.Record],
                    held_out: Sequence[token_cache.Record], texts: Sequence[str],
                    clips: Sequence[Codes], seed: int = 0) -> list[dict]:
  """One row per representation of GENERATED_REPRESENTATIONS that was probed and every generated
  clip has (`Codes`: e.g. only M_T and semantic of a semantic stage sampled alone): per head the
  generated clips' score against their prompt's clip's labels and against a shuffled prompt's,
  the majority baseline and the paired permutation p-value that true > shuffled.

  texts [clips]: each generated clip's prompt; clips whose prompt is no held-out caption
  are left out (counted as unpaired_clips).
  """
  by_text = {record_text(r): i for i, r in enumerate(held_out)}
  paired = [i for i, text in enumerate(texts) if text in by_text]
  prompts = [texts[i] for i in paired]
  if len(set(prompts)) < 2:
    raise UserError(f"{len(paired)} generated clip(s) of {len(set(prompts))} held-out caption(s): "
                    f"the shuffled-prompt baseline needs 2 captions; prompt with the held-out "
                    f"split's captions")
  own = np.asarray([by_text[text] for text in prompts])
  other = np.asarray([by_text[text] for text in clip_sets.shuffled_prompts(prompts, seed)])
  labels, train_labels = record_labels(held_out), record_labels(train)
  kept = [clips[i] for i in paired]
  rows = []
  for name in _shared_representations(kept, [n for n in GENERATED_REPRESENTATIONS if n in probes]):
    judge = probes[name]
    x = features(kept, name)
    predicted = label_judge.predict(judge, x)

    def scored(predictions: dict[str, list], index: np.ndarray) -> dict[str, np.ndarray]:
      """Clip i's predictions against the labels of held-out clip index[i] (only the true and
      the shuffled prompt's columns of `pairwise_scores`' matrix are needed here)."""
      return label_judge.score_predictions(
          judge, predictions, *[[labels[h][j] for j in index] for h in label_judge.HEADS])

    true_scores, shuffled_scores = scored(predicted, own), scored(predicted, other)
    baseline = scored(majority_predictions(judge, train_labels, len(x)), own)
    heads = {}
    for head, (metric, key) in METRICS.items():
      true, shuffled = true_scores[key], shuffled_scores[key]
      heads[head] = {"metric": metric, "score": float(true.mean()),
                     "shuffled_prompts": float(shuffled.mean()),
                     "baseline": float(np.mean(baseline[key])),
                     "p_value": significance.permutation_p_value(true, shuffled, paired=True,
                                                                 seed=seed)}
    rows.append({"source": "generated", "representation": name, "train_clips": len(train),
                 "clips": len(x), "prompts": len(set(prompts)),
                 "unpaired_clips": len(texts) - len(paired), **heads})
  return rows
