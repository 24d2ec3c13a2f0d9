"""A lifecycle as nested-loop pseudo-code, generated from the machine.

``statetrainer explain train`` prints the order in which a run enters the states — the
hook order — as the loops a reader would write by hand::

    train:
        on_train_start()
        ...
        train_loop:
            for self._epoch in range(self._start_epoch, self._num_epochs + 1):    # loop "_num_epochs"
                train_epoch:
                    on_train_epoch_start()                                          # epoch opens, opens train
                    ...

Nothing here is written per lifecycle: the text is a walk of the spec. Compound states
(``train_loop:``) end with a colon and their body is indented; a ``loop`` edge becomes a
``for``/``while`` over its feed, its epochs or its guard (a guarded entry with the same
guard is the loop's first test); other guarded edges become ``if``/``else`` joined where
their paths meet; a ``no_grad`` state runs ``with torch.no_grad():``; a feed's
``skip_flag`` is a ``continue``. Comments name the roles, feeds and loop labels. Control
requests and overridable compounds are listed after the code.

Torch-free.
"""

from __future__ import annotations

import textwrap
from collections import deque
from collections.abc import Iterable

import attrs

from statetrainer import _structure
from statetrainer._drawing import role_words
from statetrainer._structure import Loop
from statetrainer.spec import CONTROL_GUARDS, OVERRIDDEN_SUFFIX, Edge, Lifecycle

INDENT = "    "
#: The column trailing comments start at (longer lines get two spaces before theirs).
COMMENT_COLUMN = 56
#: Lines stay this short: a comment that would not fit goes on its own line, above the code.
WIDTH = 100
_REQUESTS = {"stop_requested": "stop()", "epoch_stop_requested": "stop_epoch()", "skip_requested": "skip_batch()"}


def explain(spec: Lifecycle, trainer: str | None = None) -> str:
    """The pseudo-code of ``spec``: header, nested loops, then requests and overrides."""
    writer = _Writer(spec)
    writer.walk()
    who = f" ({trainer})" if trainer else ""
    head = [f"# lifecycle {spec.name!r}{who}: {spec.doc}".rstrip(": "),
            "# compound states end with ':' and their body is indented; comments name roles and loop labels"]
    return "\n".join([*head, "", *writer.lines, "", *_footer(spec)]) + "\n"


def hook_order(spec: Lifecycle) -> list[str]:
    """The states in the order :func:`explain` prints them (each once)."""
    writer = _Writer(spec)
    writer.walk()
    return writer.order


@attrs.frozen
class _Scope:
    """Where a block may walk: inside ``inside`` (``None``: anywhere), up to a ``stop`` state."""

    inside: frozenset[str] | None = None
    stop: frozenset[str] = frozenset()
    loops: tuple[Loop, ...] = ()

    def contains(self, name: str) -> bool:
        return name not in self.stop and (self.inside is None or name in self.inside)

    def narrow(self, states: Iterable[str]) -> _Scope:
        keep = frozenset(states)
        return attrs.evolve(self, inside=keep if self.inside is None else self.inside & keep)

    def until(self, join: str | None) -> _Scope:
        return self if join is None else attrs.evolve(self, stop=self.stop | {join})

    def heads(self) -> set[str]:
        return {lp.head for lp in self.loops}


class _Writer:
    """Walks a lifecycle's happy path and writes it as indented pseudo-code."""

    def __init__(self, spec: Lifecycle) -> None:
        self.spec = spec
        self.loops = {lp.head: lp for lp in _structure.loops(spec)}
        self.out: dict[str, list[Edge]] = {n: [] for n in spec.state_names}
        for e in _structure.flow_edges(spec):
            self.out[e.source].append(e)
        self.lines: list[str] = []
        self.order: list[str] = []
        #: Compounds a loop's first pass enters on the way to its head (later passes start at the head).
        self.first_pass_only: dict[str, str] = {}

    def walk(self) -> None:
        self.block(self.spec.initial, _Scope(), 0)

    # -- blocks --------------------------------------------------------------------------
    def block(self, start: str | None, scope: _Scope, depth: int) -> str | None:
        """Write states from ``start`` while they are in ``scope``; return the first one outside."""
        state = start
        while state is not None and scope.contains(state):
            if state in self.order:
                self.emit(depth, f"goto {state}")
                return None
            loop = self.loops.get(state)
            if loop is not None and loop not in scope.loops:
                state = self.loop(loop, state, scope, depth, entry=None)
                continue
            state = self.state(state, scope, depth)
        return state

    def loop(self, loop: Loop, start: str, scope: _Scope, depth: int, entry: Edge | None) -> str | None:
        """A loop: its header, then its body from ``start`` (the head, or a compound leading to it)."""
        self.emit(depth, self.loop_header(loop, entry), self.loop_comment(loop))
        prefix = self.prefix(start, loop.head)
        self.first_pass_only.update(dict.fromkeys(prefix, loop.head))
        inner = attrs.evolve(scope.narrow(loop.body | prefix), loops=(*scope.loops, loop))
        return self.block(start, inner, depth + 1)

    def prefix(self, start: str, head: str) -> set[str]:
        """The compounds entered on the way from ``start`` down to ``head``."""
        out, state = set(), start
        while state != head and self.spec.state(state).compound:
            out.add(state)
            nxt = self.spec.entry(state)
            if nxt is None:
                break
            state = nxt
        return out

    # -- one state ---------------------------------------------------------------------------
    def state(self, name: str, scope: _Scope, depth: int) -> str | None:
        """Write ``name`` (and a compound's body); return the state that follows."""
        s = self.spec.state(name)
        if s.has("no_grad"):
            self.emit(depth, "with torch.no_grad():")
            depth += 1
        self.order.append(name)
        body = self.spec.body(name) if s.compound else frozenset()
        call = f"{name}:" if body else f"{name}({'item' if s.item and not s.compound else ''})"
        words = [w for w in role_words(s) if w != "no grad" and not w.startswith("gets ")]
        if name in self.first_pass_only:
            words.append(f"first pass only; later passes start at {self.first_pass_only[name]}")
        self.emit(depth, call, ", ".join(words))
        feed = next((f for f in self.spec.feeds if f.name == s.takes and f.skip_flag), None)
        if feed is not None:
            self.emit(depth, f"if self.{feed.skip_flag}: continue", f"skip this {feed.name} item")
        if not body:
            return self.follow(name, scope, depth)
        inside = scope.narrow(body)
        after = self.follow(name, inside, depth + 1)
        return self.block(after, inside, depth + 1) if after is not None and inside.contains(after) else after

    def follow(self, name: str, scope: _Scope, depth: int) -> str | None:
        """Where the path goes after ``name``: a loop entered, continue lines, a branch, or one next state."""
        edges = self.out[name]
        if not edges:
            return None
        innermost = scope.loops[-1] if scope.loops else None
        back = [e for e in edges if innermost is not None and e.target == innermost.head and e.kind == "loop"]
        rest = [e for e in edges if e not in back]
        if back and self.is_tail(rest, scope):
            return rest[0].target if rest else None
        for e in back:
            self.emit(depth, f"if {_condition(edges, e)}: continue", _label_comment(e))
        loop = self.entered_loop(rest, scope)
        if loop is not None:
            after = self.loop(loop, rest[0].target, scope, depth, entry=rest[0])
            return after if after is not None else rest[-1].target
        forward = [e for e in rest if scope.contains(e.target)]
        targets = list(dict.fromkeys(e.target for e in forward))
        if len(targets) > 1:
            return self.branch(forward, scope, depth)
        return targets[0] if targets else (rest[-1].target if rest else None)

    def is_tail(self, rest: list[Edge], scope: _Scope) -> bool:
        """True when every other edge leaves the loop for one place: the loop edge closes the body."""
        return len({e.target for e in rest}) <= 1 and all(not scope.contains(e.target) for e in rest)

    def branch(self, forward: list[Edge], scope: _Scope, depth: int) -> str | None:
        """Two or more forward targets: ``if``/``elif``/``else``, joined where the paths meet."""
        fallback = forward[-1]
        join = self.join([e.target for e in forward], scope)
        inner = scope.until(join)
        seen: list[str] = []
        for i, e in enumerate(forward):
            if e.target in seen:
                continue
            seen.append(e.target)
            if e is fallback or not e.guard:
                if e.target != join:
                    self.emit(depth, "else:")
                    self.block(e.target, inner, depth + 1)
                break
            keyword = "if" if i == 0 else "elif"
            self.emit(depth, f"{keyword} {_condition(forward, e)}:", self.spec.guard_doc(e.guard[0]))
            self.block(e.target, inner, depth + 1)
        return join

    def entered_loop(self, edges: list[Edge], scope: _Scope) -> Loop | None:
        """The loop that ``edges`` (a guarded edge, then the fallback taken when it fails) enter
        with the loop's own test: a ``while`` whose first test is that edge."""
        if len(edges) != 2 or not edges[0].guard or edges[1].guard or not scope.contains(edges[0].target):
            return None
        guarded, fallback = edges
        for loop in self.loops.values():
            if loop in scope.loops or set(loop.guard) != set(guarded.guard) or not loop.guard:
                continue
            reaches = guarded.target == loop.head or loop.head in self.prefix_path(guarded.target)
            if reaches and fallback.target in self.exits(loop):
                return loop
        return None

    def prefix_path(self, start: str) -> list[str]:
        out, state = [], start
        while self.spec.state(state).compound and (nxt := self.spec.entry(state)) is not None:
            out.append(nxt)
            state = nxt
        return out

    def exits(self, loop: Loop) -> set[str]:
        """Where a loop's body leaves to."""
        return {e.target for s in loop.body for e in self.out[s] if e.target not in loop.body}

    def join(self, starts: list[str], scope: _Scope) -> str | None:
        """The first state every branch reaches (breadth first from the last branch)."""
        reach = [self.reachable(s, scope) for s in starts]
        for candidate in self.reachable(starts[-1], scope):
            if all(candidate in r for r in reach):
                return candidate
        return None

    def reachable(self, start: str, scope: _Scope) -> list[str]:
        heads, order, queue = scope.heads(), [start], deque([start])
        while queue:
            for e in self.out[queue.popleft()]:
                if e.target not in order and e.target not in heads:
                    order.append(e.target)
                    queue.append(e.target)
        return order

    # -- text ------------------------------------------------------------------------------
    def loop_header(self, loop: Loop, entry: Edge | None) -> str:
        if loop.feed is not None:
            source = " or ".join(f"self.{a}" for a in (loop.feed.iterable, loop.feed.loader) if a)
            return f"for item in {source}:"
        if loop.counts_epochs:
            c = self.spec.epochs
            return f"for self.{c.attr} in range(self.{c.first}, self.{c.total} + 1):"
        return f"while {' and '.join(loop.guard)}:" if entry is not None else "while True:"

    def loop_comment(self, loop: Loop) -> str:
        labels = ", ".join(f'"{label}"' for label in loop.labels)
        parts = [f"feed {loop.feed.name}"] if loop.feed is not None else []
        parts.append(f"loop {labels}" if labels else f"loop while {' and '.join(loop.guard)}")
        return ", ".join(parts)

    def emit(self, depth: int, code: str, comment: str = "") -> None:
        line = INDENT * depth + code
        if comment:
            commented = line.ljust(COMMENT_COLUMN - 2) + "  # " + comment
            if len(commented) > WIDTH:
                self.lines.append(INDENT * depth + "# " + comment)
            else:
                line = commented
        self.lines.append(line)


def _condition(edges: list[Edge], edge: Edge) -> str:
    """``edge``'s guards, and-ed with the negation of the earlier edges' going elsewhere."""
    parts = [f"not {_conj(e.guard)}" for e in edges[: edges.index(edge)] if e.guard and e.target != edge.target]
    parts += [g for g in edge.guard if g not in CONTROL_GUARDS]
    return " and ".join(parts) or "True"


def _conj(guard: tuple[str, ...]) -> str:
    return guard[0] if len(guard) == 1 else "(" + " and ".join(guard) + ")"


def _label_comment(edge: Edge) -> str:
    return f'loop "{edge.label}"' if edge.label else ""


def _footer(spec: Lifecycle) -> list[str]:
    """Control requests and overridable compounds, from the spec's control and override edges."""
    lines = []
    targets: dict[str, list[str]] = {}
    for e in spec.edges:
        if e.kind == "control":
            request = next((g for g in e.guard if g in _REQUESTS), None)
            if request is not None and e.target not in targets.setdefault(request, []):
                targets[request].append(e.target)
    if targets:
        lines.append("# requests, served at the next transition:")
        for request, to in targets.items():
            lines += textwrap.wrap(f"{_REQUESTS[request]:<13} -> {', '.join(to)}", WIDTH - 4,
                                   initial_indent="#   ", subsequent_indent="#" + " " * 20)
    overridable = [g.removesuffix(OVERRIDDEN_SUFFIX) for e in spec.edges if e.kind == "override" for g in e.guard
                   if g.endswith(OVERRIDDEN_SUFFIX)]
    if overridable:
        names = ", ".join(dict.fromkeys(overridable))
        lines += textwrap.wrap(f"overridable compound hooks (an override runs instead of the body): {names}",
                               WIDTH - 2, initial_indent="# ", subsequent_indent="#   ")
    return lines
