"""Optimizers and learning-rate schedules, chosen from gin by name."""
import optax

from musiclm_jax.errors import UserError


def learning_rate_schedule(peak_value: float = 1e-3, warmup_steps: int = 100,
                           decay: str = "cosine", decay_steps: int = 10_000,
                           end_fraction: float = 0.1) -> optax.Schedule:
  """Linear warm-up to `peak_value`, then `decay`.

  decay: 'cosine' (to end_fraction·peak at warmup+decay_steps), 'rsqrt'
  (T5's 1/sqrt(step) after warm-up) or 'constant'.
  """
  warmup = optax.linear_schedule(0.0, peak_value, max(warmup_steps, 1))
  if decay == "cosine":
    after = optax.cosine_decay_schedule(peak_value, max(decay_steps, 1), alpha=end_fraction)
  elif decay == "rsqrt":
    after = lambda step: peak_value * (max(warmup_steps, 1) / (step + max(warmup_steps, 1))) ** 0.5
  elif decay == "constant":
    after = optax.constant_schedule(peak_value)
  else:
    raise UserError(f"unknown learning-rate decay {decay!r}: use 'cosine', 'rsqrt' or 'constant'")
  return optax.join_schedules([warmup, after], [warmup_steps])


def make_optimizer(name: str = "adamw",
                   learning_rate: float | optax.Schedule | None = None,
                   weight_decay: float = 0.0,
                   b1: float = 0.9, b2: float = 0.99,
                   clip_grad_norm: float | None = 1.0) -> optax.GradientTransformation:
  """Gradient clipping by global norm, then AdamW or Adafactor.

  learning_rate defaults to `learning_rate_schedule()`; Adafactor with
  factored second moments is what T5X trains T5 with.
  """
  lr = learning_rate_schedule() if learning_rate is None else learning_rate
  if name == "adamw":
    opt = optax.adamw(lr, b1=b1, b2=b2, weight_decay=weight_decay)
  elif name == "adafactor":
    opt = optax.adafactor(lr, weight_decay_rate=weight_decay or None)
  elif name == "sgd":
    opt = optax.sgd(lr, momentum=b1)
  else:
    raise UserError(f"unknown optimizer {name!r}: use 'adamw', 'adafactor' or 'sgd'")
  if clip_grad_norm:
    return optax.chain(optax.clip_by_global_norm(clip_grad_norm), opt)
  return opt
