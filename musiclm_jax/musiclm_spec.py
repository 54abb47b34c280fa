"""MusicLM's facts (Agostinelli et al., 2023), each stated once; the rest of the code derives them.

  semantic stage   MuLan M        -> S       (conditioned on M; optionally [M | melody])
  coarse stage     MuLan M, S     -> A[:4]   (conditioned on M; S is the prefix)
  fine stage       A[:4]          -> A[4:]   (unconditioned)
  S: w2v-BERT tokens at 25 Hz; A: SoundStream codes at 50 Hz, both of 24 kHz audio

Where each kind of token lives in a stage's vocabulary (and how many levels and
codes it has) is `data/token_layout`'s business; which kinds condition a stage
and which it predicts is here. At inference each stage samples in windows of
its training crop and advances by half a window (the paper gives 15 s for the
semantic stage), so every window is in-distribution (`window_plan.Windows`).
"""
from musiclm_jax.audio import rates
from musiclm_jax.data import token_layout

STAGES = ("semantic", "coarse", "fine")

SAMPLE_RATE_HZ = rates.SOUNDSTREAM_SAMPLE_RATE_HZ  # the cascade's audio, in and out
SEMANTIC_RATE_HZ = 25  # w2v-BERT frames
ACOUSTIC_RATE_HZ = 50  # SoundStream frames
ACOUSTIC_PER_SEMANTIC = ACOUSTIC_RATE_HZ // SEMANTIC_RATE_HZ
SAMPLES_PER_SEMANTIC_FRAME = SAMPLE_RATE_HZ // SEMANTIC_RATE_HZ
SAMPLES_PER_ACOUSTIC_FRAME = SAMPLE_RATE_HZ // ACOUSTIC_RATE_HZ

# Sampling temperatures of the paper's Section 4.
PAPER_TEMPERATURES = {"semantic": 1.0, "coarse": 0.95, "fine": 0.4}
# Training crops; also each stage's inference window.
PAPER_CROP_SECONDS = {"semantic": 30.0, "coarse": 10.0, "fine": 3.0}
PAPER_STRIDE_SECONDS = {stage: seconds / 2 for stage, seconds in PAPER_CROP_SECONDS.items()}
# Melody tokens (section 6): one per 4 s window every 3 s, three per 10 s.
MELODY_HOP_SECONDS = 3.0
# Beyond the paper: the tune's pitch class (or none) every 80 ms, two semantic frames, a
# condition a stage can align frame by frame (docs/design.md section 11).
PITCH_HOP_SECONDS = 0.08
# Semantic frames per frame of each melody kind a stage may read.
SEMANTIC_PER_MELODY_FRAME = {"melody": round(MELODY_HOP_SECONDS * SEMANTIC_RATE_HZ),
                             "pitch": round(PITCH_HOP_SECONDS * SEMANTIC_RATE_HZ)}


def melody_kind(melody: bool | str | None) -> str | None:
  """The melody kind a stage reads: None or False none; True the paper's melody tokens
  ('melody'); 'melody' or 'pitch' (the tune's pitch classes, beyond the paper)."""
  if melody is True:
    return "melody"
  if melody in (None, False):
    return None
  if melody not in SEMANTIC_PER_MELODY_FRAME:
    raise ValueError(f"melody {melody!r}: use False, True, or one of "
                     f"{', '.join(SEMANTIC_PER_MELODY_FRAME)}")
  return melody


def melody_frames(begin: int, end: int, num_melody_frames: int | None = None,
                  kind: str = "melody") -> tuple[int, int]:
  """[first, last) frames of melody `kind` that condition semantic frames [begin, end).

  The melody frame holding `begin`'s time and as many after it as the span
  covers (ceil), so a crop or inference window of a given length always has
  the same number of melody frames: one compile per window shape. Near the
  end of a melody of `num_melody_frames` (None: unbounded), its last frames
  are used instead, and a melody shorter than the span gives all it has.
  """
  per = SEMANTIC_PER_MELODY_FRAME[kind]
  count = -(-(end - begin) // per)
  first = begin // per
  if num_melody_frames is None:
    return first, first + count
  first = min(first, max(num_melody_frames - count, 0))
  return first, min(first + count, num_melody_frames)


def stream_frames(stage: str, frames: int) -> dict[str, int]:
  """Frames of each token stream in `frames` frames of a `stage` crop or window (semantic frames
  for the semantic and coarse stages, acoustic for fine): {'semantic': 250, 'coarse': 500} for
  10 s of the coarse stage."""
  return {"semantic": {"semantic": frames},
          "coarse": {"semantic": frames, "coarse": ACOUSTIC_PER_SEMANTIC * frames},
          "fine": {"coarse": frames, "fine": frames}}[stage]


def window_tokens(stage: str, frames: int, melody: bool | str | None = None) -> int:
  """Tokens of a `stage` crop or window of `frames` frames (`stream_frames`), BOS left out: its
  streams, M for the conditioned stages, and the frames of the melody kind the stage reads
  (`melody_kind(melody)`, `melody_frames`). Training's crop lengths and the cascade's windows
  both count so."""
  streams = stream_frames(stage, frames)
  length = sum(token_layout.KINDS[kind].num_levels * n for kind, n in streams.items())
  if stage != "fine":
    length += token_layout.MULAN.num_levels
  kind = melody_kind(melody)
  if kind is not None:
    first, last = melody_frames(0, frames, kind=kind)
    length += token_layout.KINDS[kind].num_levels * (last - first)
  return length


# Each kind's frame in 50 Hz acoustic frames, the stages' common clock (MuLan's tokens are
# of the whole clip: no time), for stage LMs whose position bias reads frame times.
FRAME_TICKS = {"mulan": 0, "melody": round(MELODY_HOP_SECONDS * ACOUSTIC_RATE_HZ),
               "pitch": round(PITCH_HOP_SECONDS * ACOUSTIC_RATE_HZ),
               "semantic": ACOUSTIC_PER_SEMANTIC, "coarse": 1, "fine": 1}


def _stage(name: str, layout: token_layout.TokenLayout, target: str,
           conditioning: tuple[str, ...] = ()) -> token_layout.StageConfig:
  ticks = tuple((kind, FRAME_TICKS[kind]) for kind in layout.offsets)
  return token_layout.StageConfig(name, layout, target, conditioning, ticks)


def semantic_stage(melody: bool | str | None = False) -> token_layout.StageConfig:
  """melody: the melody kind it is also conditioned on (`melody_kind`)."""
  kind = melody_kind(melody)
  return _stage("semantic", token_layout.semantic_layout(kind), "semantic",
                ("mulan",) + ((kind,) if kind else ()))


def coarse_stage(melody: bool | str | None = False) -> token_layout.StageConfig:
  """melody: the melody kind it is also conditioned on (`melody_kind`; beyond the paper)."""
  kind = melody_kind(melody)
  return _stage("coarse", token_layout.coarse_layout(kind), "coarse",
                ("mulan",) + ((kind,) if kind else ()))



def fine_stage() -> token_layout.StageConfig:
  return _stage("fine", token_layout.fine_layout(), "fine")


STAGE_CONFIGS = {"semantic": semantic_stage(), "coarse": coarse_stage(), "fine": fine_stage()}
