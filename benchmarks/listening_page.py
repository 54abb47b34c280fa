r"""A listening page small enough to commit beside a run's results table.

  .venv/bin/python benchmarks/listening_page.py --infer_dir=$R/samples \
      --data_dir=$D/tfds --dataset=synth_music/small --output_dir=docs/reference_run --lines=4

musiclm-infer's own index.html holds every clip as WAV (megabytes a clip pair); this
page holds the first `--lines` plain text lines of a musiclm-infer folder, each beside
the real held-out clip whose caption was its prompt, as Ogg Vorbis (~10x smaller than
16-bit WAV) with both spectrograms, so a reader can hear what the README's table
measures without training anything. Prints one JSON line.
"""
import html
import json
import os

from absl import flags
import numpy as np
import soundfile

from musiclm_jax import gin_utils
from musiclm_jax import html_page
from musiclm_jax import report_html
from musiclm_jax.errors import UserError
from musiclm_jax.eval import clip_sets

_INFER_DIR = flags.DEFINE_string("infer_dir", None, "musiclm-infer folder.", required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the page goes (made if missing).",
                                  required=True)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS folder of the run's corpus.")
_DATASET = flags.DEFINE_string("dataset", "synth_music/tiny", "The run's corpus.")
_SPLIT = flags.DEFINE_string("split", "validation", "Its held-out split (the prompts' captions).")
_LINES = flags.DEFINE_integer("lines", 4, "Text lines on the page, the first ones.")

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 70em; }
.pair { border-top: 1px solid #ccc; padding: 1em 0; }
.clip { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
.clip img { display: block; width: 30em; }
"""


def _clip(output_dir: str, name: str, audio: np.ndarray, sample_rate_hz: int) -> str:
  """Writes name.ogg and name.png; returns their player and spectrogram as HTML."""
  soundfile.write(os.path.join(output_dir, f"{name}.ogg"), np.clip(audio, -1.0, 1.0),
                  sample_rate_hz, format="OGG", subtype="VORBIS")
  report_html.save_spectrogram(os.path.join(output_dir, f"{name}.png"), audio, sample_rate_hz)
  return (f"<div class='clip'>{name.split('_')[-1]}<br><audio controls src='{name}.ogg'></audio>"
          f"<img src='{name}.png' alt='spectrogram of {name}'></div>")


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  reference = clip_sets.read_reference(_DATASET.value, _DATA_DIR.value, _SPLIT.value)
  clips = clip_sets.paired_set("generated", *clip_sets.read_infer_folder(_INFER_DIR.value),
                               reference)
  rate = clips.sample_rate_hz
  pairs = [(clip, prompt, index) for clip, prompt, index
           in zip(clips.audio, clips.texts, clips.reference_index) if index >= 0][:_LINES.value]
  if not pairs:
    raise UserError(f"no text line of {_INFER_DIR.value} prompts a caption of {_DATASET.value} "
                    f"{_SPLIT.value}: give the run's --dataset and --split")
  if reference.sample_rate_hz != rate:
    raise UserError(f"the clips are at {rate} Hz and {_DATASET.value} at "
                    f"{reference.sample_rate_hz} Hz: give the run's own corpus")
  os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
  body = []
  for k, (clip, prompt, index) in enumerate(pairs, start=1):
    generated = _clip(_OUTPUT_DIR.value, f"line{k}_generated", clip, rate)
    real = _clip(_OUTPUT_DIR.value, f"line{k}_real", reference.audio[index][:len(clip)], rate)
    body.append(f"<div class='pair'><p>{html.escape(prompt)}</p>{generated}{real}</div>")
  page = html_page.write_page(os.path.join(_OUTPUT_DIR.value, "index.html"),
                              "Generated beside real, same caption", _STYLE, "\n".join(body))
  print(json.dumps({"benchmark": "listening_page", "page": page, "lines": len(pairs)}))


if __name__ == "__main__":
  gin_utils.run(main, usage="configure with --infer_dir, --output_dir, --data_dir, --dataset, "
                            "--split and --lines")
