"""Text augmentation for MuLan: one clip, many ways to describe it.

MuLan learns from several kinds of text per clip (the paper mixes long-form
descriptions with short tags and playlist titles). From a MusicCaps-style
caption and aspect list this draws one of:
  caption        the caption as written;
  sentences      a random non-empty subset of its sentences, in order;
  aspects        every aspect, shuffled, joined by ", ";
  aspect_subset  a random non-empty subset of the aspects, shuffled.
The text tower thus sees both the long sentences users write as prompts and
tag lists, and cannot key on word order or on one always-present sentence.
"""
import dataclasses
import re
from typing import Sequence

import numpy as np

KINDS = ("caption", "sentences", "aspects", "aspect_subset")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclasses.dataclass(frozen=True)
class TextAugmentation:
  """Relative weights of the four kinds of text (they need not sum to 1)."""
  caption: float = 0.4
  sentences: float = 0.2
  aspects: float = 0.2
  aspect_subset: float = 0.2

  def probabilities(self, has_caption: bool, has_aspects: bool) -> np.ndarray:
    """[4] probabilities of KINDS, zero for kinds the clip has no text for."""
    weights = np.array([self.caption * has_caption, self.sentences * has_caption,
                        self.aspects * has_aspects, self.aspect_subset * has_aspects], float)
    if weights.sum() <= 0:
      # The clip has text only of kinds weighted 0: use what it has.
      weights = np.array([has_caption, 0, has_aspects, 0], float)
    return weights / weights.sum()


def split_sentences(caption: str) -> list[str]:
  return [s for s in _SENTENCE_END.split(caption.strip()) if s]


def augment_caption(caption: str, aspects: Sequence[str], rng: np.random.Generator,
                    augmentation: TextAugmentation = TextAugmentation()) -> str:
  """One text for a clip, drawn from `rng` (see the module docstring).

  Raises ValueError if the clip has neither a caption nor aspects.
  """
  caption = caption.strip()
  aspects = [a.strip() for a in aspects if a.strip()]
  if not caption and not aspects:
    raise ValueError("a clip needs a caption or an aspect list to describe it")
  kind = KINDS[rng.choice(len(KINDS), p=augmentation.probabilities(bool(caption), bool(aspects)))]
  if kind == "caption":
    return caption
  if kind == "sentences":
    sentences = split_sentences(caption)
    keep = rng.random(len(sentences)) < 0.5
    keep[rng.integers(len(sentences))] = True
    return " ".join(s for s, k in zip(sentences, keep) if k)
  order = rng.permutation(len(aspects))
  if kind == "aspect_subset":
    order = order[:rng.integers(1, len(aspects) + 1)]
  return ", ".join(aspects[i] for i in order)
