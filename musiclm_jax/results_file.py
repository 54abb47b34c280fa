"""results.jsonl, the record file of a musiclm-infer output folder: its name and its one reader;
and the tokens files its samples may name (their writer and reader).

musiclm-infer appends one JSON record per prompt line as the line finishes; the
evaluation, the adherence reports and the demo read them back. Light on purpose
(no JAX): readers of finished folders should not load the cascade.
"""
import json
import os

import numpy as np

from musiclm_jax.errors import UserError

NAME = "results.jsonl"


def read(folder: str, role: str = "samples") -> list[dict]:
  """The records of `folder`'s results.jsonl in prompt-line order (they are appended as lines
  finish); a one-line error naming `role` (which folder the user pointed at) when it is missing."""
  path = os.path.join(folder, NAME)
  if not os.path.isfile(path):
    raise UserError(f"no {NAME} in {folder}: point the {role} folder at a musiclm-infer OUTPUT_DIR")
  with open(path, encoding="utf-8") as f:
    records = [json.loads(line) for line in f if line.strip()]
  return sorted(records, key=lambda record: record["line"])


def is_text_line(record: dict) -> bool:
  """A finished plain text line: each sample has one prompt and nothing else (not a story, a
  continuation of given audio, a line with a tune to follow, whose music the tune shapes too,
  or a line that failed)."""
  return ("text" in record and not record.get("continue_from") and not record.get("melody_from")
          and "error" not in record)


# A sample's generated tokens (musiclm-infer with SAVE_TOKENS): codes without offsets, named as
# the token cache's records name them (`data/token_cache.Record`), in one .npz beside its WAV.
TOKEN_ARRAYS = ("mulan_text", "semantic", "acoustic")


def write_tokens(file, mulan_text: np.ndarray, semantic: np.ndarray, acoustic: np.ndarray) -> None:
  """Writes one sample's tokens as .npz into `file` (a path or an open binary file):
  mulan_text [segments, mulan_levels] (the M_T each segment was generated from),
  semantic [T_s] and acoustic [T_a, levels]."""
  np.savez(file, mulan_text=np.asarray(mulan_text, np.int32), semantic=np.asarray(semantic, np.int32),
           acoustic=np.asarray(acoustic, np.int32))


def read_tokens(folder: str, relative_path: str) -> dict[str, np.ndarray]:
  """{name: codes} of TOKEN_ARRAYS of a tokens file results.jsonl names (relative to `folder`)."""
  path = os.path.join(folder, relative_path)
  if not os.path.isfile(path):
    raise UserError(f"{path}, named in {os.path.join(folder, NAME)}, is missing: re-run "
                    f"musiclm-infer with SAVE_TOKENS=True into a fresh folder")
  with np.load(path) as arrays:
    missing = [name for name in TOKEN_ARRAYS if name not in arrays]
    if missing:
      raise UserError(f"{path} has no {', '.join(missing)}: it is not a musiclm-infer tokens file")
    return {name: arrays[name] for name in TOKEN_ARRAYS}


def text_line_tokens(folder: str) -> list[tuple[str, str, dict[str, np.ndarray]]]:
  """(prompt, tokens file, `read_tokens`) of every sample of the text lines (`is_text_line`) of
  `folder` that saved its tokens, in line order."""
  return [(record["text"], sample["tokens"], read_tokens(folder, sample["tokens"]))
          for record in read(folder) if is_text_line(record)
          for sample in record["samples"] if "tokens" in sample]
