"""The inference page: one self-contained index.html listing each prompt with its audio.

Links are relative to the page, so the output folder can be moved or served
as it is; every piece of user text is escaped.
"""
import html
import os

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

from musiclm_jax import html_page

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 70em; }
.prompt { border-top: 1px solid #ccc; padding: 1em 0; }
.settings { color: #555; font-size: 90%; }
.error { color: #b00; }
.sample { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
.sample img { display: block; width: 30em; }
"""


def save_spectrogram(path: str, audio: np.ndarray, sample_rate_hz: int) -> str:
  """Writes a log-magnitude spectrogram of audio [samples] as a PNG; returns `path`."""
  figure = Figure(figsize=(8, 2.5), dpi=80)
  axes = figure.add_subplot()
  # Short clips still get a few frames: the FFT is at most a quarter of the audio.
  nfft = int(min(1024, max(16, 2 ** np.floor(np.log2(max(len(audio), 64) / 4)))))
  axes.specgram(np.asarray(audio, np.float64) + 1e-9, NFFT=nfft, Fs=sample_rate_hz,
                noverlap=nfft * 3 // 4, cmap="magma", scale="dB")
  axes.set_xlabel("time (s)")
  axes.set_ylabel("frequency (Hz)")
  figure.tight_layout()
  figure.savefig(path, format="png")
  return path


def _player(files: dict) -> str:
  """An audio player and the spectrogram of {'wav', 'spectrogram'} (paths relative to the page)."""
  return (f"<audio controls preload='none' src='{html.escape(files['wav'], quote=True)}'></audio>"
          f"<img alt='spectrogram' src='{html.escape(files['spectrogram'], quote=True)}'>")


def _prompt_html(record: dict) -> str:
  if "story" in record:
    parts = "".join(f"<li>{html.escape(text)} <span class='settings'>({seconds:g} s)</span></li>"
                    for text, seconds in record["story"])
    title = f"<ol>{parts}</ol>"
  elif "text" in record:
    title = f"<p><b>{html.escape(record['text'])}</b></p>"
  else:
    title = f"<p><code>{html.escape(record['prompt'])}</code></p>"
  head = f"<h3>line {record['line']}</h3>{title}"
  if "error" in record:
    return f"<div class='prompt'>{head}<p class='error'>error: {html.escape(record['error'])}</p></div>"
  temperatures = ", ".join(f"{stage} {config['temperature']:g}"
                           for stage, config in record["sampling"].items())
  settings = (f"{record['seconds']:g} s, seed {record['seed']}, temperature {temperatures}, "
              f"top-k {record['sampling']['semantic']['top_k']}, "
              f"top-p {record['sampling']['semantic']['top_p']:g}, "
              f"guidance {record['sampling']['semantic']['guidance_scale']}")
  if record.get("continue_from"):
    settings += f", continues {os.path.basename(record['continue_from'])}"
  melody = ""
  if record.get("melody"):  # the input tune, beside the outputs that follow it
    melody = (f"<div class='sample'>melody: {html.escape(os.path.basename(record['melody_from']))}"
              f"<br>{_player(record['melody'])}</div>")
  samples = melody + "".join(
      f"<div class='sample'>seed {s['seed']}<br>{_player(s)}</div>" for s in record["samples"])
  return (f"<div class='prompt'>{head}<p class='settings'>{html.escape(settings)}</p>"
          f"{samples}</div>")


def write_index(path: str, prompts_file: str, records: list[dict]) -> str:
  """Writes the page for results records (ok or error, in line order); returns `path`."""
  num_errors = sum("error" in r for r in records)
  prompts = "\n".join(_prompt_html(r) for r in records)
  return html_page.write_page(
      path, "MusicLM samples", _STYLE,
      f"<p class='settings'>prompts: {html.escape(os.path.abspath(prompts_file))}; "
      f"{len(records) - num_errors} prompt(s), {num_errors} error(s); settings of each line "
      f"in results.jsonl</p>\n{prompts}")
