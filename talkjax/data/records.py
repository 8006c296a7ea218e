"""The record format of preprocessed talkjax datasets: named arrays and byte blobs, never pickle.

One record is one byte string (one ArrayRecord entry)::

  b"TJREC1\\n"         magic and format version (7 bytes)
  uint32 LE           length H of the header
  H bytes             UTF-8 JSON header: {"kind", "meta", "arrays", "blobs"}
  payload             array bytes and blobs, each starting at an 8-byte aligned offset

``arrays`` maps a name to ``{"dtype": "<f4", "shape": [...], "offset": o}`` (little-endian numeric
dtypes only: no object arrays, so decoding never runs code); ``blobs`` maps a name to ``[offset,
length]`` (JPEG bytes). Decoded arrays are read-only views into the record bytes (no copy).

A dataset (see :mod:`talkjax.data.shards`) stores two kinds of record, a clip *segment* followed by
its frames, so a sampler reads a segment's small arrays and then only the frames it needs:

``kind = "segment"`` (one stretch of a clip with a face on every frame, at most
``preprocess.MAX_RECORD_SECONDS`` long). ``T`` frames at ``fps`` (25); ``S`` = ``meta["size"]``
(IP_LAP crop), ``F`` = ``meta["face_size"]`` (loose face crop):

=================  ====================  ===========================================================
array              shape, dtype          contents
=================  ====================  ===========================================================
landmarks          (T, 131, 2) float32   IP_LAP points in pixels of the S x S IP_LAP crop
boxes              (T, 4) float32        IP_LAP crop boxes (x0, y0, x1, y1) in source-frame pixels
face_landmarks     (T, 131, 2) float32   the same points in pixels of the F x F loose face crop
face_boxes         (T, 4) float32        loose face crop boxes in source-frame pixels
interpolated       (T,) bool             the face was interpolated across a short detection gap
mel                (80, M) float32       Wav2Lip mel frames ``mel_start .. mel_start + M`` of the clip
visemes            (T, 3) float32        synthetic corpus only: openness, width, roundness
=================  ====================  ===========================================================

``meta``: ``key`` (``<clip>#<segment>``), ``clip`` (id: source path relative to the input root,
without extension), ``source`` (absolute path), ``speaker``, ``segment``, ``start`` (first frame,
in the clip's 25 fps frame numbering), ``num_frames`` (T), ``fps``, ``frame_size`` ([H, W] of the
source), ``size`` (S), ``face_size`` (F), ``mel_start``, ``mel_total`` (mel frames of the whole
clip: a window ``[s, s + 16)`` is real audio iff ``0 <= s`` and ``s + 16 <= mel_total``),
``landmark_source`` (``"mediapipe"`` or ``"sidecar"``), ``pair`` (``[group, member]`` for
``<name>_a`` / ``<name>_b`` clips, else null).

``kind = "frame"`` (the ``t``-th frame of the segment stored just before it): blobs ``image`` (JPEG,
S x S IP_LAP crop) and ``face`` (JPEG, F x F loose crop); ``meta = {"key": segment key, "t": t}``.

Point and box coordinates are continuous pixel coordinates (pixel (i, j) spans [j, j+1) x [i, i+1)).
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

from talkjax.errors import MediaError

MAGIC = b"TJREC1\n"
_LEN = struct.Struct("<I")
_ALIGN = 8
# Numeric little-endian dtypes only (no objects: decoding must never execute anything).
_DTYPES = frozenset({"|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8"})
MAX_HEADER_BYTES = 1 << 24

SEGMENT = "segment"
FRAME = "frame"
DEFAULT_JPEG_QUALITY = 95


@dataclasses.dataclass(frozen=True)
class Record:
  """A decoded record: ``kind``, JSON ``meta``, named ``arrays`` and named ``blobs`` (bytes)."""
  kind: str
  meta: dict[str, Any]
  arrays: dict[str, np.ndarray]
  blobs: dict[str, bytes]


def _pad(n: int) -> int:
  return (-n) % _ALIGN


def encode(kind: str, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None,
           blobs: Mapping[str, bytes] | None = None) -> bytes:
  """Serialises a record (see the module docstring). Arrays are stored little-endian, C order."""
  arrays = arrays or {}
  blobs = blobs or {}
  overlap = set(arrays) & set(blobs)
  if overlap:
    raise ValueError(f"record fields {sorted(overlap)} are both an array and a blob")
  parts: list[bytes] = []
  offset = 0
  array_header, blob_header = {}, {}
  for name, value in arrays.items():
    arr = np.asarray(value)
    dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    if dtype.str not in _DTYPES:
      raise ValueError(f"record array {name!r}: dtype {arr.dtype} cannot be stored (numeric dtypes only)")
    data = np.ascontiguousarray(arr, dtype=dtype).tobytes()
    array_header[name] = {"dtype": dtype.str, "shape": list(arr.shape), "offset": offset}
    parts.append(data + b"\0" * _pad(len(data)))
    offset += len(data) + _pad(len(data))
  for name, blob in blobs.items():
    if not isinstance(blob, (bytes, bytearray, memoryview)):
      raise ValueError(f"record blob {name!r}: expected bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    blob_header[name] = [offset, len(blob)]
    parts.append(blob + b"\0" * _pad(len(blob)))
    offset += len(blob) + _pad(len(blob))
  header = json.dumps({"kind": kind, "meta": dict(meta), "arrays": array_header, "blobs": blob_header},
                      separators=(",", ":"), allow_nan=False).encode("utf-8")
  head = MAGIC + _LEN.pack(len(header)) + header
  return head + b"\0" * _pad(len(head)) + b"".join(parts)


def decode(data: bytes, name: str = "record") -> Record:
  """Parses a record; raises ``MediaError(name, ...)`` for anything malformed."""
  view = memoryview(data)
  fixed = len(MAGIC) + _LEN.size
  if len(view) < fixed or bytes(view[:len(MAGIC)]) != MAGIC:
    raise MediaError(name, "not a talkjax record (bad magic; wrong file or format version?)")
  (header_len,) = _LEN.unpack_from(view, len(MAGIC))
  if header_len > MAX_HEADER_BYTES or fixed + header_len > len(view):
    raise MediaError(name, f"corrupt record: header of {header_len} bytes in a {len(view)}-byte record")
  try:
    header = json.loads(bytes(view[fixed:fixed + header_len]).decode("utf-8"))
  except (UnicodeDecodeError, ValueError) as e:
    raise MediaError(name, f"corrupt record header: {e}") from e
  if not isinstance(header, dict) or not all(k in header for k in ("kind", "meta", "arrays", "blobs")):
    raise MediaError(name, "corrupt record header: missing kind/meta/arrays/blobs")
  start = fixed + header_len
  start += _pad(start)
  payload = view[start:]
  arrays: dict[str, np.ndarray] = {}
  try:
    for key, spec in header["arrays"].items():
      dtype = spec["dtype"]
      if dtype not in _DTYPES:
        raise MediaError(name, f"array {key!r} has unsupported dtype {dtype!r}")
      shape = tuple(int(s) for s in spec["shape"])
      off = int(spec["offset"])
      if any(s < 0 for s in shape) or off < 0:
        raise MediaError(name, f"array {key!r}: negative shape or offset")
      count = int(np.prod(shape, dtype=np.int64))
      nbytes = count * np.dtype(dtype).itemsize
      if off + nbytes > len(payload):
        raise MediaError(name, f"array {key!r} runs past the end of the record (truncated?)")
      arrays[key] = np.frombuffer(payload, dtype=np.dtype(dtype), count=count, offset=off).reshape(shape)
    blobs = {}
    for key, (off, length) in header["blobs"].items():
      off, length = int(off), int(length)
      if off < 0 or length < 0 or off + length > len(payload):
        raise MediaError(name, f"blob {key!r} runs past the end of the record (truncated?)")
      blobs[key] = bytes(payload[off:off + length])
  except (KeyError, TypeError, ValueError) as e:
    if isinstance(e, MediaError):
      raise
    raise MediaError(name, f"corrupt record header: {e}") from e
  return Record(kind=str(header["kind"]), meta=dict(header["meta"]), arrays=arrays, blobs=blobs)


# ------------------------------------------------------------------------------------------------
# JPEG


def encode_jpeg(image: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
  """(H, W, 3) uint8 RGB -> JPEG bytes (4:2:0, like the cv2 default the reference projects used)."""
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f"encode_jpeg: expected an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
  buf = io.BytesIO()
  Image.fromarray(image, mode="RGB").save(buf, format="JPEG", quality=int(quality))
  return buf.getvalue()


def decode_jpeg(data: bytes, name: str = "jpeg", size: tuple[int, int] | None = None) -> np.ndarray:
  """JPEG bytes -> (H, W, 3) uint8 RGB; ``MediaError(name, ...)`` if they do not decode.

  With ``size = (width, height)`` known (the stored crop size), libjpeg is called directly: PIL's
  ``Image.open`` parses the JPEG markers in Python, which costs more than decoding a 128 px crop
  (0.125 vs 0.19 ms here, same pixels).
  """
  if size is not None:
    try:
      return np.asarray(Image.frombytes("RGB", tuple(size), data, "jpeg", "RGB", ""))
    except (OSError, ValueError) as e:
      raise MediaError(name, f"corrupt JPEG frame (or not {size[0]}x{size[1]}): {e}") from e
  try:
    with Image.open(io.BytesIO(data)) as img:
      img.load()
      if img.mode != "RGB":
        img = img.convert("RGB")
      return np.asarray(img)
  except (OSError, ValueError, SyntaxError) as e:
    raise MediaError(name, f"corrupt JPEG frame: {e}") from e
