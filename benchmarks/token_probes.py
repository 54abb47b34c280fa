r"""Where is the prompt lost? Genre / instrument / mood probes of each token stream of the chain.

  .venv/bin/python benchmarks/token_probes.py --token_cache_dir=runs/demo/tokens \
      [--split=validation] [--generated_dir=runs/demo/samples] \
      [--semantic_export_dir=runs/demo/semantic/export --samples_per_caption=2]

Fits the label judge's heads on bags of tokens (`eval/token_probes.py`) of the token
cache's --train_split for each representation the records have (M_T, M_A, semantic,
coarse, fine) and prints one JSON line per representation: per head the held-out
(--split) score, the majority-class baseline, the mean over shuffled labels and the
label-permutation p-value. With --generated_dir (a musiclm-infer folder generated with
SAVE_TOKENS=True from the held-out split's captions), one more line per generated
representation (M_T, semantic, coarse, fine): the generated tokens scored against their
prompt's clip's labels and against a shuffled prompt's, with the paired permutation p.
With --semantic_export_dir, the same for the semantic stage alone (no coarse or fine stage
needed): for each held-out clip it samples --seconds of S from [its caption's M_T] in one
window, as the cascade's first semantic window does (NULL melody for a stage trained with
melody; --temperature, the paper's by default; --guidance_scale, off by default;
--samples_per_caption draws), and probes M_T and that S.
Each line also carries the 1-minute load average.
"""
import json
import os

from absl import flags
import jax
import numpy as np

from musiclm_jax import cascade
from musiclm_jax import decoding
from musiclm_jax import gin_utils
from musiclm_jax import musiclm_spec
from musiclm_jax import window_plan
from musiclm_jax.errors import UserError
from musiclm_jax.eval import token_probes

_TOKEN_CACHE_DIR = flags.DEFINE_string("token_cache_dir", None, "musiclm-tokenize folder of a "
                                       "labelled corpus (synth_music).", required=True)
_TRAIN_SPLIT = flags.DEFINE_string("train_split", "train", "Split the probes are fitted on.")
_SPLIT = flags.DEFINE_string("split", "validation", "Held-out split the probes score.")
_GENERATED_DIR = flags.DEFINE_string("generated_dir", None, "musiclm-infer OUTPUT_DIR made with "
                                   "SAVE_TOKENS=True from the held-out split's captions.")
_SEMANTIC_EXPORT_DIR = flags.DEFINE_string("semantic_export_dir", None, "musiclm-export folder "
                                           "of a semantic stage trained on this cache's tokens.")
_SAMPLES_PER_CAPTION = flags.DEFINE_integer("samples_per_caption", 1, "S drawn per held-out "
                                            "caption with --semantic_export_dir.")
_SECONDS = flags.DEFINE_float("seconds", 10.0, "Seconds of S sampled per caption (one window: "
                              "at most the stage's training crop).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Rows sampled at once.")
_TEMPERATURE = flags.DEFINE_float("temperature", musiclm_spec.PAPER_TEMPERATURES["semantic"],
                                  "Sampling temperature of --semantic_export_dir (default the paper's).")
_GUIDANCE_SCALE = flags.DEFINE_float("guidance_scale", None, "Classifier-free guidance scale of "
                                     "--semantic_export_dir's sampling (default off).")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the sampling, the permutations and the prompt "
                             "derangement.")


def sample_semantic(stage_lm: cascade.StageLM, mulan_text: np.ndarray, seconds: float,
                    batch_size: int, seed: int, knobs: decoding.SamplingConfig) -> np.ndarray:
  """S [clips, frames] sampled from [M_T | NULL melody, if the stage reads melody] for
  mulan_text [clips, mulan_levels], one batch_size-row batch (one key) at a time."""
  model, params = stage_lm
  layout = model.stage.layout
  if model.stage.target_kind != "semantic":
    raise UserError(f"--semantic_export_dir holds a {model.stage.name} stage: export the "
                    f"semantic stage")
  frames = window_plan.num_semantic_frames(seconds)
  sample = jax.jit(lambda prompt, key: model.predict_batch(
      params, {"prompt_tokens": prompt}, key, decode_fn=decoding.temperature_sample,
      num_steps=frames, **knobs.predict_kwargs()))
  out = []
  for first in range(0, len(mulan_text), batch_size):
    rows = mulan_text[first:first + batch_size]
    padded = np.concatenate([rows, np.repeat(rows[-1:], batch_size - len(rows), axis=0)])
    kind = model.stage.melody_kind
    melody = [cascade.melody_ids(layout, kind, None, 0, frames, batch_size)] if kind else []
    prompt = np.concatenate([layout.encode("mulan", padded), *melody], axis=1)
    ids = sample(prompt, jax.random.fold_in(jax.random.PRNGKey(seed), first))
    out.append(layout.decode_stream("semantic", np.asarray(ids))[:len(rows), :, 0])
  return np.concatenate(out)


def sampled_semantic_clips(held_out, seed: int) -> tuple[list[str], list[dict]]:
  """(prompt per clip, {M_T, semantic} per clip) of --samples_per_caption draws per held-out clip."""
  if any(not len(record.mulan_text) for record in held_out):
    raise UserError("held-out records without M_T: re-tokenize the cache with a MuLan tokenizer "
                    "and captions")
  stage_lm = cascade.load_stage(_SEMANTIC_EXPORT_DIR.value)
  mulan_text = np.stack([record.mulan_text for record in held_out])
  texts, clips = [], []
  for draw in range(_SAMPLES_PER_CAPTION.value):
    semantic = sample_semantic(stage_lm, mulan_text, _SECONDS.value, _BATCH_SIZE.value,
                               seed + draw, decoding.SamplingConfig(
                                   temperature=_TEMPERATURE.value,
                                   guidance_scale=_GUIDANCE_SCALE.value))
    for record, s in zip(held_out, semantic):
      texts.append(token_probes.record_text(record))
      clips.append({"M_T": record.mulan_text[None], "semantic": s[:, None]})
  return texts, clips


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  train = token_probes.read_records(_TOKEN_CACHE_DIR.value, _TRAIN_SPLIT.value)
  held_out = token_probes.read_records(_TOKEN_CACHE_DIR.value, _SPLIT.value)
  generated = token_probes.read_generated(_GENERATED_DIR.value) if _GENERATED_DIR.value else None
  if generated is not None and not generated[0]:
    raise UserError(f"{_GENERATED_DIR.value}: {token_probes.NO_TOKENS}")
  probes = token_probes.fit_probes(train)
  rows = token_probes.probe_real(probes, train, held_out, _SEED.value)
  if generated is not None:
    rows += token_probes.probe_generated(probes, train, held_out, *generated, seed=_SEED.value)
  if _SEMANTIC_EXPORT_DIR.value:
    rows += [dict(row, source="sampled semantic stage", semantic_export_dir=_SEMANTIC_EXPORT_DIR.value)
             for row in token_probes.probe_generated(
                 probes, train, held_out, *sampled_semantic_clips(held_out, _SEED.value),
                 seed=_SEED.value)]
  for row in rows:
    print(json.dumps({"benchmark": "token_probes", "token_cache_dir": _TOKEN_CACHE_DIR.value,
                      "train_split": _TRAIN_SPLIT.value, "split": _SPLIT.value,
                      "generated_dir": _GENERATED_DIR.value, **row,
                      "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}),
          flush=True)


if __name__ == "__main__":
  gin_utils.run(main, usage="configure with --token_cache_dir, --train_split, --split, "
                "--generated_dir, --semantic_export_dir, --samples_per_caption, --seconds, --temperature, "
                "--guidance_scale, --batch_size, --seed")
