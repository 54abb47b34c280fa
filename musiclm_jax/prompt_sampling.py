"""Samples token sequences for a file of prompts (what musiclm-infer runs).

Each prompts line is JSON, e.g. {"prefix": [5, 9], "num_tokens": 32, "seed": 1,
"temperature": 0.9}; fields it leaves out take `PromptSettings`' values. A
prefix is token ids of the model's own vocabulary (for a stage: its
conditioning and prefix in the stage layout). A bad line is reported in
results.jsonl and the others still run.
"""
import dataclasses
import json
import os
import time

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax import checkpoints
from musiclm_jax.errors import UserError
from musiclm_jax.models import base

RESULTS_FILE = "results.jsonl"


@dataclasses.dataclass(frozen=True)
class PromptSettings:
  """What one prompt line may set; gin gives the defaults."""
  num_tokens: int = 64
  seed: int = 0
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  guidance_scale: float | None = None


def parse_prompt(line: str, defaults: PromptSettings) -> tuple[list[int], PromptSettings]:
  """One JSONL line -> (prefix ids, settings); UserError says what is wrong with it."""
  try:
    fields = json.loads(line)
  except json.JSONDecodeError as e:
    raise UserError(f"not valid JSON ({e.msg} at column {e.colno})") from None
  if not isinstance(fields, dict):
    raise UserError('a prompt is a JSON object such as {"prefix": [5, 9], "num_tokens": 32}')
  prefix = fields.pop("prefix", [])
  known = {f.name: f.type for f in dataclasses.fields(PromptSettings)}
  unknown = sorted(set(fields) - set(known))
  if unknown:
    raise UserError(f"unknown field(s) {unknown}: use prefix, {', '.join(known)}")
  if not isinstance(prefix, list) or not all(_is_int(t) for t in prefix):
    raise UserError("prefix must be a list of token ids (integers)")
  for name, value in fields.items():
    whole = name in ("num_tokens", "seed", "top_k")
    ok = _is_int(value) if whole else (value is None and name == "guidance_scale") or (
        isinstance(value, (int, float)) and not isinstance(value, bool))
    if not ok:
      raise UserError(f"{name} must be {'an integer' if whole else 'a number'}, got {value!r}")
  settings = dataclasses.replace(defaults, **fields)
  if settings.num_tokens < 1:
    raise UserError(f"num_tokens must be >= 1, got {settings.num_tokens}")
  return prefix, settings


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def load_params(model, export_dir: str):
  """The export's params on the first local device, checked against the model's shapes."""
  spec = {"decoder_input_tokens": jax.ShapeDtypeStruct((1, 1), jnp.int32)}
  boxed = jax.eval_shape(model.init, jax.random.PRNGKey(0), spec)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                          nn.unbox(boxed))
  return checkpoints.load_exported_params(export_dir, abstract)


def infer(*, model, export_dir: str, prompts_file: str, output_dir: str,
          defaults: PromptSettings = PromptSettings(), max_length: int = 4096) -> dict:
  """Samples every line of `prompts_file`; returns {'results_path', 'num_ok', 'errors'}."""
  if not os.path.isfile(prompts_file):
    raise UserError(f"PROMPTS_FILE {prompts_file} does not exist: write one JSON prompt per line")
  with open(prompts_file) as f:
    lines = [(n, line) for n, line in enumerate(f, start=1) if line.strip()]
  if not lines:
    raise UserError(f"PROMPTS_FILE {prompts_file} has no prompts: write one JSON prompt per line")
  if type(model).predict_batch is base.BaseModel.predict_batch:
    raise UserError(f"the exported model ({type(model).__name__}) does not generate: export a "
                    "language model")
  params = load_params(model, export_dir)
  os.makedirs(output_dir, exist_ok=True)
  results_path = os.path.join(output_dir, RESULTS_FILE)
  errors = []
  with open(results_path, "w") as out:
    for line_number, line in lines:
      record = {"line": line_number, "prompts_file": os.path.abspath(prompts_file),
                "export_dir": os.path.abspath(export_dir)}
      try:
        prefix, settings = parse_prompt(line, defaults)
        record.update(prefix=prefix, **dataclasses.asdict(settings), max_length=max_length)
        start = time.perf_counter()
        tokens = model.predict_batch(
            params, {"prompt_tokens": np.asarray([prefix], np.int32).reshape(1, -1)},
            jax.random.PRNGKey(settings.seed), num_steps=settings.num_tokens,
            temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p,
            guidance_scale=settings.guidance_scale, max_length=max_length)
        record.update(tokens=np.asarray(tokens)[0].tolist(),
                      seconds=round(time.perf_counter() - start, 3))
      except UserError as e:
        record.update(prompt=line.strip(), error=str(e).splitlines()[0])
        errors.append(f"line {line_number}: {record['error']}")
        logging.error("%s: %s", prompts_file, errors[-1])
      out.write(json.dumps(record) + "\n")
      out.flush()
  return {"results_path": results_path, "num_ok": len(lines) - len(errors), "errors": errors}
