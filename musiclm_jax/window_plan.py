"""How the cascade cuts a generation into stage windows, stated once and free of JAX.

  windows = Windows()                                     # the paper's crops, half-window strides
  frames = num_semantic_frames(60.0)                      # 1500 semantic frames
  stage_chunks(windows, "coarse", frames)                 # [(prefix_start, start, end), ...]

The cascade (`cascade.py`) samples each stage window by window as planned here,
and the window-join measure (`eval/joins.py`) reads where the joins fall from the
same plan without loading the models. A stage's first window samples all its
frames at once; each later one keeps the last (window - stride) frames sampled
as prefix and samples `stride` new ones. The conditioned stages (semantic,
coarse) also end a window at a story segment's boundary, so that one window
takes one segment's M_T; the fine stage reads no text and ignores segments.
Frames are semantic frames (40 ms) for the semantic and coarse stages and
acoustic frames (20 ms) for the fine stage and the SoundStream decoder.
"""
import dataclasses
from typing import Mapping, Sequence

import numpy as np

from musiclm_jax import musiclm_spec as spec
from musiclm_jax.errors import UserError


def frame_rate_hz(name: str) -> int:
  """Frames per second in which 'semantic', 'coarse', 'fine' or 'decode' windows are counted."""
  return spec.SEMANTIC_RATE_HZ if name in ("semantic", "coarse") else spec.ACOUSTIC_RATE_HZ


@dataclasses.dataclass(frozen=True)
class Windows:
  """Window and stride of each stage, and of the SoundStream decoder, in seconds.

  The semantic and coarse windows must be whole semantic frames (40 ms), the
  fine and decoder windows whole acoustic frames (20 ms). The decoder runs on
  `decode_window_seconds` at a time with `decode_context_seconds` of codes on
  each side that are decoded and dropped, which is exact for context at least
  the decoder's receptive field.
  """
  semantic_window_seconds: float = spec.PAPER_CROP_SECONDS["semantic"]
  semantic_stride_seconds: float = spec.PAPER_STRIDE_SECONDS["semantic"]
  coarse_window_seconds: float = spec.PAPER_CROP_SECONDS["coarse"]
  coarse_stride_seconds: float = spec.PAPER_STRIDE_SECONDS["coarse"]
  fine_window_seconds: float = spec.PAPER_CROP_SECONDS["fine"]
  fine_stride_seconds: float = spec.PAPER_STRIDE_SECONDS["fine"]
  decode_window_seconds: float = 10.0
  decode_context_seconds: float = 1.0

  def frames(self, name: str) -> tuple[int, int]:
    """(window, stride) of 'semantic', 'coarse', 'fine' or 'decode' in `frame_rate_hz(name)` frames.

    For 'decode' the second number is the context on each side.
    """
    rate = frame_rate_hz(name)
    fields = (f"{name}_window_seconds", f"{name}_{'context' if name == 'decode' else 'stride'}_seconds")
    out = []
    for field in fields:
      seconds = getattr(self, field)
      frames = round(seconds * rate)
      smallest = 0 if field == "decode_context_seconds" else 1
      if frames < smallest or abs(frames - seconds * rate) > 1e-6:
        raise UserError(f"Windows.{field} = {seconds} is not a {'positive ' * smallest}whole "
                        f"number of {1000 // rate} ms frames: change it")
      out.append(frames)
    if name != "decode" and out[1] > out[0]:
      raise UserError(f"Windows.{name}_stride_seconds exceeds {name}_window_seconds: "
                      "windows would skip frames")
    return out[0], out[1]

  def check(self, max_length: int, melody: Mapping[str, str | None] | None = None) -> None:
    """UserError if a window is not whole frames or does not fit `max_length` tokens, counting
    the melody codes of the stages trained with melody (`melody`: {stage: its melody kind})."""
    melody = melody or {}
    for name in spec.STAGES + ("decode",):
      self.frames(name)  # a UserError unless whole frames
    for name in spec.STAGES:
      # BOS + a full window
      length = 1 + spec.window_tokens(name, self.frames(name)[0], melody.get(name))
      if length > max_length:
        raise UserError(f"a {name} window is {length} tokens, more than max_length {max_length}: "
                        f"shorten Windows.{name}_window_seconds or raise max_length")


def num_semantic_frames(seconds: float) -> int:
  """Semantic frames of `seconds` of music: the last, partial frame counts."""
  return int(np.ceil(seconds * spec.SEMANTIC_RATE_HZ - 1e-6))


def segment_boundaries(segment_seconds: Sequence[float]) -> tuple[int, ...]:
  """Semantic frames where segments 1, 2, ... of a story start (segment_seconds: each one's length)."""
  ends = np.cumsum(segment_seconds)[:-1]
  return tuple(round(float(t) * spec.SEMANTIC_RATE_HZ) for t in ends)


def stage_boundaries(stage: str, boundaries: Sequence[int]) -> tuple[int, ...]:
  """The segment boundaries (semantic frames) at which `stage` ends a window: none for fine."""
  return () if stage == "fine" else tuple(boundaries)


def plan_chunks(num_frames: int, window: int, stride: int, start: int = 0,
                boundaries: Sequence[int] = ()) -> list[tuple[int, int, int]]:
  """(prefix_start, start, end) of each window sampling frames [start, num_frames).

  A window ends at `start + stride` (or fills the first `window` frames), at a
  boundary, or at the end; its prefix is what fits before it in `window` frames.
  """
  out = []
  while start < num_frames:
    end = min([num_frames, max(start + stride, window)] + [b for b in boundaries if b > start])
    out.append((max(0, end - window), start, end))
    start = end
  return out


def stage_chunks(windows: Windows, stage: str, num_semantic_frames: int, start: int = 0,
                 boundaries: Sequence[int] = ()) -> list[tuple[int, int, int]]:
  """`plan_chunks` of `stage` for music of `num_semantic_frames` sampled from semantic frame
  `start` on (the frames before it continue prompt audio), with segments starting at
  `boundaries` (semantic frames); in the stage's frames (`frame_rate_hz(stage)`)."""
  window, stride = windows.frames(stage)
  per_frame = frame_rate_hz(stage) // spec.SEMANTIC_RATE_HZ
  return plan_chunks(num_semantic_frames * per_frame, window, stride, start * per_frame,
                     stage_boundaries(stage, boundaries))
