"""A restricted unpickler for paddle state files: what ``paddle.save`` writes, and nothing else.

``pickle`` runs code by design, and even without code a few crafted bytes can
make it allocate gigabytes (a memo index, an array header) or crash the
interpreter (a tuple nested 200,000 deep, hashed as a dict key).  This reader
is the pure-Python unpickler (its memo is a dict, its stack a list) with:

- globals limited to the numpy pieces ``paddle.save`` uses, each wrapped so
  it can only build what a state file holds (protocol 2's ``_codecs.encode``
  of latin-1 text included);
- arrays only of plain numeric dtypes whose bytes are all in the file: no
  zero-size dtypes, so no zero-stride views and no allocation beyond the data;
- tuples and frozensets at most ``MAX_DEPTH`` deep, and no opcodes that call
  constructors (``NEWOBJ``, ``INST``, ``OBJ``, extension registry);
- containers, marks and memo entries counted against a budget in proportion to
  the file and far above what a state dict needs (one byte of ``(`` or ``}``
  costs the pure-Python unpickler a list or a dict: 50 MB of them once took
  3.2 GB); integers of at most 64 bits.

Any violation raises ``Refused`` with a sentence naming it.
"""

from __future__ import annotations

import codecs
import io
import pickle

import numpy as np
from numpy._core import multiarray

MAX_DEPTH = 32
# A state dict of this project's largest network and its Adam state makes ~2,500 containers and memo
# entries; each costs the unpickler ~100 bytes, so the cap holds that under 30 MB whatever the file.
MAX_CONTAINERS = 200_000
MAX_INT_BITS = 64
NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float: all a tensor can hold


class Refused(pickle.UnpicklingError):
    """The file asks for something no state dict contains."""


class _NdarrayClass:
    """Stands for ``numpy.ndarray`` as an argument of ``_reconstruct``; calling it is refused."""

    def __new__(cls, *args, **kwargs):
        raise Refused("it calls numpy.ndarray directly, which allocates what the file asks")


def _dtype(spec, align=False, copy=True) -> np.dtype:
    dtype = np.dtype(spec)
    _check_dtype(dtype)
    return dtype


def _check_dtype(dtype) -> None:
    if not isinstance(dtype, np.dtype) or dtype.kind not in NUMERIC_KINDS or dtype.itemsize == 0 or dtype.fields:
        raise Refused(f"it holds an array of dtype {dtype}, which no tensor has")


def _reconstruct(cls, shape, typecode) -> np.ndarray:
    if cls is not _NdarrayClass or shape != (0,):
        raise Refused("it builds an array in a way paddle.save never does")
    return multiarray._reconstruct(np.ndarray, (0,), b"b")


def _scalar(dtype, data=None):
    _check_dtype(dtype)
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise Refused(f"it holds a {dtype} scalar of {len(data or b'')} bytes")
    return multiarray.scalar(dtype, data)


def _codecs_encode(text, encoding="utf-8"):
    """Protocol 2 stores bytes as ``_codecs.encode(text, 'latin1')``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise Refused("it calls _codecs.encode other than for protocol-2 bytes")
    return codecs.encode(text, "latin1")


GLOBALS = {
    ("numpy", "ndarray"): _NdarrayClass,
    ("numpy", "dtype"): _dtype,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("_codecs", "encode"): _codecs_encode,
    ("collections", "OrderedDict"): dict,
}
_CALLS_CONSTRUCTORS = (pickle.NEWOBJ, pickle.NEWOBJ_EX, pickle.INST, pickle.OBJ, pickle.EXT1, pickle.EXT2, pickle.EXT4)
_BUILDS_HASHABLE = (pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3, pickle.FROZENSET)
_MAKES_CONTAINERS = (
    pickle.MARK,
    pickle.EMPTY_DICT,
    pickle.EMPTY_LIST,
    pickle.EMPTY_TUPLE,
    pickle.EMPTY_SET,
    pickle.DICT,
    pickle.LIST,
    pickle.PUT,
    pickle.BINPUT,
    pickle.LONG_BINPUT,
    pickle.MEMOIZE,
    *_BUILDS_HASHABLE,
)


class StateUnpickler(pickle._Unpickler):
    """``StateUnpickler(bytes).load()``: the object, or ``Refused``."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data))
        self._depth: dict[int, tuple[object, int]] = {}  # id -> (object kept alive, nesting depth)
        self._containers_left = min(MAX_CONTAINERS, 1_000 + len(data) // 8)

    def find_class(self, module, name):
        if (module, name) in GLOBALS:
            return GLOBALS[module, name]
        raise Refused(f"it refers to {module}.{name}, which no state dict contains")

    def _refuse_opcode(self):
        raise Refused("it constructs objects through an opcode paddle.save never writes")

    def _build(self):
        """BUILD: only arrays (from ``_reconstruct``) and dtypes receive state, and it is checked first."""
        state, inst = self.stack.pop(), self.stack[-1]
        if isinstance(inst, np.ndarray):
            _check_array_state(state)
        elif isinstance(inst, np.dtype):
            if not (isinstance(state, tuple) and len(state) == 8 and state[2:5] == (None, None, None)):
                raise Refused("it gives a dtype a structure paddle.save never writes")
        else:
            raise Refused(f"it sets the state of a {type(inst).__name__}")
        inst.__setstate__(state)
        if isinstance(inst, np.dtype):
            _check_dtype(inst)


def _depth_checked(load):
    """Wrap an opcode that builds a tuple or frozenset: refuse it past ``MAX_DEPTH`` levels of nesting,
    before anything hashes it (CPython hashes nested tuples recursively, and crashes deep enough)."""

    def run(unpickler: StateUnpickler):
        load(unpickler)
        made = unpickler.stack[-1]
        depth = 1 + max((unpickler._depth.get(id(item), (None, 0))[1] for item in made), default=0)
        if depth > MAX_DEPTH:
            raise Refused(f"it nests tuples more than {MAX_DEPTH} deep")
        unpickler._depth[id(made)] = (made, depth)

    return run


def _counted(load):
    """Wrap an opcode that makes a container, a mark or a memo entry: refuse past the file's budget."""

    def run(unpickler: StateUnpickler):
        unpickler._containers_left -= 1
        if unpickler._containers_left < 0:
            raise Refused("it makes more containers and memo entries than a state dict of its size holds")
        load(unpickler)

    return run


def _int_checked(load):
    """Wrap LONG1 / LONG4: an integer of at most ``MAX_INT_BITS`` (a state dict's are step counts)."""

    def run(unpickler: StateUnpickler):
        load(unpickler)
        if unpickler.stack[-1].bit_length() > MAX_INT_BITS:
            raise Refused(f"it holds an integer of {unpickler.stack[-1].bit_length():,} bits")

    return run


def _check_array_state(state) -> None:
    """``ndarray.__setstate__``'s argument: a numeric dtype and exactly the bytes its shape needs."""
    if not (isinstance(state, tuple) and len(state) == 5):
        raise Refused("it gives an array a state paddle.save never writes")
    _, shape, dtype, _, data = state
    _check_dtype(dtype)
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise Refused(f"it gives an array the shape {shape!r}")
    if not isinstance(data, (bytes, bytearray)) or len(data) != int(np.prod(shape, dtype=object)) * dtype.itemsize:
        raise Refused("an array's data does not match its shape")


for _code in _CALLS_CONSTRUCTORS:
    StateUnpickler.dispatch[_code[0]] = StateUnpickler._refuse_opcode
StateUnpickler.dispatch[pickle.BUILD[0]] = StateUnpickler._build
for _code in _BUILDS_HASHABLE:
    StateUnpickler.dispatch[_code[0]] = _depth_checked(pickle._Unpickler.dispatch[_code[0]])
for _code in (pickle.LONG1, pickle.LONG4):
    StateUnpickler.dispatch[_code[0]] = _int_checked(pickle._Unpickler.dispatch[_code[0]])
for _code in _MAKES_CONTAINERS:
    StateUnpickler.dispatch[_code[0]] = _counted(StateUnpickler.dispatch[_code[0]])


def loads(data: bytes):
    return StateUnpickler(data).load()
