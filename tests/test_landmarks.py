"""The 131-point schema and IP_LAP's sketch drawing."""

import cv2
import numpy as np
import pytest

from talkjax import landmarks as L


def test_schema_sizes_and_groups():
  assert (L.NUM_POSE, L.NUM_JAW, L.NUM_LIPS, L.NUM_POINTS) == (74, 17, 40, 131)
  assert L.ALL[L.JAW_SLICE] == L.JAW and L.ALL[L.LIPS_SLICE] == L.LIPS
  assert L.ALL[L.MOUTH_LEFT] == 61 and L.ALL[L.INNER_LIP_TOP] == 13 and L.ALL[L.CHIN] == 152
  assert max(L.ALL) < 468


def test_select_from_mesh_picks_the_indices():
  mesh = np.arange(468 * 3, dtype=np.float32).reshape(468, 3)
  sub = L.select_from_mesh(mesh)
  assert sub.shape == (131, 3)
  np.testing.assert_array_equal(sub[:, 0] // 3, np.array(L.ALL))
  with pytest.raises(ValueError, match="468"):
    L.select_from_mesh(np.zeros((100, 2)))


def test_sketch_has_125_edges_all_between_schema_points():
  assert L.SKETCH_EDGES.shape == (125, 2)
  assert L.SKETCH_EDGES.min() >= 0 and L.SKETCH_EDGES.max() < 131
  # Every lip point is on the drawing, and pose points used by the sketch exist.
  lip_positions = set(range(L.LIPS_SLICE.start, L.LIPS_SLICE.stop))
  assert lip_positions <= set(L.SKETCH_EDGES.ravel().tolist())


def test_line_rasteriser_equals_opencv_pixel_for_pixel():
  rng = np.random.default_rng(0)
  starts = rng.integers(0, 48, (3000, 2))
  ends = rng.integers(0, 48, (3000, 2))
  xs, ys = L._line_pixels(starts, ends)  # pylint: disable=protected-access
  lengths = np.maximum(np.abs(ends - starts).max(1), 0) + 1
  offsets = np.concatenate([[0], np.cumsum(lengths)])
  for i in range(len(starts)):
    ours = np.zeros((48, 48), np.uint8)
    ours[ys[offsets[i]:offsets[i + 1]], xs[offsets[i]:offsets[i + 1]]] = 1
    ref = np.zeros((48, 48), np.uint8)
    cv2.line(ref, tuple(int(v) for v in starts[i]), tuple(int(v) for v in ends[i]), 1, 1)
    np.testing.assert_array_equal(ours, ref, err_msg=f"line {starts[i]} -> {ends[i]}")


def test_sketch_of_a_known_small_case_lights_exactly_the_expected_pixels():
  # All points far outside [0, 1] except a three-point chain of the outer upper lip: 61 -> 185 -> 40.
  lm = np.full((131, 2), 5.0)
  size = 16
  lm[L.index_of(61)] = (1 / 16, 2 / 16)    # pixel (1, 2)
  lm[L.index_of(185)] = (9.5 / 16, 5 / 16)  # pixel (9, 5)
  lm[L.index_of(40)] = (9 / 16, 9.99 / 16)  # pixel (9, 9)
  img = L.draw_sketch(lm, size)
  assert img.shape == (16, 16, 3) and img.dtype == np.uint8
  expected = np.zeros((16, 16), np.uint8)
  for (x, y) in [(1, 2), (2, 2), (3, 3), (4, 3), (5, 3), (6, 4), (7, 4), (8, 5), (9, 5),
                 (9, 6), (9, 7), (9, 8), (9, 9)]:
    expected[y, x] = 224
  np.testing.assert_array_equal(img[:, :, 0], expected)
  np.testing.assert_array_equal(img[:, :, 0], img[:, :, 2])


def test_normalise_round_trip_and_batched_sketches():
  rng = np.random.default_rng(1)
  lm = rng.uniform(20, 100, (4, 131, 2)).astype(np.float32)
  box = np.array([10.0, 15.0, 110.0, 120.0], np.float32)
  norm = L.normalize_to_box(lm, box)
  assert norm.min() >= 0 and norm.max() <= 1
  np.testing.assert_allclose(L.denormalize_from_box(norm, box), lm, atol=1e-4)
  sk = L.draw_sketches(norm, 32)
  assert sk.shape == (4, 32, 32, 3)
  assert set(np.unique(sk)) == {0, 224}
  np.testing.assert_array_equal(sk[2], L.draw_sketch(norm[2], 32))
