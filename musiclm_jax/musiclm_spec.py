"""MusicLM's facts (Agostinelli et al., 2023), each stated once; the rest of the code derives from them.

  stages   semantic: MuLan M            -> S          (crop 30 s, temperature 1.0)
           coarse:   MuLan M, S          -> A[:4]      (crop 10 s, temperature 0.95)
           fine:     A[:4]               -> A[4:]      (crop 3 s,  temperature 0.4)
  rates    S: w2v-BERT at 25 Hz (16 kHz input); A: SoundStream at 50 Hz, 12 levels (24 kHz)

Where each kind of token lives in a stage's vocabulary is `data/token_layout`'s
business; which kinds condition a stage and which it predicts is here. At
inference each stage samples in windows of its training crop, advancing by half
a window (paper: the semantic stage by 15 s), so every window is in-distribution.
"""
from musiclm_jax.audio import io as audio_io
from musiclm_jax.data import token_layout

STAGES = ("semantic", "coarse", "fine")

SAMPLE_RATE_HZ = audio_io.SOUNDSTREAM_SAMPLE_RATE_HZ  # the cascade's audio, in and out
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


def semantic_stage(melody: bool = False) -> token_layout.StageConfig:
  return token_layout.StageConfig("semantic", token_layout.semantic_layout(melody), "semantic",
                                  ("mulan", "melody") if melody else ("mulan",))


def coarse_stage(melody: bool = False) -> token_layout.StageConfig:
  return token_layout.StageConfig("coarse", token_layout.coarse_layout(melody), "coarse",
                                  ("mulan", "melody") if melody else ("mulan",))


def fine_stage() -> token_layout.StageConfig:
  return token_layout.StageConfig("fine", token_layout.fine_layout(), "fine")


STAGE_CONFIGS = {"semantic": semantic_stage(), "coarse": coarse_stage(), "fine": fine_stage()}
