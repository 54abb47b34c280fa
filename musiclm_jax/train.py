r"""musiclm-train: trains one component, configured entirely by gin.

  musiclm-train --gin_file=experiments/toy_lm.gin --gin.MODEL_DIR=\"/tmp/toy\"

Required macros: MODEL, MODEL_DIR, TRAIN_STEPS, MIXTURE_OR_TASK_NAME,
TASK_FEATURE_LENGTHS (gin/runs/train.gin declares them). The resolved config
is written to MODEL_DIR/config.gin once the model state is ready.
"""
from absl import logging
import gin

from musiclm_jax import gin_utils
from musiclm_jax import trainer

REQUIRED_MACROS = ("MODEL", "MODEL_DIR", "TRAIN_STEPS", "MIXTURE_OR_TASK_NAME", "TASK_FEATURE_LENGTHS")

def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  gin_utils.initialize_distributed_from_flags()
  gin_utils.parse_flags_and_check(REQUIRED_MACROS)
  model_dir = gin.query_parameter("%MODEL_DIR")
  result = gin.get_configurable(trainer.train)(
      on_ready=lambda: gin_utils.write_config(model_dir))
  print(f"trained to step {result['step']}: checkpoints in {result['checkpoint_dir']}, "
        f"metrics in {result['metrics_path']} and {result['tensorboard_dir']}")
  if result["preempted"]:
    logging.warning("stopped by SIGTERM after saving a checkpoint")
    raise SystemExit(trainer.SIGTERM_EXIT_CODE)


def console_entry_point():
  gin_utils.run(main)


if __name__ == "__main__":
  console_entry_point()
