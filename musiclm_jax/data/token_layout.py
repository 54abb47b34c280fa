"""The one place that knows where each kind of token lives in a stage's vocabulary.

Each stage has one flat vocabulary. Ids 0 (PAD, also SeqIO's BOS), 1 (EOS) and
2 (NULL, the "no conditioning" token for classifier-free guidance) are
reserved; then each token kind of the stage gets a contiguous range, in the
order the layout lists them, and level q of kind K is

    offset[K] + q * codebook_size[K] + code

The vocabulary size is rounded up to a multiple of 128. Multi-level streams
([time, levels] codes) are flattened time-major with levels interleaved
(t0q0 t0q1 ... t1q0 ...), as AudioLM does.

Ids are layout-specific: semantic token 7 has a different id in the semantic
and the coarse stage. To move tokens between stages, `decode` with one layout
and `encode` with the other.

Everything works on numpy arrays (host code) and jax arrays (jitted code).
Inputs that are not being traced are validated, with a one-line error. The
module does not import JAX itself: host code that only needs the layouts'
facts (musiclm_spec, window_plan, eval/joins.py) does not load it.
"""
import dataclasses
import sys
from typing import Sequence

import numpy as np

PAD_ID = 0
EOS_ID = 1
NULL_ID = 2
NUM_RESERVED_IDS = 3
VOCAB_MULTIPLE = 128


@dataclasses.dataclass(frozen=True)
class TokenKind:
  """A token stream: `num_levels` codebooks of `codebook_size` codes each."""
  name: str
  num_levels: int
  codebook_size: int

  @property
  def size(self) -> int:
    return self.num_levels * self.codebook_size


MULAN = TokenKind("mulan", num_levels=12, codebook_size=1024)
MELODY = TokenKind("melody", num_levels=24, codebook_size=512)
# Beyond the paper: the tune's pitch class at a frame, codes 0-11 (C to B), NO_PITCH_CODE none.
PITCH = TokenKind("pitch", num_levels=1, codebook_size=13)
NO_PITCH_CODE = 12
SEMANTIC = TokenKind("semantic", num_levels=1, codebook_size=1024)
COARSE = TokenKind("coarse", num_levels=4, codebook_size=1024)
FINE = TokenKind("fine", num_levels=8, codebook_size=1024)
KINDS = {kind.name: kind for kind in (MULAN, MELODY, PITCH, SEMANTIC, COARSE, FINE)}
# The kinds a stage may read as its melody condition (one at most).
MELODY_KINDS = (MELODY.name, PITCH.name)


def decodes_fine_levels(decode_levels: int | None) -> bool:
  """Whether audio decoded from the first `decode_levels` codec levels (None: all) hears a
  fine level, so that the fine stage must run."""
  return decode_levels is None or decode_levels > COARSE.num_levels


def _jax():
  """The jax module if something imported it, else None: without it there is no jax array."""
  return sys.modules.get("jax")


def _array_module(x):
  jax = _jax()
  return jax.numpy if jax is not None and isinstance(x, jax.Array) else np


def _is_traced(x) -> bool:
  jax = _jax()
  return jax is not None and isinstance(x, jax.core.Tracer)


class TokenLayout:
  """Offsets of the token kinds of one stage's vocabulary."""

  def __init__(self, kinds: Sequence[TokenKind | str]):
    kinds = tuple(KINDS[k] if isinstance(k, str) else k for k in kinds)
    names = [k.name for k in kinds]
    if len(set(names)) != len(names):
      raise ValueError(f"token kinds must be distinct, got {names}.")
    self.kinds = kinds
    self._kinds_by_name = dict(zip(names, kinds))
    self.offsets = {}
    offset = NUM_RESERVED_IDS
    for kind in kinds:
      self.offsets[kind.name] = offset
      offset += kind.size
    self.num_used_ids = offset
    self.vocab_size = -(-offset // VOCAB_MULTIPLE) * VOCAB_MULTIPLE

  def __repr__(self):
    return f"TokenLayout({[k.name for k in self.kinds]}, vocab_size={self.vocab_size})"

  def kind(self, name: str) -> TokenKind:
    if name not in self._kinds_by_name:
      raise ValueError(f"this layout holds {list(self.offsets)} tokens, not {name!r}.")
    return self._kinds_by_name[name]

  def id_range(self, name: str) -> tuple[int, int]:
    """[low, high) of all ids of kind `name`."""
    kind = self.kind(name)
    return self.offsets[name], self.offsets[name] + kind.size

  def contains(self, name: str, ids):
    """Boolean mask: which `ids` (any shape) are tokens of kind `name`."""
    low, high = self.id_range(name)
    return (ids >= low) & (ids < high)

  def encode(self, name: str, codes):
    """Codes [..., num_levels] (level q in the last axis) -> ids of the same shape."""
    kind = self.kind(name)
    xp = _array_module(codes)
    codes = xp.asarray(codes)
    if codes.ndim == 0 or codes.shape[-1] != kind.num_levels:
      raise ValueError(f"{name} codes need a trailing levels axis of size "
                       f"{kind.num_levels}, got shape {codes.shape}.")
    if not _is_traced(codes):
      self._check_codes(kind, np.asarray(codes))
    level_offsets = self.offsets[name] + kind.codebook_size * xp.arange(kind.num_levels)
    return (codes + level_offsets).astype(xp.int32)

  def decode(self, name: str, ids):
    """Ids [..., num_levels] -> codes [..., num_levels]; inverse of `encode`."""
    kind = self.kind(name)
    xp = _array_module(ids)
    ids = xp.asarray(ids)
    if ids.ndim == 0 or ids.shape[-1] != kind.num_levels:
      raise ValueError(f"{name} ids need a trailing levels axis of size "
                       f"{kind.num_levels}, got shape {ids.shape}.")
    level_offsets = self.offsets[name] + kind.codebook_size * xp.arange(kind.num_levels)
    codes = ids - level_offsets
    if not _is_traced(codes):
      self._check_ids(kind, np.asarray(ids), np.asarray(codes))
    return codes.astype(xp.int32)

  def encode_stream(self, name: str, codes):
    """Codes [..., time, num_levels] -> ids [..., time * num_levels], levels interleaved."""
    ids = self.encode(name, codes)
    return ids.reshape(ids.shape[:-2] + (-1,)) if ids.ndim >= 2 else ids

  def decode_stream(self, name: str, ids):
    """Ids [..., time * num_levels] -> codes [..., time, num_levels]."""
    kind = self.kind(name)
    ids = _array_module(ids).asarray(ids)
    if ids.ndim == 0 or ids.shape[-1] % kind.num_levels:
      raise ValueError(f"a {name} stream has a multiple of {kind.num_levels} tokens, "
                       f"got shape {ids.shape}.")
    return self.decode(name, ids.reshape(ids.shape[:-1] + (-1, kind.num_levels)))

  def level_id_range(self, name: str, positions):
    """Allowed ids at `positions` of a flattened `name` stream (0 = its first token).

    Returns (low, high), arrays shaped like `positions`: the token at position
    p is level p % num_levels, so its id must be in [low, high). A sampler
    masks logits outside this range.
    """
    kind = self.kind(name)
    level = positions % kind.num_levels
    low = self.offsets[name] + level * kind.codebook_size
    return low, low + kind.codebook_size

  def _check_codes(self, kind: TokenKind, codes: np.ndarray):
    bad = np.argwhere((codes < 0) | (codes >= kind.codebook_size))
    if bad.size:
      where = tuple(int(i) for i in bad[0])
      raise ValueError(f"{kind.name} code {codes[where]} at index {where} (level "
                       f"{where[-1]}) is outside [0, {kind.codebook_size}).")

  def _check_ids(self, kind: TokenKind, ids: np.ndarray, codes: np.ndarray):
    bad = np.argwhere((codes < 0) | (codes >= kind.codebook_size))
    if bad.size:
      where = tuple(int(i) for i in bad[0])
      low = self.offsets[kind.name] + where[-1] * kind.codebook_size
      raise ValueError(f"id {ids[where]} at index {where} is not a {kind.name} "
                       f"level-{where[-1]} token (ids [{low}, {low + kind.codebook_size})).")


@dataclasses.dataclass(frozen=True)
class StageConfig:
  """Which kinds of a layout condition the stage and which one it predicts.

  Kinds of the layout that are neither conditioning nor target are the prefix
  (no loss, never dropped). frame_ticks: (kind, ticks per frame) for every
  kind, on one clock, so frame f of each kind is at time f * ticks (0: a
  kind with no time, like MuLan's); () when the stage's clock is not known.
  """
  name: str
  layout: TokenLayout
  target_kind: str
  condition_kinds: tuple[str, ...] = ()
  frame_ticks: tuple[tuple[str, int], ...] = ()

  def __post_init__(self):
    for kind in (self.target_kind,) + tuple(self.condition_kinds):
      self.layout.kind(kind)
    if self.frame_ticks and sorted(k for k, _ in self.frame_ticks) != sorted(self.layout.offsets):
      raise ValueError(f"{self.name}: frame_ticks {self.frame_ticks} must name each kind of "
                       f"{self.layout} once.")
    if self.target_kind in self.condition_kinds:
      raise ValueError(f"{self.name}: the target kind {self.target_kind!r} cannot also "
                       "be conditioning.")

  @property
  def melody_kind(self) -> str | None:
    """The melody kind (`MELODY_KINDS`) the stage is conditioned on, or None."""
    kinds = [kind for kind in self.condition_kinds if kind in MELODY_KINDS]
    return kinds[0] if kinds else None

  def frame_clocks(self) -> tuple[tuple[int, int, int, int], ...]:
    """(first id, end id, levels, ticks per frame) of each kind: a Transformer's frame_clocks."""
    if not self.frame_ticks:
      raise ValueError(f"the {self.name} stage has no frame_ticks.")
    ticks = dict(self.frame_ticks)
    return tuple(self.layout.id_range(kind.name) + (kind.num_levels, ticks[kind.name])
                 for kind in self.layout.kinds)


def _melody(melody: bool | str | None) -> list[TokenKind]:
  """[the melody kind] (True: MELODY; a name: that kind) or [] (False, None)."""
  if melody is True:
    return [MELODY]
  return [KINDS[melody]] if melody else []


def semantic_layout(melody: bool | str | None = False) -> TokenLayout:
  """MuLan (+ a melody kind) conditioning, semantic targets."""
  return TokenLayout([MULAN] + _melody(melody) + [SEMANTIC])


def coarse_layout(melody: bool | str | None = False) -> TokenLayout:
  """MuLan (+ a melody kind) conditioning, semantic prefix, coarse acoustic targets."""
  return TokenLayout([MULAN] + _melody(melody) + [SEMANTIC, COARSE])


def fine_layout() -> TokenLayout:
  """Coarse acoustic prefix, fine acoustic targets."""
  return TokenLayout([COARSE, FINE])
