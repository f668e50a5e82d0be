"""The released SpeechRole judge, rebuilt from the user's own copy of its script.

speechrole ships none of the released judge's sentences. `load_released(path)` reads a copy of the
SpeechRole judge script (`benchmark/gemini_judge.py` in github.com/yuhui1038/SpeechRole: one call per
metric with a free-text `[Scores]: (A, B)` answer; the later `SpeechRole-Eval/gemini_judge.py`: one call
per sample with a JSON answer) and parses it with `ast`, never executing it. A small evaluator of pure,
whitelisted expressions (literals, f-strings, `+`, indexing and slicing, `str.join/split/strip/...`,
`dict.keys`, `range`, `len`, comprehensions) replays the statements that build the `messages` list for
one sample, with the script's own loop variables bound to that sample (role, dialogue index, metric)
and its `gt_data` bound to the benchmark's samples in the released test-file layout. Calls it does not
know (opening files, the audio encoder, the client) are never made: their results are unknown, and an
unknown value that reaches the request is a clear error naming the script's line.

From the script it also takes: the audio parts (which side each list holds, the data-URL prefix),
how a clip is prepared (raw file bytes, or decoded and cut to N seconds), the request options passed to
`chat.completions.create` (temperature, n), and how the answer is read (the `[Scores]` regex or JSON).
The file's sha256 is part of every judgment's version and every cache key.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from speechrole.audio import AudioPolicy
from speechrole.judge.parse import AnswerError, parse_answer
from speechrole.problems import DataError
from speechrole.schema import METRICS, SCORE_MAX, SCORE_MIN, Benchmark, ClipRef, MetricScore, Role, Sample

if TYPE_CHECKING:
    from speechrole.judge.config import JudgeConfig
    from speechrole.judge.protocol import JudgeRequest, Order, Protocol

#: Where users get the script (speechrole cannot ship it).
SOURCE_URL = "https://github.com/yuhui1038/SpeechRole (benchmark/gemini_judge.py)"
MISSING = (
    "the released protocol builds its requests from your copy of the released SpeechRole judge script: "
    f"pass --released-judge PATH (get the file from {SOURCE_URL})"
)

Side = Literal["test", "reference"]


@dataclass(frozen=True)
class AudioSlot:
    """Where a side's clips go in the message, and the prefix the script puts before their base64."""

    side: Side
    prefix: str


class _NotEvaluatedError(Exception):
    """A value the evaluator will not compute (an unknown call, an unread file)."""


class _ContinueError(Exception):
    pass


class _BreakError(Exception):
    pass


@dataclass(frozen=True)
class _Unknown:
    why: str


@dataclass
class _ProfileFile:
    """Stands for `open(role_profiles/...)`: `readline()` gives the profile's first line."""

    first_line: str

    def readline(self) -> str:
        return self.first_line + "\n"


_METHODS: dict[type, frozenset[str]] = {
    str: frozenset(
        {"join", "split", "strip", "rstrip", "lstrip", "replace", "lower", "upper", "startswith", "endswith"}
    ),
    dict: frozenset({"keys", "values", "items", "get"}),
    list: frozenset({"index", "count"}),
    _ProfileFile: frozenset({"readline"}),
}
_BUILTINS: dict[str, Any] = {
    "range": range,
    "len": len,
    "str": str,
    "int": int,
    "list": list,
    "sorted": sorted,
    "tqdm": lambda x, *a, **k: x,  # a progress bar around an iterable is the iterable
}


class _Evaluator:
    """Replays whitelisted statements of one function up to the statement building `messages`."""

    def __init__(self, script: Path, target: ast.stmt, enclosing: set[int], context: dict[str, Any]):
        self.script, self.target, self.enclosing, self.context = script, target, enclosing, context
        self.pinned = set(context.get("__pinned__", ()))

    def fail(self, node: ast.AST, why: str) -> DataError:
        return DataError(self.script, f"line {getattr(node, 'lineno', '?')}", why)

    # --- expressions -------------------------------------------------------------------------------

    def value(self, node: ast.expr, env: dict[str, Any]) -> Any:
        v = self._value(node, env)
        if isinstance(v, _Unknown):
            raise _NotEvaluatedError(v.why)
        return v

    def _value(self, node: ast.expr, env: dict[str, Any]) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in env:
                return env[node.id]
            if node.id in _BUILTINS:
                return _BUILTINS[node.id]
            raise _NotEvaluatedError(f"{node.id!r} is not known at line {node.lineno}")
        if isinstance(node, ast.JoinedStr):
            pieces = []
            for part in node.values:
                if isinstance(part, ast.Constant):
                    pieces.append(str(part.value))
                elif isinstance(part, ast.FormattedValue):
                    v = self.value(part.value, env)
                    v = repr(v) if part.conversion == ord("r") else v
                    spec = self.value(part.format_spec, env) if part.format_spec is not None else ""
                    pieces.append(format(v, spec))
            return "".join(pieces)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self.value(node.left, env), self.value(node.right, env)
            if type(left) is not type(right) or not isinstance(left, str | list | tuple):
                raise _NotEvaluatedError(f"unsupported '+' at line {node.lineno}")
            return left + right
        if isinstance(node, ast.Subscript):
            container = self.value(node.value, env)
            index = node.slice
            if isinstance(index, ast.Slice):
                parts = [
                    self.value(p, env) if p is not None else None
                    for p in (index.lower, index.upper, index.step)
                ]
                return container[slice(*parts)]
            try:
                return container[self.value(index, env)]
            except (KeyError, IndexError, TypeError) as exc:
                raise _NotEvaluatedError(f"no {exc} at line {node.lineno}") from None
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -self.value(node.operand, env)
        if isinstance(node, ast.List | ast.Tuple):
            items = [self.value(e, env) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                raise _NotEvaluatedError(f"'**' in a dict at line {node.lineno}")
            return {
                self.value(k, env): self.value(v, env) for k, v in zip(node.keys, node.values, strict=True)
            }  # type: ignore[arg-type]
        if isinstance(node, ast.ListComp | ast.GeneratorExp):
            return self._comprehension(node, env)
        if isinstance(node, ast.Call):
            return self._call(node, env)
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            left, right = self.value(node.left, env), self.value(node.comparators[0], env)
            ops = {
                ast.In: lambda: left in right,
                ast.NotIn: lambda: left not in right,
                ast.Eq: lambda: left == right,
            }
            if type(node.ops[0]) in ops:
                return ops[type(node.ops[0])]()
        raise _NotEvaluatedError(
            f"{type(node).__name__} at line {getattr(node, 'lineno', '?')} is not evaluated"
        )

    def _comprehension(self, node: ast.ListComp | ast.GeneratorExp, env: dict[str, Any]) -> list[Any]:
        if len(node.generators) != 1 or node.generators[0].is_async:
            raise _NotEvaluatedError(f"nested comprehension at line {node.lineno}")
        gen = node.generators[0]
        out = []
        for item in self.value(gen.iter, env):
            inner = dict(env)
            self._bind(gen.target, item, inner)
            if all(self.value(cond, inner) for cond in gen.ifs):
                out.append(self.value(node.elt, inner))
        return out

    def _call(self, node: ast.Call, env: dict[str, Any]) -> Any:
        args = [self.value(a, env) for a in node.args]
        kwargs = {k.arg: self.value(k.value, env) for k in node.keywords if k.arg is not None}
        func = node.func
        if isinstance(func, ast.Name) and func.id in _BUILTINS and func.id not in env:
            return _BUILTINS[func.id](*args, **kwargs)
        if isinstance(func, ast.Attribute):
            try:
                owner = self.value(func.value, env)
            except _NotEvaluatedError:
                raise _NotEvaluatedError(f"call at line {node.lineno} is not made") from None
            allowed = _METHODS.get(type(owner), frozenset())
            if func.attr in allowed:
                return getattr(owner, func.attr)(*args, **kwargs)
        raise _NotEvaluatedError(f"call at line {node.lineno} is not made")

    def _bind(self, target: ast.expr, value: Any, env: dict[str, Any]) -> None:
        if isinstance(target, ast.Name):
            if target.id not in self.pinned:
                env[target.id] = value
        elif isinstance(target, ast.Tuple | ast.List):
            values = list(value)
            if len(values) != len(target.elts):
                raise _NotEvaluatedError(f"cannot unpack at line {target.lineno}")
            for t, v in zip(target.elts, values, strict=True):
                self._bind(t, v, env)
        else:
            raise _NotEvaluatedError(f"assignment to {type(target).__name__} at line {target.lineno}")

    # --- statements --------------------------------------------------------------------------------

    def run(self, body: list[ast.stmt], env: dict[str, Any], in_loop: bool = False) -> None:
        """Run `body`; raises `_ReachedError` with the environment when the target statement comes up."""
        for stmt in body:
            if stmt is self.target:
                raise _ReachedError(env)
            self._statement(stmt, env, in_loop)

    def _assign(self, targets: list[ast.expr], value: ast.expr, env: dict[str, Any]) -> None:
        slot = _audio_slot(value)
        try:
            result: Any = [slot] if slot is not None else self.value(value, env)
        except _NotEvaluatedError as exc:
            result = _Unknown(str(exc))
        for t in targets:
            with contextlib.suppress(_NotEvaluatedError):
                self._bind(t, result, env)

    def _statement(self, stmt: ast.stmt, env: dict[str, Any], in_loop: bool) -> None:
        encloses = id(stmt) in self.enclosing
        if isinstance(stmt, ast.Assign):
            self._assign(stmt.targets, stmt.value, env)
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            self._assign([stmt.target], stmt.value, env)
        elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
            name = stmt.target.id
            try:
                if not isinstance(stmt.op, ast.Add):
                    raise _NotEvaluatedError(f"unsupported '{type(stmt.op).__name__}=' at line {stmt.lineno}")
                current = env.get(name)
                if current is None or isinstance(current, _Unknown):
                    raise _NotEvaluatedError(f"{name!r} is not known at line {stmt.lineno}")
                env[name] = current + self.value(stmt.value, env)
            except _NotEvaluatedError as exc:
                env[name] = _Unknown(str(exc))
        elif isinstance(stmt, ast.For):
            if encloses:
                self._bind(stmt.target, self._loop_value(stmt), env)
                self.run(stmt.body, env)
                return
            try:
                items = list(self.value(stmt.iter, env))
            except _NotEvaluatedError:
                return
            for item in items:
                self._bind(stmt.target, item, env)
                try:
                    self.run(stmt.body, env, in_loop=True)
                except _ContinueError:
                    continue
                except _BreakError:
                    break
        elif isinstance(stmt, ast.While):
            if encloses:
                self.run(stmt.body, env)
        elif isinstance(stmt, ast.If):
            if encloses:
                self.run(stmt.body if _contains(stmt.body, self.target) else stmt.orelse, env)
                return
            try:
                chosen = stmt.body if self.value(stmt.test, env) else stmt.orelse
            except _NotEvaluatedError:
                return  # a branch that depends on files the judge reads: taken by neither
            self.run(chosen, env, in_loop)
        elif isinstance(stmt, ast.With):
            for item in stmt.items:
                if item.optional_vars is not None:
                    self._bind(item.optional_vars, self._opened(item.context_expr, env), env)
            self.run(stmt.body, env, in_loop)
        elif isinstance(stmt, ast.Try):
            self.run(stmt.body, env, in_loop)
            self.run(stmt.finalbody, env, in_loop)
        elif isinstance(stmt, ast.Continue | ast.Break):
            if not in_loop:
                raise self.fail(
                    stmt, "the script skips the sample here; the released shape was not recognised"
                )
            raise _ContinueError() if isinstance(stmt, ast.Continue) else _BreakError()
        # everything else (expressions, imports, prints, returns, global) changes nothing we read

    def _opened(self, node: ast.expr, env: dict[str, Any]) -> Any:
        """`open(path)`: the role's profile when the path names one; any other file stays unread."""
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "open"
            and node.args
        ):
            try:
                path = self.value(node.args[0], env)
            except _NotEvaluatedError:
                return _Unknown(f"file opened at line {node.lineno} is not read")
            if isinstance(path, str) and "profile" in path:
                return _ProfileFile(self.context["profile_line"])
        return _Unknown(f"file opened at line {getattr(node, 'lineno', '?')} is not read")

    def _loop_value(self, loop: ast.For) -> Any:
        """The value of a loop around the request: the role, the dialogue's position or the metric."""
        names = {n.id for n in ast.walk(loop.iter) if isinstance(n, ast.Name)}
        for name, key in (("metrics", "metric"), ("gt_data", "position"), ("roles", "role")):
            if name in names:
                if self.context.get(key) is None:
                    raise self.fail(loop, f"a loop over {name!r} around the request, where none was expected")
                return self.context[key]
        raise self.fail(loop, "a loop around the request that the released script does not have")


class _ReachedError(Exception):
    def __init__(self, env: dict[str, Any]) -> None:
        self.env = env


def _contains(body: list[ast.stmt], target: ast.stmt) -> bool:
    return any(node is target for stmt in body for node in ast.walk(stmt))


def _constants(node: ast.AST) -> list[Any]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant)]


def _audio_slot(node: ast.expr) -> AudioSlot | None:
    """A list comprehension of `input_audio` parts: which side's clips, and the data-URL prefix."""
    if not isinstance(node, ast.ListComp) or "input_audio" not in _constants(node.elt):
        return None
    values = _constants(node.elt)
    side: Side | None = (
        "test" if "model_output" in values else "reference" if "role_speech_path" in values else None
    )
    if side is None:
        return None
    prefix = ""
    for n in ast.walk(node.elt):
        if isinstance(n, ast.Dict):
            for k, v in zip(n.keys, n.values, strict=True):
                is_data = isinstance(k, ast.Constant) and k.value == "data"
                if is_data and isinstance(v, ast.BinOp) and isinstance(v.left, ast.Constant):
                    prefix = str(v.left.value)
    return AudioSlot(side, prefix)


def _function(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    return next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name), None)


@dataclass(frozen=True)
class ReleasedJudge:
    """The released judge as read from a copy of its script."""

    path: Path
    sha256: str
    version: int  # 1: one call per metric, free-text answer; 2: one call per sample, JSON answer
    model: str  # the judge model the script names (recorded; the run uses the model it is given)
    metrics: dict[str, str]
    options: dict[str, Any]  # what the script passes to chat.completions.create besides model and messages
    audio: AudioPolicy
    score_pattern: str | None  # v1: the regex that reads "[Scores]: (A, B)"
    _tree: ast.Module = field(repr=False, compare=False)
    _function: ast.FunctionDef = field(repr=False, compare=False)
    _target: ast.Assign = field(repr=False, compare=False)
    _enclosing: frozenset[int] = field(repr=False, compare=False)
    _globals: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def per_metric(self) -> bool:
        return self.version == 1

    @property
    def label(self) -> str:
        return f"v{self.version}/script-{self.sha256[:12]}"

    def messages_for(
        self, role: Role, sample: Sample, bench: Benchmark, metric: str | None
    ) -> list[dict[str, Any]]:
        """The script's `messages` for this sample (and metric, in v1), with `AudioSlot`s for the clips."""
        siblings = sorted(
            (s for s in bench.samples if s.role == sample.role and s.mode == sample.mode),
            key=lambda s: s.index,
        )
        gt_data = [
            {
                "system_prompt": s.system_prompt,
                "dialogue": [
                    {
                        "user": t.user_text,
                        "role": t.reference_text,
                        "role_speech_path": t.reference_audio or "",
                    }
                    for t in s.turns
                ],
                "context": s.context,
                "category": s.category,
            }
            for s in siblings
        ]
        profile = role.profile or sample.system_prompt
        context = {
            "role": role.id,
            "position": next(k for k, s in enumerate(siblings) if s.key == sample.key),
            "metric": metric,
            "profile_line": profile.split("\n", 1)[0].strip(),
        }
        env = {**self._globals, "gt_data": gt_data}
        params = [a.arg for a in self._function.args.args]
        for name, value in zip(params, (sample.mode.value, "speechrole"), strict=False):
            env[name] = value
        evaluator = _Evaluator(
            self.path, self._target, set(self._enclosing), {**context, "__pinned__": ["gt_data"]}
        )
        try:
            evaluator.run(self._function.body, env)
        except _ReachedError as reached:
            env = reached.env
        else:
            raise evaluator.fail(self._target, "the request is never built")
        try:
            return evaluator.value(self._target.value, env)
        except _NotEvaluatedError as exc:
            raise evaluator.fail(self._target, f"cannot rebuild the request: {exc}") from None

    # --- as the runner's prompter (see protocol.RubricPrompter) --------------------------------------

    @property
    def tag(self) -> str:
        return f"script-{self.sha256[:12]}"

    def key_parts(self) -> dict[str, str]:
        return {"released_script_sha256": self.sha256}

    def sampling(self, config: JudgeConfig) -> dict[str, Any]:
        """The script's own request options (v1: n=1, the provider's temperature; v2: temperature 0)."""
        return {**self.options, "seed": config.seed, "max_tokens": config.max_tokens}

    def request(
        self,
        protocol: Protocol,
        role: Role,
        sample: Sample,
        bench: Benchmark,
        order: Order,
        metrics: tuple[str, ...],
        tests: list[ClipRef],
        refs: list[ClipRef],
    ) -> JudgeRequest:
        from speechrole.judge.protocol import JudgeRequest, Part

        if order == "BA":  # only asked by the swap-positions probe: the sides change places
            tests, refs = refs, tests
        system, pieces = released_parts(self, role, sample, bench, metrics[0] if self.per_metric else None)
        parts: list[Part] = []
        clips: list[ClipRef] = []
        prefixes = set()
        for piece in pieces:
            if isinstance(piece, AudioSlot):
                prefixes.add(piece.prefix)
                for clip in tests if piece.side == "test" else refs:
                    parts.append(Part(clip=len(clips)))
                    clips.append(clip)
            else:
                parts.append(Part(text=piece))
        return JudgeRequest(
            sample.key, order, metrics, system, tuple(parts), tuple(clips), data_prefix=prefixes.pop()
        )

    def reask(self, messages: list[dict[str, Any]], answer: str, problem: str) -> list[dict[str, Any]]:
        """The released script asks again with the same request."""
        return messages

    def describe(self) -> dict[str, Any]:
        return {
            "released_judge": str(self.path),
            "released_judge_sha256": self.sha256,
            "released_judge_version": self.version,
            "released_judge_model": self.model,
        }

    def parse(self, text: str, metrics: tuple[str, ...], order: str) -> dict[str, MetricScore]:
        """The answer read as the script reads it, then validated like every answer (1..10, integers)."""
        if self.score_pattern is None:
            return parse_answer(text, metrics, order)
        match = re.search(self.score_pattern, text)
        if match is None or len(match.groups()) < 2:
            raise AnswerError("no '[Scores]: (A, B)' statement in the answer")
        a, b = int(match.group(1)), int(match.group(2))
        for value in (a, b):
            if not SCORE_MIN <= value <= SCORE_MAX:
                raise AnswerError(f"score {value} is outside 1..10")
        (metric,) = metrics
        test, ref = (a, b) if order == "AB" else (b, a)
        return {metric: MetricScore(test=test, ref=ref, reason=text.strip())}


def load_released(path: Path | None) -> ReleasedJudge:
    """Parse a copy of the released judge script (never executed); one clear error when it is missing
    or not of the released shape."""
    if path is None:
        raise DataError("--released-judge", "", MISSING)
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(
            path, "", f"cannot read the released judge script ({exc.strerror}); {MISSING}"
        ) from None
    try:
        tree = ast.parse(data.decode("utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise DataError(path, "", f"not a Python script: {exc}") from None

    def shape(why: str) -> DataError:
        return DataError(path, "", f"not the released judge's shape: {why}")

    target = next(
        (
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "messages" for t in n.targets)
        ),
        None,
    )
    if target is None:
        raise shape("no `messages = [...]` assignment")
    function = next(
        (f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and _contains(f.body, target)), None
    )
    if function is None:
        raise shape("the request is not built inside a function")
    enclosing = {
        id(n)
        for n in ast.walk(function)
        if isinstance(n, ast.stmt) and n is not target and _contains([n], target)
    }
    # module-level literals: the model name, the metric definitions, the role list
    glob: dict[str, Any] = {}
    module_eval = _Evaluator(path, target, set(), {})
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            with contextlib.suppress(_NotEvaluatedError):
                glob[stmt.targets[0].id] = module_eval.value(stmt.value, glob)
    metrics = glob.get("metrics")
    if not isinstance(metrics, dict) or set(metrics) != set(METRICS):
        raise shape(
            f"a `metrics` dict with exactly the 8 SpeechRole metrics ({', '.join(METRICS)}) is needed"
        )
    per_metric = any(
        isinstance(n, ast.For)
        and id(n) in enclosing
        and "metrics" in {x.id for x in ast.walk(n.iter) if isinstance(x, ast.Name)}
        for n in ast.walk(function)
    )
    options = _request_options(function, glob, path, target)
    return ReleasedJudge(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        version=1 if per_metric else 2,
        model=str(glob.get("model", "")),
        metrics={m: str(metrics[m]) for m in METRICS},
        options=options,
        audio=_audio_policy(tree),
        score_pattern=_score_pattern(tree) if per_metric else None,
        _tree=tree,
        _function=function,
        _target=target,
        _enclosing=frozenset(enclosing),
        _globals=glob,
    )


def _request_options(
    function: ast.FunctionDef, glob: dict[str, Any], path: Path, target: ast.stmt
) -> dict[str, Any]:
    """Keyword arguments of the `....create(...)` call besides model, messages and the client timeout."""
    evaluator = _Evaluator(path, target, set(), {})
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "create":
            options = {}
            for k in node.keywords:
                if k.arg in (None, "model", "messages", "timeout"):
                    continue
                try:
                    options[k.arg] = evaluator.value(k.value, glob)
                except _NotEvaluatedError:
                    raise DataError(
                        path, f"line {k.value.lineno}", f"request option {k.arg!r} is not a literal"
                    ) from None
            return options
    raise DataError(path, "", "not the released judge's shape: no `chat.completions.create(...)` call")


def _audio_policy(tree: ast.Module) -> AudioPolicy:
    """Raw file bytes (v1), or decoded and cut to the encoder's default length (v2)."""
    encoder = _function(tree, "wav_to_base64")
    if encoder is None:
        return AudioPolicy(max_seconds=None, raw=True)
    decodes = any(isinstance(n, ast.Name) and n.id == "AudioSegment" for n in ast.walk(encoder))
    if not decodes:
        return AudioPolicy(max_seconds=None, raw=True)
    defaults = [d.value for d in encoder.args.defaults if isinstance(d, ast.Constant)]
    seconds = next((float(v) for v in defaults if isinstance(v, int | float)), None)
    return AudioPolicy(max_seconds=seconds)


def _score_pattern(tree: ast.Module) -> str:
    """The regex in the answer parser that reads the two scores."""
    parser = _function(tree, "parse_gemini_result") or tree
    for value in _constants(parser):
        if isinstance(value, str) and "Scores" in value:
            try:
                if re.compile(value).groups >= 2:
                    return value
            except re.error:
                continue
    raise DataError("released judge", "parse_gemini_result", "no regex with two score groups found")


def released_parts(
    judge: ReleasedJudge, role: Role, sample: Sample, bench: Benchmark, metric: str | None
) -> tuple[str, list[str | AudioSlot]]:
    """The system text, and the user content as text pieces and audio slots, validated."""
    messages = judge.messages_for(role, sample, bench, metric)
    if (
        not isinstance(messages, list)
        or len(messages) != 2
        or not all(isinstance(m, dict) for m in messages)
        or [m.get("role") for m in messages] != ["system", "user"]
        or not isinstance(messages[0].get("content"), str)
        or not isinstance(messages[1].get("content"), list)
    ):
        raise DataError(
            judge.path, "messages", "expected a system text and one user message with a list of parts"
        )
    parts: list[str | AudioSlot] = []
    for item in messages[1]["content"]:
        if isinstance(item, AudioSlot):
            parts.append(item)
        elif isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str):
            parts.append(item["text"])
        else:
            raise DataError(judge.path, "messages", f"unexpected content part {item!r:.80}")
    sides = [p.side for p in parts if isinstance(p, AudioSlot)]
    if sorted(sides) != ["reference", "test"]:
        raise DataError(
            judge.path, "messages", f"expected the tested and the reference clips once each, found {sides}"
        )
    return messages[0]["content"], parts


__all__ = ["MISSING", "AudioSlot", "ReleasedJudge", "load_released", "released_parts"]
