"""Short reprs for records that hold arrays: dtype and shape instead of every value.

The default repr of a NamedTuple or dataclass of arrays prints each array in full
(``print(propagate(...))`` ran to hundreds of lines); these print one line per record.
"""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["short_repr", "array_summary"]


def array_summary(a) -> str:
    """``float64[16,8]`` for an array; the value (4 significant digits) for a 0-d one.

    Args:
      a: an array, JAX tracer or scalar (a 0-d tracer, which has no value yet, gives ``<dtype>[]``).

    Returns:
      The one-line summary.
    """
    shape = np.shape(a)
    dtype = getattr(a, "dtype", None)
    if not shape:
        try:
            if np.issubdtype(np.dtype(dtype), np.integer):
                return str(int(a))
            return f"{float(a):.4g}"
        except TypeError:  # a tracer: no value yet
            return f"{dtype}[]"
    return f"{dtype}[{','.join(map(str, shape))}]"


def short_repr(obj) -> str:
    """``Name(field=..., ...)`` of a NamedTuple or dataclass, arrays summarised by
    :func:`array_summary`, nested records, tuples, lists and dicts likewise.

    Args:
      obj: any value; what is none of the above is shown by its ``repr``.

    Returns:
      The one-line repr.
    """
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        return array_summary(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)]
    elif isinstance(obj, tuple) and hasattr(obj, "_fields"):
        fields = list(zip(obj._fields, obj))
    elif isinstance(obj, (tuple, list)):
        inner = ", ".join(map(short_repr, obj))
        return f"({inner},)" if isinstance(obj, tuple) and len(obj) == 1 else (
            f"({inner})" if isinstance(obj, tuple) else f"[{inner}]")
    elif isinstance(obj, dict):
        return "{" + ", ".join(f"{k!r}: {short_repr(v)}" for k, v in obj.items()) + "}"
    else:
        return repr(obj)
    return f"{type(obj).__name__}(" + ", ".join(f"{k}={short_repr(v)}" for k, v in fields) + ")"
