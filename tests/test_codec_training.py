"""SoundStream through the trainer: the GAN step, the codebook EMA, checkpoint resume."""
import pathlib

import jax
import numpy as np
import pytest

from musiclm_jax import metrics as metrics_lib
from musiclm_jax import partitioning
from musiclm_jax import trainer as trainer_lib
from musiclm_jax.data import audio_batches
from musiclm_jax.layers import rvq
from musiclm_jax.models import discriminators
from musiclm_jax.models import soundstream

# Hop 8 instead of 480 and one residual unit per block: the trainer, not the
# architecture, is under test here, and every conv adds seconds of XLA compile.
CONFIG = soundstream.SoundStreamConfig(channels=2, embedding_dim=8, strides=(2, 4), dilations=(1,),
                                       num_levels=3, codebook_size=16, dead_code_threshold=0.1)
DISCRIMINATORS = discriminators.DiscriminatorConfig(
    stft_fft_sizes=(256,), stft_channels=2, wave_scales=1, wave_channels=2, wave_max_channels=8,
    wave_downsamples=1)


def _model(adversarial_start_step=1, **start_steps):
  return soundstream.SoundStreamModel(CONFIG, DISCRIMINATORS, adversarial_start_step=adversarial_start_step,
                                      mel_fft_sizes=(256,), **start_steps)


@pytest.fixture(scope="module")
def source(synth_music_micro):
  root = pathlib.Path(synth_music_micro.data_dir).parents[2]
  return audio_batches.AudioBatchSource("synth_music/micro", data_dir=str(root), batch_size=2,
                                        crop_seconds=0.1)


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _changed(before, after):
  return any(not np.array_equal(a, b) for a, b in zip(_leaves(before), _leaves(after)))


def _reconstruction_loss_without_mel(model, metrics):
  w = model.loss_weights
  return w.waveform * metrics["waveform_l1"] + w.commitment * metrics["commitment_loss"]


def test_gan_step_updates_generator_discriminator_and_codebooks(source):
  batches = source.get_batches()
  first = next(batches)
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in first.items()}
  partitioner = partitioning.Partitioner(num_devices=1)
  model = _model(mel_start_step=1, quantizer_start_step=1)
  trainer = trainer_lib.Trainer(model, partitioner, soundstream.gan_optimizer(1e-3), spec)
  state0 = jax.device_get(trainer.init_state())
  assert float(state0.params["quantizer"]["initialized"]) == 0.0

  state1, metrics1 = trainer.train_step(trainer.init_state(), partitioner.make_global_batch(first))
  state1 = jax.device_get(state1)
  assert _changed(state0.params["generator"], state1.params["generator"])
  # Step 0 is before adversarial_start_step=1: the discriminators stay as they were.
  assert not _changed(state0.params["discriminator"], state1.params["discriminator"])
  assert float(metrics1["discriminator_loss"]) == 0.0
  # ... and before quantizer_start_step=1: no RVQ yet, and no codebook seeded.
  assert float(state1.params["quantizer"]["initialized"]) == 0.0
  assert not _changed(state0.params["quantizer"], state1.params["quantizer"])
  assert float(metrics1["commitment_loss"]) == 0.0
  # ... and before mel_start_step=1: the mel loss is measured but not trained on.
  assert float(metrics1["mel_loss"]) > 0.1
  np.testing.assert_allclose(metrics1["reconstruction_loss"],
                             _reconstruction_loss_without_mel(model, metrics1), rtol=1e-5)

  # A codec that is never adversarial (None) trains as one before its adversarial start, and
  # its step is compiled without the discriminators.
  never = trainer_lib.Trainer(_model(None, mel_start_step=1, quantizer_start_step=1), partitioner,
                              soundstream.gan_optimizer(1e-3), spec)
  never_state, _ = never.train_step(never.init_state(), partitioner.make_global_batch(first))
  for a, b in zip(_leaves(never_state.params), _leaves(state1.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  convolutions = [t.lower_train_step().as_text().count("convolution") for t in (never, trainer)]
  assert convolutions[0] < convolutions[1], convolutions

  state2, metrics2 = trainer.train_step(state1, partitioner.make_global_batch(next(batches)))
  state2 = jax.device_get(state2)
  assert _changed(state1.params["generator"], state2.params["generator"])
  assert _changed(state1.params["discriminator"], state2.params["discriminator"])
  assert _changed(state1.params["quantizer"]["codebooks"], state2.params["quantizer"]["codebooks"])
  assert float(state2.params["quantizer"]["initialized"]) == 1.0
  assert float(metrics2["commitment_loss"]) > 0.0
  assert int(state2.step) == 2
  for name in ("loss", "mel_loss", "discriminator_loss", "generator_adversarial", "feature_matching",
               "codebook_perplexity", "restarted_codes"):
    assert np.isfinite(float(metrics2[name])), name
  assert float(metrics2["discriminator_loss"]) > 0.0
  np.testing.assert_allclose(
      metrics2["reconstruction_loss"],
      _reconstruction_loss_without_mel(model, metrics2) + model.loss_weights.mel * metrics2["mel_loss"],
      rtol=1e-5)

  evaluation = trainer.eval_step(state2.params, partitioner.make_global_batch(first))
  assert {"mel_distance", "si_snr_db", "mel_loss", "commitment_loss"} <= set(evaluation)


def _train(source, model_dir, **kwargs):
  return trainer_lib.train(model=_model(), model_dir=str(model_dir), total_steps=4,
                           train_dataset_cfg=source, optimizer=soundstream.gan_optimizer,
                           learning_rate=1e-3, log_period=1, checkpoint_period=2,
                           partitioner=partitioning.Partitioner(num_devices=1), **kwargs)


def test_resumed_codec_run_matches_an_uninterrupted_one(source, tmp_path):
  _train(source, tmp_path / "straight")
  assert _train(source, tmp_path / "resumed", stop_at_step=2)["step"] == 2
  assert _train(source, tmp_path / "resumed")["step"] == 4

  def losses(run):
    records = metrics_lib.read_jsonl(tmp_path / run / "metrics.jsonl")
    return {r["step"]: (r["train/loss"], r["train/discriminator_loss"]) for r in records
            if "train/loss" in r}

  straight, resumed = losses("straight"), losses("resumed")
  assert sorted(resumed) == [1, 2, 3, 4]
  np.testing.assert_allclose([resumed[s] for s in (3, 4)], [straight[s] for s in (3, 4)], rtol=1e-5)


def test_a_collapsed_codebook_is_warned_of_once_the_quantizer_has_had_its_grace_steps():
  """Perplexity from `rvq.codebook_metrics` of codes as a collapsed RVQ gives them (two
  codes per level) and as a training one does (spread over the codebook)."""
  model = soundstream.SoundStreamModel(soundstream.SoundStreamConfig(), quantizer_start_step=150)
  rng = np.random.default_rng(0)
  mask = np.ones((8, 12), bool)
  collapsed = rvq.codebook_metrics(rng.integers(0, 2, (8, 25, 12)), mask, 1024)
  training = rvq.codebook_metrics(rng.integers(0, 1024, (8, 25, 12)), mask, 1024)
  collapsed, training = ({k: float(v) for k, v in m.items()} for m in (collapsed, training))
  grace_over = 150 + soundstream.COLLAPSE_GRACE_STEPS
  assert "collapsed" in model.metrics_warning(grace_over, collapsed)
  assert "LEARNING_RATE" in model.metrics_warning(grace_over, collapsed)
  assert model.metrics_warning(grace_over - 1, collapsed) is None
  assert model.metrics_warning(grace_over, training) is None
  assert model.metrics_warning(grace_over, {"loss": 1.0}) is None  # eval-style metrics: no check
