r"""musiclm-eval: FAD, KLD, MCC, attribute adherence and "is it music" measures, with baselines.

  musiclm-eval --gin_file=runs/eval.gin --gin.SAMPLES_DIR=\"runs/demo/samples\" \
      --gin.DATASET=\"synth_music/tiny\" --gin.DATA_DIR=\"runs/demo/tfds\" \
      [--gin.UNCONDITIONAL_DIR=...] [--gin.MULAN_EXPORT_DIR=... --gin.MULAN_RVQ_PATH=...] \
      [--gin.SOUNDSTREAM_EXPORT_DIR=...] [--gin.JUDGE_SPLIT=\"train\" | --gin.JUDGE_PATH=...]

OUTPUT_DIR (default SAMPLES_DIR) gets eval.json and eval.html; the metric
table is printed. The metrics and clip sets are in musiclm_jax/eval/suite.py.
"""
import gin

from musiclm_jax import gin_utils
from musiclm_jax.eval import report
from musiclm_jax.eval import suite

REQUIRED_MACROS = ("SAMPLES_DIR", "DATASET", "OUTPUT_DIR")


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  gin_utils.parse_flags_and_check(REQUIRED_MACROS)
  result = gin.get_configurable(suite.evaluate)()
  print(report.headline(result))
  print(f"report: {gin.query_parameter('%OUTPUT_DIR')}/{suite.EVAL_HTML}")


def console_entry_point():
  gin_utils.run(main)


if __name__ == "__main__":
  console_entry_point()
