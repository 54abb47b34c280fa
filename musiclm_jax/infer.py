r"""musiclm-infer: text prompts in, 24 kHz music out, through the MusicLM cascade.

  musiclm-infer --gin_file=runs/infer.gin --gin.PROMPTS_FILE=\"prompts.txt\" \
      --gin.OUTPUT_DIR=\"/tmp/samples\" \
      --gin.MULAN_EXPORT_DIR=\"...\" --gin.MULAN_RVQ_PATH=\"...\" \
      --gin.SOUNDSTREAM_EXPORT_DIR=\"...\" --gin.SEMANTIC_EXPORT_DIR=\"...\" \
      --gin.COARSE_EXPORT_DIR=\"...\" --gin.FINE_EXPORT_DIR=\"...\"

Prompts: one per line, plain text or JSON (see musiclm_jax/inference.py); "melody_from"
lines also need MELODY_EXPORT_DIR and MELODY_RVQ_PATH, and FINE_EXPORT_DIR may be left
out with DECODE_LEVELS at most 4 (gin/musiclm.gin).
Knobs: SECONDS, NUM_SAMPLES, SEED, TOP_K, TOP_P, GUIDANCE_SCALE, BATCH_SIZE,
USE_CACHE and `cascade.Windows` (gin/runs/infer.gin, gin/musiclm.gin). SAVE_TOKENS=True
also writes each sample's tokens (M_T, semantic, acoustic) as audio/*.npz beside its
WAV, named in its record (for eval/token_probes.py).

OUTPUT_DIR gets audio/*.wav and *.png, index.html, results.jsonl (per line:
settings, seeds, files, timings, or the line's error), run.json and
config.gin, each line's as soon as it finishes. A bad line is reported and the
others still run; the exit status is 2 if any failed. An OUTPUT_DIR with
results is refused unless IF_OUTPUT_EXISTS is "resume" (run the lines not yet
recorded) or "overwrite".

On a pod (or with --coordinator_address, --num_processes, --process_id) each
process generates its share of the lines into OUTPUT_DIR/process-I-of-N/, and
the last to finish writes OUTPUT_DIR/results.jsonl and index.html over all.
"""
import gin
import jax

from musiclm_jax import gin_utils
from musiclm_jax import inference
from musiclm_jax.errors import UserError

REQUIRED_MACROS = ("PROMPTS_FILE", "OUTPUT_DIR", "MULAN_EXPORT_DIR", "MULAN_RVQ_PATH",
                   "SOUNDSTREAM_EXPORT_DIR", "SEMANTIC_EXPORT_DIR", "COARSE_EXPORT_DIR")


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  gin_utils.initialize_distributed_from_flags()
  gin_utils.parse_flags_and_check(REQUIRED_MACROS)
  # config.gin goes in only once OUTPUT_DIR is claimed: a refused run must not touch it.
  result = gin.get_configurable(inference.infer)(
      config_text=gin.config_str(), process_index=jax.process_index(),
      process_count=jax.process_count())
  print(f"generated {result['num_ok']} prompt(s): {result['index_path']}")
  if result["errors"]:
    raise UserError(f"{len(result['errors'])} prompt(s) failed, first {result['errors'][0]}; "
                    f"the others are in {result['results_path']}")


def console_entry_point():
  gin_utils.run(main)


if __name__ == "__main__":
  console_entry_point()
