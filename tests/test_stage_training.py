"""Each stage LM learns its synthetic task through the trainer, and sharding changes nothing."""
import jax
import numpy as np
import optax
import pytest

from musiclm_jax import metrics as metrics_lib
from musiclm_jax import musiclm_spec
from musiclm_jax import partitioning
from musiclm_jax import trainer as trainer_lib
from musiclm_jax.data import pipeline
from musiclm_jax.data.synthetic import stage_tasks as tasks
from musiclm_jax.layers import transformer
from musiclm_jax.models import lm

# gin/scales/tiny.gin
TINY = transformer.TransformerConfig(d_model=128, num_layers=2, num_heads=4, d_ff=512)
STAGES = musiclm_spec.STAGE_CONFIGS
TRAIN_STEPS = 24


def _dataset(stage_name, split="train", batch_size=8):
  return pipeline.DatasetConfig(tasks.task_name(stage_name),
                                {"targets": tasks.sequence_length(stage_name)}, split=split,
                                batch_size=batch_size, shuffle=split == "train",
                                repeat=split == "train", module=tasks.__name__)


def _unigram_entropy_nats(stage):
  """Entropy of the validation targets' id frequencies: the loss of a context-blind model."""
  seqs = tasks.make_sequences(stage.name, tasks._EXAMPLES_PER_SPLIT["validation"],
                              tasks._SPLIT_SEEDS["validation"])
  targets = seqs[stage.layout.contains(stage.target_kind, seqs)]
  probs = np.unique(targets, return_counts=True)[1] / targets.size
  return float(-(probs * np.log(probs)).sum())


@pytest.mark.parametrize("stage_name", list(STAGES))
def test_stage_learns_below_the_unigram_baseline(stage_name, tmp_path):
  stage = STAGES[stage_name]
  trainer_lib.train(model=lm.DecoderOnlyLM(TINY, stage), model_dir=str(tmp_path),
                    total_steps=TRAIN_STEPS, train_dataset_cfg=_dataset(stage_name),
                    eval_dataset_cfg=_dataset(stage_name, "validation"), eval_period=TRAIN_STEPS,
                    eval_steps=4, learning_rate=3e-3, log_period=TRAIN_STEPS,
                    checkpoint_period=TRAIN_STEPS, async_checkpointing=False,
                    partitioner=partitioning.Partitioner(num_devices=1))
  records = metrics_lib.read_jsonl(tmp_path / "metrics.jsonl")
  eval_loss = [r["eval/loss"] for r in records if "eval/loss" in r][-1]
  unigram = _unigram_entropy_nats(stage)
  assert eval_loss < 0.75 * unigram, (eval_loss, unigram)


def _losses(partitioner, model, batches):
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batches[0].items()}
  trainer = trainer_lib.Trainer(model, partitioner, optax.adamw(3e-3), spec)
  state = trainer.init_state()
  losses = []
  for batch in batches:
    state, metrics = trainer.train_step(state, partitioner.make_global_batch(batch))
    losses.append(float(metrics["loss"]))
  return losses


@pytest.mark.parametrize("stage_name", list(STAGES))
def test_sharded_stage_matches_one_device(stage_name):
  batches = pipeline.get_batches(_dataset(stage_name, batch_size=8))
  batches = [next(batches) for _ in range(3)]
  model = lm.DecoderOnlyLM(TINY, STAGES[stage_name])
  single = _losses(partitioning.Partitioner(num_devices=1), model, batches)
  mesh = partitioning.Partitioner(model_parallel=2)
  assert dict(mesh.mesh.shape) == {"data": 4, "model": 2}
  np.testing.assert_allclose(_losses(mesh, model, batches), single, rtol=2e-5)
  assert single[-1] < single[0]
