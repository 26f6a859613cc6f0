"""Static checks of pickle bytes: what a pickle would build, read without building any of it.

:func:`scan_pickle` walks the opcodes (``pickletools.genops``, iterative) of one pickle and models only what the
checks need: the nesting depth of every value on the stack, the strings that name globals, and counts. It runs
nothing and allocates nothing proportional to what the pickle declares, only to what it holds. It refuses:

- nesting deeper than ``max_depth``: a dict key nested 300,000 tuples deep makes the unpickler's (and Python's)
  recursive hashing overflow the C stack, a segmentation fault that no ``try`` catches. Depth is exact for tuples
  and frozensets (immutable, the only hashable containers); for lists and dicts filled after being memoised it
  may be under-counted, which costs at worst a ``RecursionError`` later, never a crash;
- more than ``max_ops`` opcodes, ``max_stack`` values on the stack at once or ``max_memo`` memo entries, which
  bound the objects the real unpickler would create;
- anything malformed (an unknown opcode, a missing STOP, a stack underflow, a GET of nothing).

It reports every global the pickle names, whatever the opcode (``GLOBAL``/``INST`` with text arguments,
protocol 4's ``STACK_GLOBAL`` with the two strings it pops, ``EXT1/2/4`` registry codes), with the module names
Python 2 pickles use mapped as the unpickler would (``__builtin__`` -> ``builtins``).
"""
from __future__ import annotations

import io
import pickletools
from dataclasses import dataclass, field

from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING  # what pickle (and torch) apply to protocol 0-2 names

#: Deepest nesting of containers accepted. Real checkpoints nest < 20 deep (an omegaconf config in Lightning's
#: hyper-parameters is the deepest); the C stack overflows somewhere past tens of thousands.
MAX_DEPTH = 256


class PickleRefused(ValueError):
    """The pickle is malformed or exceeds a bound; ``str()`` says which, without naming the file."""


@dataclass
class PickleScan:
    """What :func:`scan_pickle` found in one pickle."""

    end: int  #: offset just past its STOP opcode
    protocol: int  #: declared protocol (0 or 1 when there is no PROTO opcode)
    ops: int  #: number of opcodes
    depth: int  #: deepest nesting seen
    globals: list[tuple[str, str]] = field(default_factory=list)  #: (opcode name, "module.qualname")


_FILL_TO_MARK = frozenset({"APPENDS", "SETITEMS", "ADDITEMS"})  # pop to MARK, add into the container below
_BUILD_TO_MARK = frozenset({"TUPLE", "LIST", "DICT", "FROZENSET", "OBJ", "INST"})  # pop to MARK, push one value
_TUPLE_N = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_FILL = {"APPEND": 1, "SETITEM": 2, "BUILD": 1}  # pop n, add into the value below
_PUT = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})
_GET = frozenset({"GET", "BINGET", "LONG_BINGET"})
_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
                      "SHORT_BINSTRING"})


def _global_name(module: str, name: str) -> str:
    if (module, name) in NAME_MAPPING:
        module, name = NAME_MAPPING[(module, name)]
    elif module in IMPORT_MAPPING:
        module = IMPORT_MAPPING[module]
    return f"{module}.{name}"


def _text_global(data: bytes, pos: int) -> str:
    """The name a GLOBAL/INST opcode at ``pos`` gives as two lines, read from the bytes (genops joins the two with
    a space, which a hostile module name may contain). genops has checked that both lines are there."""
    end1 = data.find(b"\n", pos + 1)
    end2 = data.find(b"\n", end1 + 1)
    module, name = data[pos + 1:end1], data[end1 + 1:end2]
    return _global_name(module.decode("utf-8", "replace"), name.decode("utf-8", "replace"))


def scan_pickle(data: bytes, start: int = 0, *, max_depth: int = MAX_DEPTH, max_ops: int = 8_000_000,
                max_stack: int = 1_000_000, max_memo: int = 2_000_000) -> PickleScan:
    """Check the pickle that starts at ``data[start]`` (see the module docstring); raise :class:`PickleRefused`."""
    data = bytes(data)
    stream = io.BytesIO(data)
    stream.seek(start)
    # A stack entry is the nesting depth of the value (an int) or, for a string, the string itself (depth 0):
    # STACK_GLOBAL names its global with the two strings it pops, often fetched back from the memo.
    stack: list = []
    marks: list[int] = []
    memo: dict[int, object] = {}
    found = PickleScan(end=start, protocol=0, ops=0, depth=0)
    deepest = 0

    def depth(entry: object) -> int:
        return entry if type(entry) is int else 0

    def pop_to_mark() -> list:
        if not marks:
            raise PickleRefused("malformed pickle (no MARK to pop to)")
        at = marks.pop()
        items = stack[at:]
        del stack[at:]
        return items

    def pop(n: int) -> list:
        if len(stack) - (marks[-1] if marks else 0) < n:
            raise PickleRefused("malformed pickle (stack underflow)")
        items = stack[len(stack) - n:]
        del stack[len(stack) - n:]
        return items

    try:
        for op, arg, pos in pickletools.genops(stream):
            found.ops += 1
            if found.ops > max_ops:
                raise PickleRefused(f"more than {max_ops:,} pickle opcodes")
            name = op.name
            new: object | None = None  # the entry pushed by a value-building opcode
            if name == "MARK":
                marks.append(len(stack))
                if len(marks) > max_depth:
                    raise PickleRefused(f"containers nested more than {max_depth} deep")
            elif name in _BUILD_TO_MARK:
                items = pop_to_mark()
                new = 1 + max((depth(e) for e in items), default=0)
                if name == "INST":
                    found.globals.append((name, _text_global(data, pos)))
            elif name in _TUPLE_N:
                new = 1 + max(depth(e) for e in pop(_TUPLE_N[name]))
            elif name in _FILL_TO_MARK or name in _FILL:
                items = pop_to_mark() if name in _FILL_TO_MARK else pop(_FILL[name])
                (target,) = pop(1)
                new = max([depth(target)] + [1 + depth(e) for e in items])
            elif name in _PUT:
                if not stack or (marks and marks[-1] == len(stack)):
                    raise PickleRefused("malformed pickle (memo store of nothing)")
                memo[len(memo) if name == "MEMOIZE" else int(arg)] = stack[-1]
                if len(memo) > max_memo:
                    raise PickleRefused(f"more than {max_memo:,} memoised values")
            elif name in _GET:
                if int(arg) not in memo:
                    raise PickleRefused("malformed pickle (memo fetch of nothing)")
                stack.append(memo[int(arg)])
            elif name == "DUP":
                stack.extend(pop(1) * 2)
            elif name == "POP":
                pop(1) if stack and not (marks and marks[-1] == len(stack)) else pop_to_mark()
            elif name == "POP_MARK":
                pop_to_mark()
            elif name == "STACK_GLOBAL":
                module, qualname = pop(2)
                ok = isinstance(module, str) and isinstance(qualname, str)
                found.globals.append((name, f"{module}.{qualname}" if ok else "<a name computed by the pickle>"))
                new = 0
            elif name == "GLOBAL":
                found.globals.append((name, _text_global(data, pos)))
                new = 0
            elif name in ("EXT1", "EXT2", "EXT4"):
                found.globals.append((name, f"<copyreg extension code {arg}>"))
                new = 0
            elif name == "PROTO":
                found.protocol = int(arg)
            elif name in _STRINGS:
                new = str(arg) if isinstance(arg, str) else 0
            elif name == "STOP":
                pop(1)
                found.end = stream.tell()
                found.depth = deepest
                return found
            elif name == "FRAME":
                pass
            else:  # numbers, bytes, empty containers, REDUCE, NEWOBJ(_EX), PERSID/BINPERSID, buffers: by metadata
                before = len(op.stack_before)
                items = pop(before) if before else []
                new = 1 + max((depth(e) for e in items), default=0) if items else 0
            if new is not None:
                d = depth(new)
                if d > max_depth:
                    raise PickleRefused(f"containers nested more than {max_depth} deep")
                deepest = max(deepest, d)
                stack.append(new)
                if len(stack) > max_stack:
                    raise PickleRefused(f"more than {max_stack:,} values on the pickle stack")
    except PickleRefused:
        raise
    except (ValueError, IndexError, TypeError, EOFError, UnicodeError, OverflowError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PickleRefused(f"malformed pickle ({first[:100]})") from None
    raise PickleRefused("malformed pickle (no STOP opcode)")
