"""Optimizers and learning-rate schedules, chosen from gin by name."""
import optax

from musiclm_jax.errors import UserError


def learning_rate_schedule(total_steps: int, peak_value: float = 1e-3, warmup_steps: int = 100,
                           decay: str = "cosine", end_fraction: float = 0.1) -> optax.Schedule:
  """Linear warm-up to `peak_value` at step `warmup_steps`, then `decay`.

  decay: 'cosine' (down to end_fraction·peak at step total_steps - 1, the
  last update of a run of total_steps), 'rsqrt' (T5's 1/sqrt(step) after
  warm-up) or 'constant'. This is also `trainer.train`'s schedule when it is
  given no learning rate.
  """
  warmup = optax.linear_schedule(0.0, peak_value, max(warmup_steps, 1))
  if decay == "cosine":
    # The decay starts after warm-up, so it spans the steps that remain.
    after = optax.cosine_decay_schedule(peak_value, max(total_steps - 1 - warmup_steps, 1),
                                        alpha=end_fraction)
  elif decay == "rsqrt":
    after = lambda step: peak_value * (max(warmup_steps, 1) / (step + max(warmup_steps, 1))) ** 0.5
  elif decay == "constant":
    after = optax.constant_schedule(peak_value)
  else:
    raise UserError(f"unknown learning-rate decay {decay!r}: use 'cosine', 'rsqrt' or 'constant'")
  return optax.join_schedules([warmup, after], [warmup_steps])


def make_optimizer(name: str = "adamw", *,
                   learning_rate: float | optax.Schedule,
                   weight_decay: float = 0.0,
                   b1: float = 0.9, b2: float = 0.99,
                   clip_grad_norm: float | None = 1.0) -> optax.GradientTransformation:
  """Gradient clipping by global norm, then AdamW or Adafactor.

  Adafactor with factored second moments is what T5X trains T5 with. The
  learning rate has no default here: a schedule needs the run's length,
  which `trainer.train` knows.
  """
  if name == "adamw":
    opt = optax.adamw(learning_rate, b1=b1, b2=b2, weight_decay=weight_decay)
  elif name == "adafactor":
    opt = optax.adafactor(learning_rate, weight_decay_rate=weight_decay or None)
  elif name == "sgd":
    opt = optax.sgd(learning_rate, momentum=b1)
  else:
    raise UserError(f"unknown optimizer {name!r}: use 'adamw', 'adafactor' or 'sgd'")
  if clip_grad_norm:
    return optax.chain(optax.clip_by_global_norm(clip_grad_norm), opt)
  return opt
