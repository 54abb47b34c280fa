r"""Quality of a trained codec on held-out clips, per bitrate, against an untrained one.

  .venv/bin/python benchmarks/codec_quality.py \
    --gin_file=experiments/soundstream_synth.gin --gin.DATA_DIR=\"runs/tfds\" \
    --model_dir=runs/soundstream_tiny

Reads the codec and dataset from the same gin config as training, restores the
latest checkpoint of --model_dir, reconstructs the first --clip_seconds of
every clip of --split (the test split shares no piece with train) through 12,
8, 4 and 1 RVQ levels, and prints one JSON line per row plus a table:
multi-scale mel distance (lower is better) and SI-SNR (higher is better). The
untrained row is the same architecture at initialisation with k-means-seeded
codebooks. WAVs of the first --num_wavs clips go to MODEL_DIR/reconstructions/.
"""
import json
import os

from absl import flags
import gin
import numpy as np

from musiclm_jax import checkpoints
from musiclm_jax import gin_models
from musiclm_jax import gin_utils
from musiclm_jax.data import audio_batches
from musiclm_jax.eval import codec

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Training run folder.", required=True)
_SPLIT = flags.DEFINE_string("split", "test", "Held-out split.")
_CLIP_SECONDS = flags.DEFINE_float("clip_seconds", 4.0, "Seconds measured per clip.")
_BATCH = flags.DEFINE_integer("batch_size", 4, "Clips per batch.")
_LEVELS = flags.DEFINE_list("levels", ["12", "8", "4", "1"], "RVQ levels to measure.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_NUM_WAVS = flags.DEFINE_integer("num_wavs", 3, "Reconstructions to save as WAV.")


def main(argv):
  del argv
  gin_utils.parse_flags_and_check(("MODEL", "DATASET", "DATA_DIR"))
  model = gin_models.parsed_model()
  dataset, data_dir = gin.query_parameter("%DATASET"), gin.query_parameter("%DATA_DIR")
  rate_hz = model.config.sample_rate_hz
  source = audio_batches.AudioBatchSource(dataset, data_dir=data_dir, split=_SPLIT.value,
                                          batch_size=_BATCH.value, crop_seconds=_CLIP_SECONDS.value,
                                          sample_rate_hz=rate_hz, repeat=False)
  batches = [b["audio"] for b in source.get_batches()]
  levels = [int(n) for n in _LEVELS.value]

  step = _STEP.value or checkpoints.Checkpointer(os.path.join(_MODEL_DIR.value, "checkpoints")).latest_step()
  params = codec.load_trained_codec(model, _MODEL_DIR.value, step)
  trained, examples = codec.codec_quality(model, params, batches, levels, keep_examples=_NUM_WAVS.value)
  train_audio = next(audio_batches.AudioBatchSource(
      dataset, data_dir=data_dir, split="train", batch_size=8, crop_seconds=1.0,
      sample_rate_hz=rate_hz).get_batches())["audio"]
  untrained, _ = codec.codec_quality(model, codec.untrained_codec(model, train_audio), batches,
                                     levels[:1])
  rows = [dict(r, codec=f"trained (step {step})") for r in trained]
  rows += [dict(r, codec="untrained") for r in untrained]
  out_dir = os.path.join(_MODEL_DIR.value, "reconstructions")
  codec.save_examples(out_dir, np.concatenate(batches)[:_NUM_WAVS.value], examples, rate_hz)
  with open(os.path.join(_MODEL_DIR.value, "codec_quality.jsonl"), "w") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
      print(json.dumps(row))
  print("\n| codec | levels | kbps | mel distance | SI-SNR (dB) |\n|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['codec']} | {r['levels']} | {r['bitrate_bps'] / 1000:.1f} | "
          f"{r['mel_distance']:.3f} | {r['si_snr_db']:.2f} |")
  print(f"\n{rows[0]['clips']} clips x {_CLIP_SECONDS.value} s of '{_SPLIT.value}'; WAVs in {out_dir}")


if __name__ == "__main__":
  gin_utils.run(main)
