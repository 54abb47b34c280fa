"""`make demo`: the main job.

Until the MusicLM cascade lands, the demo trains the toy decoder-only LM
experiment (gin/experiments/toy_lm.gin) through the real trainer, evaluates
it against the uniform-distribution loss, exports it, and says where
everything went. Re-running resumes from the checkpoints already there.
"""
import math
import os
import time

from absl import flags
import gin

from musiclm_jax import checkpoints
from musiclm_jax import gin_utils
from musiclm_jax import metrics as metrics_lib
from musiclm_jax import trainer
from musiclm_jax.data import toy_tasks

_OUTPUT_DIR = flags.DEFINE_string("output_dir", os.path.join(os.getcwd(), "runs", "demo"),
                                  "Where the demo writes its runs.")


def main(argv):
  del argv
  model_dir = os.path.join(_OUTPUT_DIR.value, "toy_lm")
  gin_utils.parse_gin(["experiments/toy_lm.gin"], [f"MODEL_DIR = {model_dir!r}"])
  start = time.perf_counter()
  result = gin.get_configurable(trainer.train)(on_ready=lambda: gin_utils.write_config(model_dir))
  seconds = time.perf_counter() - start

  evals = [r for r in metrics_lib.read_jsonl(result["metrics_path"]) if "eval/loss" in r]
  uniform = math.log(toy_tasks.TOY_VOCAB_SIZE - toy_tasks.FIRST_ID)
  export_dir = os.path.join(_OUTPUT_DIR.value, "toy_lm_export")
  if not os.path.exists(os.path.join(export_dir, checkpoints.EXPORT_PARAMS_DIR)):
    checkpoints.export_checkpoint(model_dir=model_dir, output_dir=export_dir)

  print(f"\ntoy LM trained to step {result['step']} in {seconds:.0f} s")
  if evals:
    print(f"validation loss {evals[-1]['eval/loss']:.3f} nats/token at step {evals[-1]['step']} "
          f"(uniform: {uniform:.3f}; first-half Markov floor: {toy_tasks.markov_entropy_nats():.3f})")
  print(f"checkpoints:  {result['checkpoint_dir']}")
  print(f"metrics:      {result['metrics_path']}")
  print(f"tensorboard:  tensorboard --logdir {result['tensorboard_dir']}")
  print(f"config:       {os.path.join(model_dir, 'config.gin')}")
  print(f"export:       {export_dir}")


if __name__ == "__main__":
  gin_utils.run(main)
