"""The trainer: sharding, resume, accumulation, NaN guard, export."""
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
import pytest

from musiclm_jax import checkpoints
from musiclm_jax import metrics as metrics_lib
from musiclm_jax import optimizers
from musiclm_jax import partitioning
from musiclm_jax import trainer as trainer_lib
from musiclm_jax.data import pipeline
from musiclm_jax.data.synthetic import toy_tasks
from tiny_models import ContextMLPModel, SignSGDModel

LENGTH = 32
TRAIN = pipeline.DatasetConfig(toy_tasks.TOY_TASK_NAME, {"targets": LENGTH}, batch_size=8)


def _batches(n):
  it = pipeline.get_batches(TRAIN)
  return [next(it) for _ in range(n)]


def _run(partitioner, batches, model=None, tx=None, grad_accum_steps=1):
  model = model or ContextMLPModel()
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batches[0].items()}
  trainer = trainer_lib.Trainer(model, partitioner, tx or optax.adamw(3e-3), spec,
                                grad_accum_steps=grad_accum_steps)
  state = trainer.init_state()
  losses = []
  for batch in batches:
    state, m = trainer.train_step(state, partitioner.make_global_batch(batch))
    losses.append(float(m["loss"]))
  return state, losses


def test_sharded_run_matches_one_device_and_really_shards_params():
  batches = _batches(6)
  _, single = _run(partitioning.Partitioner(num_devices=1), batches)
  mesh_partitioner = partitioning.Partitioner(model_parallel=2)
  assert dict(mesh_partitioner.mesh.shape) == {"data": 4, "model": 2}
  state, sharded = _run(mesh_partitioner, batches)
  np.testing.assert_allclose(sharded, single, rtol=2e-5)
  assert single[-1] < single[0]

  embedding = state.params["embedding"]  # [vocab, embed]: vocab → model.
  assert embedding.sharding.spec == P("model", None)
  assert {s.data.shape for s in embedding.addressable_shards} == {(64, 32)}
  mlp_in = state.params["Dense_0"]["kernel"]  # [embed, mlp]
  assert mlp_in.sharding.spec == P(None, "model")
  adam_mu = state.opt_state[0].mu["embedding"]
  assert adam_mu.sharding.spec == P("model", None)


def test_grad_accumulation_matches_the_full_batch():
  batches = _batches(3)
  model = ContextMLPModel(dropout_rate=0.0)
  one = partitioning.Partitioner(num_devices=1)
  full_state, full = _run(one, batches, model)
  accum_state, accum = _run(one, batches, model, grad_accum_steps=4)
  np.testing.assert_allclose(accum, full, rtol=1e-5)
  np.testing.assert_allclose(accum_state.params["embedding"], full_state.params["embedding"],
                             rtol=1e-4, atol=1e-6)


def test_grad_accumulation_with_ragged_padding_gives_the_big_batch_gradients():
  batch = _batches(1)[0]
  # Micro-batch i holds rows i and i + 4: loss tokens per micro-batch 64, 7, 2, 33.
  kept = np.array([LENGTH, 5, 1, 30, LENGTH, 2, 1, 3])
  batch = dict(batch, decoder_loss_weights=(np.arange(LENGTH)[None] < kept[:, None]).astype(np.float32))
  model = ContextMLPModel(dropout_rate=0.0)
  partitioner = partitioning.Partitioner(num_devices=1)
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
  trainer = trainer_lib.Trainer(model, partitioner, optax.sgd(1.0), spec, grad_accum_steps=4)
  state = trainer.init_state()
  before = jax.device_get(state.params)
  (expected_loss, expected_metrics), expected_grads = jax.value_and_grad(
      model.loss_fn, has_aux=True)(before, batch, None)

  state, metrics = trainer.train_step(state, partitioner.make_global_batch(batch))
  grads = jax.tree.map(lambda b, a: b - a, before, jax.device_get(state.params))  # SGD, rate 1
  jax.tree.map(lambda g, e: np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-7),
               grads, expected_grads)
  assert float(metrics["loss"]) == pytest.approx(float(expected_loss), rel=1e-5)
  assert float(metrics["accuracy"]) == pytest.approx(float(expected_metrics["accuracy"]), abs=1e-6)
  assert float(metrics["num_tokens"]) == kept.sum()


def test_adafactor_state_gets_shardings_for_factored_moments():
  tx = optimizers.make_optimizer("adafactor", learning_rate=1e-2)
  state, losses = _run(partitioning.Partitioner(model_parallel=2), _batches(3),
                       ContextMLPModel(embed_dim=128, mlp_dim=128), tx)
  assert np.all(np.isfinite(losses))
  assert state.params["Dense_0"]["kernel"].sharding.spec == P(None, "model")


def _train(model_dir, total_steps, **kwargs):
  defaults = dict(model=ContextMLPModel(), model_dir=str(model_dir), total_steps=total_steps,
                  train_dataset_cfg=TRAIN, learning_rate=3e-3, log_period=1, checkpoint_period=4,
                  partitioner=partitioning.Partitioner(num_devices=1))
  return trainer_lib.train(**{**defaults, **kwargs})


def _losses(model_dir):
  return {r["step"]: r["train/loss"] for r in metrics_lib.read_jsonl(f"{model_dir}/metrics.jsonl")
          if "train/loss" in r}


def test_resumed_run_matches_uninterrupted_run(tmp_path):
  _train(tmp_path / "straight", 12)
  first = _train(tmp_path / "resumed", 12, stop_at_step=6)
  assert first["step"] == 6
  second = _train(tmp_path / "resumed", 12)
  assert second["step"] == 12
  straight, resumed = _losses(tmp_path / "straight"), _losses(tmp_path / "resumed")
  assert sorted(resumed) == list(range(1, 13))
  np.testing.assert_allclose([resumed[s] for s in range(7, 13)],
                             [straight[s] for s in range(7, 13)], rtol=1e-6)


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path):
  schedule = lambda step: jnp.where(step < 5, 1e-3, jnp.nan)
  with pytest.raises(trainer_lib.TrainingDivergedError, match="last good checkpoint: step 4"):
    _train(tmp_path, 20, learning_rate=schedule, checkpoint_period=2)
  ckpt = checkpoints.Checkpointer(tmp_path / "checkpoints")
  assert ckpt.latest_step() == 4
  ckpt.close()


def test_exported_params_give_the_same_logits(tmp_path):
  model = ContextMLPModel()
  _train(tmp_path / "run", 4, model=model)
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in _batches(1)[0].items()}
  partitioner = partitioning.Partitioner(num_devices=1)
  # trainer.train turns a constant rate into a schedule, whose step count is optimizer state.
  tx = optimizers.make_optimizer(learning_rate=optax.constant_schedule(3e-3))
  trainer = trainer_lib.Trainer(model, partitioner, tx, spec)
  ckpt = checkpoints.Checkpointer(tmp_path / "run" / "checkpoints")
  state, consumed = ckpt.restore(4, trainer.abstract_state)
  ckpt.close()
  assert consumed == 4
  tokens = jnp.asarray(_batches(1)[0]["decoder_input_tokens"])
  reference = model.logits(state.params, tokens)

  checkpoints.export_checkpoint(model_dir=str(tmp_path / "run"), output_dir=str(tmp_path / "f32"))
  exported = checkpoints.load_exported_params(tmp_path / "f32", trainer.abstract_state.params)
  np.testing.assert_array_equal(model.logits(exported, tokens), reference)

  checkpoints.export_checkpoint(model_dir=str(tmp_path / "run"), output_dir=str(tmp_path / "bf16"),
                                dtype="bfloat16")
  bf16 = checkpoints.load_exported_params(tmp_path / "bf16", trainer.abstract_state.params)
  np.testing.assert_allclose(model.logits(bf16, tokens), reference, atol=2e-2)
  assert not np.array_equal(model.logits(bf16, tokens), reference)

  other = trainer_lib.Trainer(ContextMLPModel(embed_dim=16), partitioner, tx, spec)
  with pytest.raises(checkpoints.UserError, match="from a different model: parameter 'Dense_0/kernel'"):
    checkpoints.load_exported_params(tmp_path / "f32", other.abstract_state.params)


def test_mfu_is_achieved_over_peak():
  rates = metrics_lib.throughput(step_seconds=0.5, tokens_per_step=1000, flops_per_step=1e9,
                                 peak_flops=4e9)
  assert rates["tokens_per_second"] == 2000
  assert rates["mfu"] == pytest.approx(0.5)
  assert "mfu" not in metrics_lib.throughput(0.5, 1000, 0.0, 4e9)


class _FakeDevice:
  def __init__(self, device_kind, process_index, platform="tpu"):
    self.device_kind, self.process_index, self.platform = device_kind, process_index, platform


def test_peak_covers_the_devices_of_every_host():
  # Two hosts of four v4 chips: the global batch's FLOPs run on all eight.
  devices = [_FakeDevice("TPU v4", host) for host in (0, 1) for _ in range(4)]
  assert metrics_lib.peak_flops(devices) == pytest.approx(8 * 275e12)
  assert metrics_lib.peak_flops(devices, peak_flops_per_device=1e12) == pytest.approx(8e12)
  h100_pcie = [_FakeDevice("NVIDIA H100 PCIe", 0)]
  assert metrics_lib.peak_flops(h100_pcie) == pytest.approx(756e12)


def test_an_unknown_device_kind_is_reported_once_and_can_be_overridden(caplog):
  devices = [_FakeDevice("Imaginary TPU v99", 0)] * 2
  with caplog.at_level("WARNING"):
    assert metrics_lib.peak_flops(devices) == 0.0
    assert metrics_lib.peak_flops(devices) == 0.0
  reports = [r for r in caplog.records if "Imaginary TPU v99" in r.getMessage()]
  assert len(reports) == 1 and "peak_flops_per_device" in reports[0].getMessage()
  assert metrics_lib.peak_flops(devices, peak_flops_per_device=5e12) == pytest.approx(1e13)


def test_train_logs_mfu_over_the_given_peak_and_the_default_schedule(tmp_path):
  total_steps, peak = 3, 1e9
  _train(tmp_path, total_steps, learning_rate=None, peak_flops_per_device=peak)
  records = [r for r in metrics_lib.read_jsonl(f"{tmp_path}/metrics.jsonl") if "train/loss" in r]
  schedule = optimizers.learning_rate_schedule(total_steps)
  for r in records:
    assert r["train/mfu"] == pytest.approx(r["train/tflops_per_second"] * 1e12 / peak, rel=1e-6)
    assert r["train/learning_rate"] == pytest.approx(float(schedule(r["step"] - 1)), abs=1e-12)


def test_ema_tracks_params_with_its_decay():
  batches = _batches(2)
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batches[0].items()}
  partitioner = partitioning.Partitioner(num_devices=1)
  trainer = trainer_lib.Trainer(ContextMLPModel(), partitioner, optax.sgd(0.5), spec, ema_decay=0.75)
  state = trainer.init_state()
  before = np.asarray(state.params["embedding"])
  state, _ = trainer.train_step(state, partitioner.make_global_batch(batches[0]))
  after = np.asarray(state.params["embedding"])
  assert not np.allclose(after, before)
  np.testing.assert_allclose(state.ema_params["embedding"], 0.75 * before + 0.25 * after, rtol=1e-6)


def test_a_model_can_bring_its_own_update():
  batches = _batches(1)
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batches[0].items()}
  partitioner = partitioning.Partitioner(num_devices=1)
  trainer = trainer_lib.Trainer(SignSGDModel(), partitioner, optax.sgd(1.0), spec)
  state = trainer.init_state()
  before = np.asarray(state.params["embedding"])
  state, metrics = trainer.train_step(state, partitioner.make_global_batch(batches[0]))
  step = np.abs(np.asarray(state.params["embedding"]) - before)
  assert int(state.step) == 1 and np.isfinite(float(metrics["loss"]))
  np.testing.assert_allclose(step[step > 0], 1e-3, rtol=1e-3)
  assert (step > 0).mean() > 0.5
  with pytest.raises(trainer_lib.UserError, match="grad_accum_steps"):
    trainer_lib.Trainer(SignSGDModel(), partitioner, optax.sgd(1.0), spec, grad_accum_steps=2)


class _WarnsFromStep3(ContextMLPModel):
  def metrics_warning(self, step, metrics):
    return f"watched step {step} loss {metrics['loss']:.6f}" if step >= 3 else None


def test_train_logs_the_models_metrics_warning_with_each_windows_metrics(tmp_path, caplog):
  with caplog.at_level("WARNING"):
    _train(tmp_path, 5, model=_WarnsFromStep3())
  logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("watched")]
  losses = _losses(tmp_path)
  assert logged == [f"watched step {s} loss {losses[s]:.6f}" for s in (3, 4, 5)]
