r"""musiclm-infer: samples tokens from an exported model, one sequence per prompt line.

  musiclm-infer --gin_file=runs/infer.gin --gin.EXPORT_DIR=\"/tmp/toy_export\" \
      --gin.PROMPTS_FILE=\"prompts.jsonl\" --gin.OUTPUT_DIR=\"/tmp/samples\"

Required macros: EXPORT_DIR (written by musiclm-export), PROMPTS_FILE, OUTPUT_DIR.
The model is the export's own: its config.gin is read after the --gin_file
flags, then the --gin bindings are applied again so they still win. Prompts
are JSON lines (see musiclm_jax/prompt_sampling.py); until the MusicLM cascade
exists they are token ids of the model's own vocabulary.

OUTPUT_DIR gets results.jsonl (per line: the settings used, the sampled
tokens, or the line's error) and config.gin. A bad line is reported and the
others still run; the exit status is 2 if any line failed.
"""
import os

from absl import flags
import gin

from musiclm_jax import gin_utils
from musiclm_jax import prompt_sampling
from musiclm_jax.errors import UserError

REQUIRED_MACROS = ("EXPORT_DIR", "PROMPTS_FILE", "OUTPUT_DIR")


def main(argv):
  if len(argv) > 1:
    raise UserError(f"unexpected arguments {argv[1:]}: configure with --gin_file and --gin.KEY=VALUE")
  gin_utils.parse_flags_and_check(REQUIRED_MACROS)
  export_dir = gin.query_parameter("%EXPORT_DIR")
  config = os.path.join(export_dir, "config.gin")
  if not os.path.isfile(config):
    raise UserError(f"no config.gin in EXPORT_DIR {export_dir}: export a run trained with "
                    "musiclm-train using musiclm-export")
  gin_utils.parse_gin([config], flags.FLAGS.gin_bindings, flags.FLAGS.gin_search_paths)
  output_dir = gin.query_parameter("%OUTPUT_DIR")
  os.makedirs(output_dir, exist_ok=True)
  gin_utils.write_config(output_dir)
  result = gin.get_configurable(prompt_sampling.infer)()
  print(f"sampled {result['num_ok']} prompt(s) into {result['results_path']}")
  if result["errors"]:
    raise UserError(f"{len(result['errors'])} prompt(s) failed, first {result['errors'][0]}; "
                    f"the others are in {result['results_path']}")


def console_entry_point():
  gin_utils.run(main)


if __name__ == "__main__":
  console_entry_point()
