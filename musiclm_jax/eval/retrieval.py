"""Does MuLan put a caption next to its own music? Retrieval and token agreement.

On a held-out split with one caption per clip (pair i = clip i, caption i):
  recall@k      text->audio: share of captions whose clip is among the k clips
                nearest to it (cosine); audio->text the other way round. Chance
                is k / n.
  agreement     per RVQ level q: how often M_T[q] of a caption equals M_A[q]
                of its own clip, against the mean over all other clips (the
                "random clip" baseline, exact rather than sampled). MusicLM
                trains on M_A and generates from M_T, so this is the property
                that swap relies on.
"""
import json
import os
from typing import Sequence

import numpy as np

from musiclm_jax.data import caption_batches


def recall_at_k(similarity: np.ndarray, k: int) -> float:
  """similarity [queries, items] with the right item of query i at i -> share found in the top k."""
  correct = np.diagonal(similarity)[:, None]
  rank = np.sum(similarity > correct, axis=1)  # items strictly better than the right one
  return float(np.mean(rank < k))


def retrieval_metrics(audio_embeddings: np.ndarray, text_embeddings: np.ndarray,
                      ks: Sequence[int] = (1, 10)) -> dict[str, float]:
  """Recall@k both ways and chance for pairs (audio i, text i); embeddings [n, D], normalised."""
  similarity = np.asarray(text_embeddings) @ np.asarray(audio_embeddings).T  # [texts, clips]
  n = similarity.shape[0]
  out = {"num_pairs": n}
  for k in ks:
    out[f"text_to_audio_recall@{k}"] = recall_at_k(similarity, k)
    out[f"audio_to_text_recall@{k}"] = recall_at_k(similarity.T, k)
    out[f"chance_recall@{k}"] = min(k, n) / n
  return out


def token_agreement(text_tokens: np.ndarray, audio_tokens: np.ndarray) -> dict[str, list[float]]:
  """Per level: P(M_T[i] == M_A[i]) (own clip) and mean over j != i of P(M_T[i] == M_A[j])."""
  text_tokens, audio_tokens = np.asarray(text_tokens), np.asarray(audio_tokens)
  n = text_tokens.shape[0]
  equal = text_tokens[:, None, :] == audio_tokens[None, :, :]  # [texts, clips, levels]
  own = np.mean(equal[np.arange(n), np.arange(n)], axis=0)
  off_diagonal = ~np.eye(n, dtype=bool)
  other = equal[off_diagonal].reshape(n, n - 1, -1).mean(axis=(0, 1)) if n > 1 else np.zeros_like(own)
  # How often two different clips share a code: the floor any agreement is measured against.
  audio_equal = audio_tokens[:, None, :] == audio_tokens[None, :, :]
  audio_collisions = audio_equal[off_diagonal].reshape(n, n - 1, -1).mean(axis=(0, 1)) if n > 1 else own * 0
  return {"own_clip": own.tolist(), "random_clip": other.tolist(),
          "audio_audio_collision": audio_collisions.tolist(),
          "distinct_audio_codes": [int(len(np.unique(audio_tokens[:, q])))
                                   for q in range(audio_tokens.shape[1])]}


def split_embeddings(tokenizer, dataset: str, data_dir: str | None, split: str):
  """(clips, audio [n, D], text [n, D]): every clip embedded whole (mean over its windows,
  cut to the split's shortest clip) and its caption as written, by a MuLanTokenizer."""
  clips = caption_batches.load_captioned_clips(dataset, data_dir, split,
                                               sample_rate_hz=tokenizer.sample_rate_hz)
  texts = [caption_batches.eval_text(clips, i) for i in range(len(clips.audio))]
  length = min(len(a) for a in clips.audio)
  audio = np.concatenate([tokenizer.audio_embeddings(np.stack([a[:length]])) for a in clips.audio])
  text = np.concatenate([tokenizer.text_embeddings(texts[i:i + 16]) for i in range(0, len(texts), 16)])
  return clips, audio, text


def evaluate_split(tokenizer, dataset: str, data_dir: str | None, split: str,
                   output_dir: str | None = None) -> dict:
  """Retrieval and agreement of a `tokenizers.conditioning.MuLanTokenizer` on one split.

  Pairs as `split_embeddings` gives them. Writes OUTPUT_DIR/retrieval_<split>.json when given.
  """
  _, audio, text = split_embeddings(tokenizer, dataset, data_dir, split)
  result = {"dataset": dataset, "split": split,
            "retrieval": retrieval_metrics(audio, text),
            "token_agreement": token_agreement(tokenizer.tokens(text), tokenizer.tokens(audio)),
            "mean_cosine_own_pair": float(np.mean(np.sum(audio * text, axis=1))),
            "mean_cosine_random_pair": float((np.sum(text @ audio.T) - np.sum(audio * text))
                                             / max(len(text) * (len(text) - 1), 1))}
  agreement = result["token_agreement"]
  result["token_agreement_mean"] = {k: float(np.mean(agreement[k]))
                                    for k in ("own_clip", "random_clip", "audio_audio_collision")}
  if output_dir:
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, f"retrieval_{split}.json"), "w") as f:
      json.dump(result, f, indent=1)
  return result


def evaluate_splits(tokenizer, *, dataset: str, data_dir: str | None,
                    splits: Sequence[str] = ("validation", "test"),
                    output_dir: str | None = None) -> dict[str, dict]:
  """`evaluate_split` for each split (gin: `retrieval.evaluate_splits`)."""
  return {split: evaluate_split(tokenizer, dataset, data_dir, split, output_dir) for split in splits}
