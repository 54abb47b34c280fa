"""Opening a prepared TFDS audio dataset, with the one-line errors a user can act on.

  builder, feature = open_audio_dataset("synth_music/tiny", "runs/tfds", sample_rate_hz=24_000)

Shared by the codec's and MuLan's batch sources and by musiclm-tokenize.
"""
import tensorflow_datasets as tfds

from musiclm_jax.errors import UserError


def open_audio_dataset(dataset: str, data_dir: str | None, audio_key: str = "audio",
                       sample_rate_hz: int | None = None
                       ) -> tuple[tfds.core.DatasetBuilder, tfds.features.Audio]:
  """(builder, its audio feature) of a prepared TFDS dataset.

  sample_rate_hz: the rate the caller needs; a dataset at another rate is an
  error (None: any rate, for callers that resample).
  Raises UserError if the dataset is not prepared in `data_dir`, has no audio
  feature `audio_key`, or is at another rate.
  """
  try:
    builder = tfds.builder(dataset, data_dir=data_dir)
    builder.info.splits  # pylint: disable=pointless-statement  (fails if not prepared)
  except Exception as error:  # pylint: disable=broad-except  (TFDS raises many kinds)
    # TFDS's messages list every registered dataset over many lines: keep the first.
    reason = next(iter(str(error).splitlines()), type(error).__name__)
    raise UserError(f"cannot open TFDS dataset {dataset!r} in {data_dir}: prepare it first "
                    f"(e.g. `tfds build`) or fix DATASET/DATA_DIR ({reason})") from None
  features = builder.info.features
  feature = features[audio_key] if audio_key in features else None
  if not isinstance(feature, tfds.features.Audio):
    raise UserError(f"{dataset} has no audio feature {audio_key!r}: set audio_key to one of "
                    f"{list(features)}")
  rate = feature.sample_rate
  if sample_rate_hz is not None and rate is not None and rate != sample_rate_hz:
    raise UserError(f"{dataset} is at {rate} Hz but the model needs {sample_rate_hz} Hz: "
                    "resample the dataset or set sample_rate_hz")
  return builder, feature
