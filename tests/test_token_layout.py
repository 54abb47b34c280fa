"""Token layout: offsets, round trips, validation and interleaving."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from musiclm_jax.data import token_layout

LAYOUTS = {
    "semantic": token_layout.semantic_layout(),
    "coarse": token_layout.coarse_layout(),
    "fine": token_layout.fine_layout(),
    "semantic+melody": token_layout.semantic_layout(melody=True),
    "coarse+melody": token_layout.coarse_layout(melody=True),
}


def _random_codes(kind, time, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, kind.codebook_size, size=(time, kind.num_levels))


@pytest.mark.parametrize("name", LAYOUTS)
def test_round_trip_and_reserved_ids(name):
  layout = LAYOUTS[name]
  for kind in layout.kinds:
    codes = _random_codes(kind, time=5)
    ids = layout.encode_stream(kind.name, codes)
    assert ids.shape == (5 * kind.num_levels,)
    assert ids.min() >= token_layout.NUM_RESERVED_IDS
    assert ids.max() < layout.vocab_size
    np.testing.assert_array_equal(layout.decode_stream(kind.name, ids), codes)
    # The extreme codes of every level are valid and never land on a reserved id.
    edges = np.stack([np.zeros(kind.num_levels, int),
                      np.full(kind.num_levels, kind.codebook_size - 1)])
    edge_ids = layout.encode(kind.name, edges)
    assert edge_ids.min() > token_layout.EOS_ID
    np.testing.assert_array_equal(layout.decode(kind.name, edge_ids), edges)


@pytest.mark.parametrize("name", LAYOUTS)
def test_ranges_do_not_overlap_and_vocab_is_rounded(name):
  layout = LAYOUTS[name]
  used = np.zeros(layout.vocab_size, int)
  used[[token_layout.PAD_ID, token_layout.EOS_ID, token_layout.NULL_ID]] += 1
  for kind in layout.kinds:
    for level in range(kind.num_levels):
      low, high = layout.level_id_range(kind.name, level)
      assert high - low == kind.codebook_size
      used[low:high] += 1
  assert used.max() == 1
  assert used.sum() == layout.num_used_ids
  assert layout.vocab_size % 128 == 0
  assert layout.vocab_size - layout.num_used_ids < 128


def test_known_offsets_of_the_semantic_stage():
  layout = token_layout.semantic_layout()
  # Level q of kind K is offset[K] + q * codebook_size + code.
  assert layout.encode("mulan", np.arange(12))[3] == 3 + 3 * 1024 + 3
  assert layout.encode("semantic", [[5]])[0, 0] == 3 + 12 * 1024 + 5
  assert layout.vocab_size == 13440


def test_interleaving_is_time_major():
  layout = token_layout.coarse_layout()
  codes = np.array([[10, 11, 12, 13], [20, 21, 22, 23]])
  ids = layout.encode_stream("coarse", codes)
  offset = layout.offsets["coarse"]
  expected = [offset + q * 1024 + codes[t, q] for t in range(2) for q in range(4)]
  np.testing.assert_array_equal(ids, expected)
  # The allowed range of each flattened position is its level's range.
  low, high = layout.level_id_range("coarse", np.arange(8))
  assert np.all((ids >= low) & (ids < high))
  np.testing.assert_array_equal((low - offset) // 1024, [0, 1, 2, 3, 0, 1, 2, 3])


def test_out_of_range_errors_are_one_line():
  layout = token_layout.coarse_layout()
  with pytest.raises(ValueError, match=r"coarse code 1024 at index \(1, 2\) \(level 2\) "
                     r"is outside \[0, 1024\)") as err:
    layout.encode("coarse", [[0, 0, 0, 0], [0, 0, 1024, 0]])
  assert "\n" not in str(err.value)
  with pytest.raises(ValueError, match="code -1"):
    layout.encode("semantic", [[-1]])
  with pytest.raises(ValueError, match="not a coarse level-0 token"):
    layout.decode("coarse", [[token_layout.PAD_ID, 0, 0, 0]])
  with pytest.raises(ValueError, match="trailing levels axis of size 1"):
    layout.encode("semantic", np.zeros(7, int))
  with pytest.raises(ValueError, match="holds .* not 'fine'"):
    layout.encode("fine", np.zeros((1, 8), int))


def test_works_inside_jit():
  layout = token_layout.fine_layout()
  codes = _random_codes(token_layout.FINE, time=3)

  @jax.jit
  def round_trip(codes):
    ids = layout.encode_stream("fine", codes)
    low, high = layout.level_id_range("fine", jnp.arange(ids.shape[0]))
    return ids, layout.decode_stream("fine", ids), jnp.all((ids >= low) & (ids < high))

  ids, decoded, in_range = round_trip(jnp.asarray(codes))
  np.testing.assert_array_equal(ids, layout.encode_stream("fine", codes))
  np.testing.assert_array_equal(decoded, codes)
  assert bool(in_range)
  assert bool(layout.contains("fine", ids).all())
  assert not bool(layout.contains("coarse", ids).any())
