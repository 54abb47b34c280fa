"""results.jsonl, the record file of a musiclm-infer output folder: its name and its one reader.

musiclm-infer appends one JSON record per prompt line as the line finishes; the
evaluation, the adherence reports and the demo read them back. Light on purpose
(no JAX): readers of finished folders should not load the cascade.
"""
import json
import os

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
