"""Ranking measures with trec_eval's exact definitions, computed by a compiled kernel.

Conventions (those of trec_eval, and so of pytrec_eval):

- Each query's documents are ordered by score descending; equal scores are ordered by
  document id in descending byte order (trec_eval's ``strcmp`` rule), inside the kernel.
- A document is relevant when its qrels grade is >= `relevance_level`; judged documents with
  a smaller grade >= 0 are judged non-relevant; a negative grade marks a document as pooled but
  unjudged (infAP, bpref skip it); documents missing from the qrels are unjudged and
  non-relevant. Gains (nDCG, G, ...) are the grades themselves unless `gains` says otherwise.
- By default the queries evaluated are those present both in the run and (with at least one
  judgement) in the qrels, as trec_eval and pytrec_eval do; ``complete=True`` (trec_eval's
  ``-c``) also scores every other query of the qrels as an empty ranking. A query of the run
  absent from the qrels is ignored, and a query of the run with no documents scores 0 on every
  measure (where trec_eval would divide 0 by 0).

Every measure of ``trec_eval -m all_trec`` is available except ``runid`` and ``relstring``
(text, not numbers); see :data:`MEASURES`. Definitions follow trec_eval 9 as pytrec_eval
bundles it, checked query by query against pytrec_eval. Two details where trec_eval versions
differ or are loose:

- iprec_at_recall and 11pt_avg turn a recall level p into a number of relevant documents as
  ``int(p * R + 0.9)`` (trec_eval 9 and pytrec_eval; later trec_eval releases round instead);
- gains given per grade are ordered exactly for the ideal ranking (trec_eval compares gains
  through an integer cast, which only matters for gains that differ by less than 1).

Where trec_eval would divide 0 by 0 (no relevant document, an empty ranking) the value is 0,
as pytrec_eval reports it.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from rank._runsort import sort_run
from rank._validate import resolve_threads
from rank.errors import DTypeError, InvalidValueError, NonFiniteError, ShapeError, UnknownMethodError
from rank_kernels import evaluate as _kernel

__all__ = ["evaluate", "format_trec_eval", "METRICS", "MEASURES", "sort_run"]

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]

_LONG_CUTS = (5, 10, 15, 20, 30, 100, 200, 500, 1000)
_RECALL_POINTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_RPREC_MULTS = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
_MAX_CUT = 2 ** 62


@dataclass(frozen=True)
class _Measure:
    """One measure: kernel code, the trec_eval name, what its parameter is, how it averages."""

    trec: str                     # trec_eval's name (output keys of families use it)
    code: int
    param: str = "none"           # none | cut (int cutoff) | real (float cutoff) | gains | utility | beta | points
    defaults: tuple = ()          # a family's default parameters (trec_eval's)
    agg: str = "mean"             # mean | gm (geometric) | sum | count
    gains: bool = False           # takes user gains (graded measures)


_K = _kernel
_MEASURES = {
    "num_q": _Measure("num_q", _K.NUM_Q, agg="count"),
    "num_ret": _Measure("num_ret", _K.NUM_RET, agg="sum"),
    "num_rel": _Measure("num_rel", _K.NUM_REL, agg="sum"),
    "num_rel_ret": _Measure("num_rel_ret", _K.NUM_REL_RET, agg="sum"),
    "map": _Measure("map", _K.MAP, "cut"),
    "gm_map": _Measure("gm_map", _K.GM_MAP, agg="gm"),
    "rprec": _Measure("Rprec", _K.R_PRECISION),
    "bpref": _Measure("bpref", _K.BPREF),
    "recip_rank": _Measure("recip_rank", _K.RECIP_RANK, "cut"),
    "iprec_at_recall": _Measure("iprec_at_recall", _K.IPREC_AT_RECALL, "real", _RECALL_POINTS),
    "p": _Measure("P", _K.PRECISION, "cut", _LONG_CUTS),
    "recall": _Measure("recall", _K.RECALL, "cut", _LONG_CUTS),
    "infap": _Measure("infAP", _K.INFAP),
    "gm_bpref": _Measure("gm_bpref", _K.GM_BPREF, agg="gm"),
    "rprec_mult": _Measure("Rprec_mult", _K.RPREC_MULT, "real", _RPREC_MULTS),
    "utility": _Measure("utility", _K.UTILITY, "utility", (1.0, -1.0, 0.0, 0.0)),
    "11pt_avg": _Measure("11pt_avg", _K.IPREC_AT_RECALL, "points", _RECALL_POINTS),
    "bing": _Measure("binG", _K.BING),
    "g": _Measure("G", _K.G, "gains", gains=True),
    "ndcg": _Measure("ndcg", _K.NDCG, "gains", gains=True),
    "ndcg_rel": _Measure("ndcg_rel", _K.NDCG_REL, "gains", gains=True),
    "rndcg": _Measure("Rndcg", _K.RNDCG, "gains", gains=True),
    "ndcg_cut": _Measure("ndcg_cut", _K.NDCG, "cut", _LONG_CUTS, gains=True),
    "map_cut": _Measure("map_cut", _K.MAP, "cut", _LONG_CUTS),
    "relative_p": _Measure("relative_P", _K.RELATIVE_P, "cut", _LONG_CUTS),
    "success": _Measure("success", _K.SUCCESS, "cut", (1, 5, 10)),
    "set_p": _Measure("set_P", _K.SET_P),
    "set_relative_p": _Measure("set_relative_P", _K.SET_RELATIVE_P),
    "set_recall": _Measure("set_recall", _K.SET_RECALL),
    "set_map": _Measure("set_map", _K.SET_MAP),
    "set_f": _Measure("set_F", _K.SET_F, "beta", (1.0,)),
    "num_nonrel_judged_ret": _Measure("num_nonrel_judged_ret", _K.NUM_NONREL_JUDGED_RET, agg="sum"),
    # ours (not in trec_eval)
    "ndcg_exp": _Measure("ndcg_exp", _K.NDCG_EXP, "cut"),
}

#: trec_eval's ``-m all_trec`` measures we compute (all but runid and relstring), in its order.
ALL_TREC = ("num_q", "num_ret", "num_rel", "num_rel_ret", "map", "gm_map", "Rprec", "bpref",
            "recip_rank", "iprec_at_recall", "P", "recall.5,10,15,20,30,100,200,500,1000", "infAP", "gm_bpref", "Rprec_mult",
            "utility", "11pt_avg", "binG", "G", "ndcg", "ndcg_rel", "Rndcg", "ndcg_cut", "map_cut",
            "relative_P", "success", "set_P", "set_relative_P", "set_recall", "set_map", "set_F",
            "num_nonrel_judged_ret")
_NICKNAMES = {
    "all_trec": ALL_TREC,
    "official": ("num_q", "num_ret", "num_rel", "num_rel_ret", "map", "gm_map", "Rprec", "bpref",
                 "recip_rank", "iprec_at_recall", "P"),
    "set": ("num_q", "num_ret", "num_rel", "num_rel_ret", "utility", "set_P", "set_recall",
            "set_relative_P", "set_map", "set_F"),
}

# alias (lower case) -> (measure key, cutoff rule for "name" without parameter:
#   "default": the measure's default (a family's default cutoffs, or none);
#   "required": a cutoff must be given ("precision@5");
#   "whole": no cutoff means the whole ranking ("recall", "map@k"-style names))
_ALIASES = {
    # trec_eval / pytrec_eval names
    **{k: (k, "default") for k in _MEASURES},
    "rprec": ("rprec", "default"),
    # ours
    "precision": ("p", "required"), "recall": ("recall", "whole"), "mrr": ("recip_rank", "default"),
    "r_precision": ("rprec", "default"), "hit_rate": ("success", "required"),
    # ir_measures / ranx
    "ap": ("map", "default"), "rr": ("recip_rank", "default"), "r": ("recall", "whole"),
    "r-precision": ("rprec", "default"), "r_prec": ("rprec", "default"),
    "numret": ("num_ret", "default"), "numrel": ("num_rel", "default"),
    "numrelret": ("num_rel_ret", "default"), "numq": ("num_q", "default"),
    "setp": ("set_p", "default"), "setr": ("set_recall", "default"), "setf": ("set_f", "default"),
    "setap": ("set_map", "default"), "iprec": ("iprec_at_recall", "required"),
}
# "p" alone is trec_eval's family (P_5 ... P_1000)
_ALIASES["p"] = ("p", "default")

#: Every valid measure name pattern. ``@k``/``.k``/``_k`` give a cutoff (``"ndcg@10"``,
#: ``"ndcg_cut.10"``, ``"P_5"``), ``[@k]`` an optional one; a family name alone (``"P"``,
#: ``"ndcg_cut"``, ``"success"``, ``"iprec_at_recall"``, ``"Rprec_mult"``, ``"map_cut"``,
#: ``"relative_P"``) means trec_eval's default cutoffs; ``"all_trec"`` / ``"official"`` /
#: ``"set"`` are trec_eval's nicknames.
METRICS = ("ndcg[@k]", "ndcg_exp[@k]", "map[@k]", "mrr[@k]", "recip_rank", "precision@k",
           "recall[@k]", "r_precision", "hit_rate@k", "bpref")
#: trec_eval's measures (``-m all_trec`` minus runid and relstring) and accepted aliases.
MEASURES = tuple("recall.k" if m.startswith("recall.") else m for m in ALL_TREC) + (
    "ndcg_exp", "all_trec", "official", "set") + METRICS + (
    "nDCG@k", "AP[@k]", "RR[@k]", "P@k", "R@k", "Rprec", "Success@k", "IPrec@r", "NumRet", "NumRel",
    "NumRelRet", "SetP", "SetR", "SetF", "SetAP")

_CUT_NAME = re.compile(r"^(.*?)@(.*)$")


def _valid_list() -> str:
    return ", ".join(MEASURES)


def _unknown(name: str) -> UnknownMethodError:
    shown = {a: (_MEASURES[a].trec if a in _MEASURES else a) for a in _ALIASES}
    shown.update({n: n for n in _NICKNAMES})
    base = re.split(r"[@.]", name.strip(), maxsplit=1)[0].lower()
    near = (difflib.get_close_matches(base, list(shown), n=1, cutoff=0.6)
            or difflib.get_close_matches(name.strip().lower(), list(shown), n=1, cutoff=0.6))
    hint = f" (did you mean {shown[near[0]]!r}?)" if near else ""
    return UnknownMethodError(f"metrics must be one of {_valid_list()}; got {name!r}{hint}")


def _cutoff(text: str, name: str) -> int:
    try:
        k = int(text)
    except (TypeError, ValueError):
        raise InvalidValueError(f"metrics: cutoff of {name!r} must be a positive integer, got {text!r}") from None
    if k <= 0:
        raise InvalidValueError(f"metrics: cutoff of {name!r} must be a positive integer, got {k}")
    if k > _MAX_CUT:
        raise InvalidValueError(f"metrics: cutoff of {name!r} must be a positive integer <= 2**62, got {k}")
    return k


def _real(text: str, name: str, lo: float, hi: float) -> float:
    try:
        x = float(text)
    except (TypeError, ValueError):
        raise InvalidValueError(f"metrics: parameter of {name!r} must be a number, got {text!r}") from None
    if not (lo <= x <= hi):
        raise InvalidValueError(f"metrics: parameter of {name!r} must be in [{lo}, {hi}], got {text!r}")
    return x


def _gain_pairs(text: str, name: str) -> dict:
    out = {}
    for part in text.split(","):
        level, sep, value = part.partition("=")
        if not sep:
            raise InvalidValueError(f"metrics: gains of {name!r} must read 'level=gain,...' (e.g. 'ndcg.1=3,2=9'), "
                                    f"got {text!r}")
        out[_level(level, name)] = _gain_value(value, name)
    return out


def _level(x: Any, name: str) -> int:
    """A relevance level (a grade given a gain) as an int >= 0."""
    level = None
    if isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)):
        level = int(x)
    elif isinstance(x, float) and x.is_integer():
        level = int(x)
    elif isinstance(x, str) and re.fullmatch(r"\s*[+-]?\d+\s*", x):
        level = int(x)
    if level is None or level < 0 or level > 2 ** 62:
        raise InvalidValueError(f"{name}: relevance level must be an integer in [0, 2**62], got {x!r}")
    return level


def _gain_value(x: Any, name: str) -> float:
    try:
        g = float(x)
    except (TypeError, ValueError):
        raise InvalidValueError(f"{name}: gain must be a number, got {x!r}") from None
    if not math.isfinite(g):
        raise InvalidValueError(f"{name}: gain must be finite, got {x!r}")
    return g


@dataclass
class _Plan:
    """Kernel columns (code, k, params, gains) and, per output key, how to read them."""

    codes: list = field(default_factory=list)
    ks: list = field(default_factory=list)
    params: list = field(default_factory=list)
    gains: list = field(default_factory=list)
    index: dict = field(default_factory=dict)
    outputs: list = field(default_factory=list)   # (key, [columns], agg, trec_eval's name)

    def column(self, code: int, k: int = 0, params: tuple = (0.0, 0.0, 0.0, 0.0), gains: tuple = ()) -> int:
        sig = (code, k, params, gains)
        if sig not in self.index:
            self.index[sig] = len(self.codes)
            self.codes.append(code)
            self.ks.append(k)
            self.params.append(params)
            self.gains.append(gains)
        return self.index[sig]

    def arrays(self):
        codes = np.array(self.codes, np.int32)
        ks = np.array(self.ks, np.int64)
        params = np.array(self.params, np.float64).reshape(len(self.codes), 4)
        goff = np.zeros(len(self.codes) + 1, np.int64)
        np.cumsum([len(g) for g in self.gains], out=goff[1:])
        glev = np.array([lv for g in self.gains for lv, _ in g] or [0], np.int64)
        gval = np.array([v for g in self.gains for _, v in g] or [0.0], np.float64)
        return codes, ks, params, goff, glev, gval


def _fmt_real(x: float) -> str:
    return f"{x:3.2f}"


def _add(plan: _Plan, name: str, given: str, m: _Measure, arg: Optional[str], style: str,
         user_gains: Mapping[int, float]) -> None:
    """Add measure `m` as requested by `given` (with parameter text `arg`, or None) to `plan`.
    style: "at" (name@k: one value), "dot" (trec name.params), "us" (trec name_param), "bare"."""
    gains: tuple[tuple[int, float], ...] = ()
    if m.gains:
        g = dict(user_gains)
        if m.param == "gains" and arg is not None and style == "dot":
            g.update(_gain_pairs(arg, given))
            arg = None
        gains = tuple(sorted(g.items()))
    if m.param == "gains":
        if arg is not None:  # ndcg@k (ours): nDCG cut at k
            if m.code != _K.NDCG:
                raise InvalidValueError(f"metrics: {given!r} takes no cutoff; its parameters are gains "
                                        f"('{m.trec}.1=3,2=9')")
            k = _cutoff(arg, given)
            plan.outputs.append((given, [plan.column(m.code, k, gains=gains)], m.agg, f"ndcg_cut_{k}"))
            return
        shown = m.trec + ("_" + ",".join(f"{lv}={g:g}" for lv, g in gains) if gains else "")
        plan.outputs.append((given, [plan.column(m.code, 0, gains=gains)], m.agg, shown))
        return
    if m.param == "none":
        if arg is not None:
            raise InvalidValueError(f"metrics: {given!r} takes no cutoff (use '{name}')")
        plan.outputs.append((given, [plan.column(m.code)], m.agg, m.trec))
        return
    if m.param == "utility" or m.param == "beta":
        if style == "at":
            raise InvalidValueError(f"metrics: {given!r}: give the parameters trec_eval's way, e.g. "
                                    f"'{m.trec}.{','.join(str(x) for x in m.defaults)}'")
        vals = m.defaults if arg is None else tuple(
            _real(x, given, -1e300, 1e300) for x in arg.split(","))
        if len(vals) != len(m.defaults):
            raise InvalidValueError(f"metrics: {given!r} takes {len(m.defaults)} parameter(s), got {len(vals)}")
        if m.param == "beta" and vals[0] < 0:
            raise InvalidValueError(f"metrics: the beta of {given!r} must be >= 0, got {vals[0]}")
        p = tuple(vals) + (0.0,) * (4 - len(vals))
        plan.outputs.append((given, [plan.column(m.code, 0, p)], m.agg, m.trec if arg is None else f"{m.trec}_{arg}"))
        return
    if m.param == "points":
        if style == "at":
            raise InvalidValueError(f"metrics: {given!r}: give recall points trec_eval's way, e.g. '11pt_avg.0.2,0.5,0.8'")
        pts = m.defaults if arg is None else tuple(_real(x, given, 0.0, 1.0) for x in arg.split(","))
        cols = [plan.column(m.code, 0, (p, 0.0, 0.0, 0.0)) for p in pts]
        plan.outputs.append((given, cols, "mean_of_columns", m.trec if arg is None else f"{m.trec}_{arg}"))
        return
    # cutoff families: cut (int) or real (float)
    if arg is None:
        if not m.defaults:  # map, recip_rank, ndcg_exp, recall: the whole ranking
            shown = "set_recall" if m.code == _K.RECALL else m.trec
            plan.outputs.append((given, [plan.column(m.code, 0, gains=gains)], m.agg, shown))
            return
        values = list(m.defaults)
        single = False
    else:
        parts = arg.split(",")
        single = len(parts) == 1
        if m.param == "cut":
            values = [_cutoff(x, given) for x in parts]
        else:
            hi = 1.0 if m.code == _K.IPREC_AT_RECALL else 1e6
            values = [_real(x, given, 0.0, hi) for x in parts]
        if len(set(values)) != len(values):
            raise InvalidValueError(f"metrics: duplicate cutoffs in {given!r}")
    base = {"map": "map_cut", "ndcg": "ndcg_cut"}.get(m.trec, m.trec)
    for v in values:
        if m.param == "cut":
            col = plan.column(m.code, v, gains=gains)
            shown = f"{base}_{v}"
        else:
            col = plan.column(m.code, 0, (v, 0.0, 0.0, 0.0))
            shown = f"{base}_{_fmt_real(v)}"
        plan.outputs.append((given if single else shown, [col], m.agg, shown))


def _parse(plan: _Plan, name: object, user_gains: Mapping[int, float]) -> None:
    if not isinstance(name, str):
        raise UnknownMethodError(f"metrics must be metric names (str) from {_valid_list()}; got {name!r}")
    given = name
    s = name.strip()
    low = s.lower()
    if low in _NICKNAMES:
        for n in _NICKNAMES[low]:
            _parse(plan, n, user_gains)
        return
    if low in ("runid", "relstring"):
        raise UnknownMethodError(f"metrics must be one of {_valid_list()} ({name!r} is text, not a number, "
                                 f"and is not computed); got {name!r}")
    # name@k (ours, ranx, ir_measures)
    m = _CUT_NAME.match(s)
    if m:
        base = m.group(1).lower()
        if base not in _ALIASES:
            raise _unknown(name)
        key, _ = _ALIASES[base]
        meas = _MEASURES[key]
        if meas.param in ("none", "utility", "beta", "points") or (meas.param == "gains" and meas.code != _K.NDCG):
            raise InvalidValueError(f"metrics: {name!r} takes no cutoff (use '{m.group(1)}')")
        _add(plan, base, given, meas, m.group(2), "at", user_gains)
        return
    # exact name
    if low in _ALIASES:
        key, rule = _ALIASES[low]
        meas = _MEASURES[key]
        if rule == "required":
            raise InvalidValueError(f"metrics: {name!r} needs a cutoff, e.g. '{s}@10'")
        if rule == "whole":
            _add(plan, low, given, _Measure(meas.trec, meas.code, "cut"), None, "bare", user_gains)
            return
        _add(plan, low, given, meas, None, "bare", user_gains)
        return
    # trec_eval: name.params
    base, dot, arg = s.partition(".")
    if dot and base.lower() in _ALIASES:
        key, _ = _ALIASES[base.lower()]
        if not arg:
            raise InvalidValueError(f"metrics: {name!r}: nothing after the '.'")
        _add(plan, base.lower(), given, _MEASURES[key], arg, "dot", user_gains)
        return
    # pytrec_eval's output names: name_param
    base, us, arg = s.rpartition("_")
    if us and base.lower() in _ALIASES:
        key, _ = _ALIASES[base.lower()]
        meas = _MEASURES[key]
        if meas.param in ("cut", "real") and re.fullmatch(r"[0-9.]+", arg):
            _add(plan, base.lower(), given, meas, arg, "us", user_gains)
            return
    raise _unknown(name)


def _metric_list(metrics: Union[str, Sequence[str]]) -> list:
    if isinstance(metrics, str):
        return [metrics]
    try:
        names = list(metrics)
    except TypeError:
        raise UnknownMethodError(f"metrics must be a name or a list of names; got {metrics!r}") from None
    if not names:
        raise InvalidValueError(f"metrics: expected at least one metric; valid: {_valid_list()}")
    return names


def _check_gains(gains: object) -> dict:
    if gains is None:
        return {}
    if not isinstance(gains, Mapping):
        raise InvalidValueError(f"gains: expected a dict {{grade: gain}}, e.g. {{1: 3, 2: 9}}, got {gains!r}")
    return {_level(k, "gains"): _gain_value(v, "gains") for k, v in gains.items()}


def plan_metrics(metrics: Union[str, Sequence[str]], gains: object = None) -> _Plan:
    """The kernel plan of a list of measure names (UnknownMethodError / InvalidValueError)."""
    plan = _Plan()
    g = _check_gains(gains)
    for n in _metric_list(metrics):
        _parse(plan, n, g)
    return plan


def parse_metric(name: object) -> tuple[int, int]:
    """(kernel code, cutoff or 0) of a single-valued measure name (kept for callers of the
    original API); UnknownMethodError / InvalidValueError."""
    plan = plan_metrics([name])  # type: ignore[list-item]
    if len(plan.outputs) != 1 or len(plan.outputs[0][1]) != 1:
        raise InvalidValueError(f"metrics: {name!r} names several values")
    col = plan.outputs[0][1][0]
    return plan.codes[col], plan.ks[col]


def _check_dict(x: object, name: str) -> dict:
    if not isinstance(x, dict):
        if isinstance(x, Mapping):
            return {q: (d if isinstance(d, dict) else dict(d)) for q, d in x.items()}
        raise DTypeError(f"{name}: expected a dict {{qid: {{docid: value}}}}, got {type(x).__name__}")
    return x


def _first_nan(qids, offsets, scores, run):
    bad = int(np.flatnonzero(np.isnan(scores))[0])
    q = int(np.searchsorted(offsets, bad, side="right") - 1)
    doc = list(run[qids[q]])[bad - int(offsets[q])]
    raise NonFiniteError(f"run[{qids[q]!r}][{doc!r}]: score is NaN (scores must be numbers; +-inf is allowed)")


def _check_options(relevance_level, max_docs, complete):
    if isinstance(relevance_level, (bool, np.bool_)) or not isinstance(relevance_level, (int, np.integer)):
        raise InvalidValueError(f"relevance_level: expected an integer >= 0, got {relevance_level!r}")
    if not (0 <= int(relevance_level) <= 2 ** 62):
        raise InvalidValueError(f"relevance_level: expected an integer in [0, 2**62], got {relevance_level!r}")
    if max_docs is not None:
        if isinstance(max_docs, (bool, np.bool_)) or not isinstance(max_docs, (int, np.integer)) or max_docs <= 0:
            raise InvalidValueError(f"max_docs: expected a positive integer or None, got {max_docs!r}")
    if not isinstance(complete, (bool, np.bool_)):
        raise InvalidValueError(f"complete: expected True or False, got {complete!r}")
    return int(relevance_level), (0 if max_docs is None else min(int(max_docs), 2 ** 62)), bool(complete)


def evaluate_arrays(qrels: Qrels, run: Run, plan: _Plan, relevance_level: int, n_threads: int,
                     max_docs: int = 0, complete: bool = False) -> Any:
    """(qids, values float64 (n_queries, n_columns)) for the queries in both run and qrels (and,
    with `complete`, every other query of the qrels as an empty ranking)."""
    run = _check_dict(run, "run")
    qrels = _check_dict(qrels, "qrels")
    if not run:
        raise ShapeError("run: expected at least one query, got an empty run")
    if not qrels:
        raise ShapeError("qrels: expected at least one query, got empty qrels")
    try:
        qids, offsets, scores, rels, ids, qoffsets, qgrades = _kernel.encode_run(run, qrels, complete)
    except TypeError as e:
        raise DTypeError(str(e)) from None
    if scores.size and np.isnan(scores).any():
        _first_nan(qids, offsets, scores, run)
    perm = np.empty(scores.shape[0], np.int64)
    _kernel.sort_run_segments(offsets, scores, ids, perm, n_threads)
    codes, ks, params, goff, glev, gval = plan.arrays()
    out = np.empty((len(qids), codes.shape[0]), np.float64)
    _kernel.metrics(offsets, perm, rels, qoffsets, qgrades, codes, ks, params, goff, glev, gval,
                    relevance_level, max_docs, out, n_threads)
    return qids, out


def metric_columns(plan: _Plan, out: np.ndarray) -> np.ndarray:
    """Per-query values of each output key (n_queries, n_outputs)."""
    cols = np.empty((out.shape[0], len(plan.outputs)), np.float64)
    for j, (_, idx, agg, _) in enumerate(plan.outputs):
        cols[:, j] = out[:, idx].mean(axis=1) if agg == "mean_of_columns" else out[:, idx[0]]
    return cols


def _aggregate(plan: _Plan, cols: np.ndarray) -> list:
    vals = []
    n = cols.shape[0]
    for j, (_, _, agg, _) in enumerate(plan.outputs):
        c = cols[:, j]
        if agg == "gm":
            vals.append(float(math.exp(c.mean())) if n else 0.0)
        elif agg == "sum":
            vals.append(float(c.sum()))
        elif agg == "count":
            vals.append(float(n))
        else:
            vals.append(float(c.mean()) if n else 0.0)
    return vals


def _evaluated(qrels: Qrels, run: Run, metrics: Union[str, Sequence[str]], gains: Optional[Mapping[int, float]],
               relevance_level: int, max_docs: Optional[int], complete: bool, n_threads: int | None) -> Any:
    """``(plan, qids, columns)``: the arguments of :func:`evaluate` checked, every query evaluated."""
    plan = plan_metrics(metrics, gains)
    level, mdocs, comp = _check_options(relevance_level, max_docs, complete)
    qids, out = evaluate_arrays(qrels, run, plan, level, resolve_threads(n_threads), mdocs, comp)
    if not qids:
        raise ShapeError("run: no query of the run has judgements in qrels")
    return plan, qids, metric_columns(plan, out)


def evaluate(qrels: Qrels, run: Run, metrics: Union[str, Sequence[str]], *, per_query: bool = False,
             relevance_level: int = 1, gains: Optional[Mapping[int, float]] = None,
             max_docs: Optional[int] = None, complete: bool = False,
             n_threads: int | None = None) -> dict[str, Any]:
    """Evaluate a run against relevance judgements, with trec_eval's exact definitions.

    Parameters
    ----------
    qrels : dict ``{qid: {docid: grade}}``
        Relevance grades (int, any int64 value; >= `relevance_level` is relevant, a negative
        grade marks a pooled but unjudged document; see :func:`read_qrels`).
    run : dict ``{qid: {docid: score}}``
        Retrieval scores (int or float; +-inf allowed, NaN refused), as pytrec_eval and ranx
        take them; document ids are str; the order of the inner dicts does not matter.
    metrics : str or list of str
        Measure names, in any of these spellings (keys of the result keep the spelling given):

        - ours: ``"ndcg@10"``, ``"ndcg"``, ``"ndcg_exp@10"`` (gain ``2**grade - 1``),
          ``"map"``, ``"map@k"``, ``"mrr"``/``"mrr@k"``/``"recip_rank"``, ``"precision@k"``
          (always divided by k), ``"recall"``/``"recall@k"``, ``"r_precision"``,
          ``"hit_rate@k"``, ``"bpref"``;
        - trec_eval's (``-m``) and pytrec_eval's: ``"ndcg_cut.10"``, ``"ndcg_cut_10"``,
          ``"P.5"``, ``"P_5"``, ``"recall.100"``, ``"iprec_at_recall.0.5"``,
          ``"ndcg.1=3,2=9"`` (gains per grade), ``"utility.1,-1,0,0"``, ``"set_F.0.5"``,
          ``"11pt_avg.0.2,0.5,0.8"``; a family name alone (``"P"``, ``"ndcg_cut"``,
          ``"map_cut"``, ``"success"``, ``"relative_P"``, ``"iprec_at_recall"``,
          ``"Rprec_mult"``) or a list of cutoffs (``"P.5,10"``) gives one key per cutoff named
          as trec_eval does (``"P_5"``, ``"iprec_at_recall_0.10"``); the nicknames
          ``"all_trec"``, ``"official"`` and ``"set"`` expand to their measures. Every
          measure of ``-m all_trec`` is there: num_q, num_ret, num_rel, num_rel_ret, map,
          gm_map, Rprec, bpref, recip_rank, iprec_at_recall, P, recall, infAP, gm_bpref,
          Rprec_mult, utility, 11pt_avg, binG, G, ndcg, ndcg_rel, Rndcg, ndcg_cut, map_cut,
          relative_P, success, set_P, set_relative_P, set_recall, set_map, set_F,
          num_nonrel_judged_ret (not runid and relstring, which are text);
        - ir_measures' and ranx's where unambiguous: ``"nDCG@10"``, ``"AP"``, ``"RR"``,
          ``"P@5"``, ``"R@100"``, ``"Success@10"``, ``"Rprec"``, ``"NumRet"``, ...

        Names are matched case-insensitively. One exception to trec_eval's meaning:
        ``"recall"`` alone is recall over the whole ranking (as before; trec_eval's family is
        ``"recall.5,10,..."``).
    per_query : bool, default False
        False: ``{metric: aggregate}``. True: ``{qid: {metric: value}}`` (pytrec_eval's
        layout, and its values: gm_map and gm_bpref per query are ``log(max(x, 1e-5))``).
    relevance_level : int, default 1
        Smallest grade that counts as relevant (trec_eval's ``-l``), >= 0.
    gains : dict ``{grade: gain}``, optional
        Gains of the graded measures (nDCG in every form except ndcg_exp, G, ndcg_rel,
        Rndcg), as trec_eval's ``ndcg.1=3,2=9`` parameters: grades not listed keep the grade
        as gain. Gains in a measure name override these.
    max_docs : int, optional
        Only the first `max_docs` documents of each ranking count (trec_eval's ``-M``).
    complete : bool, default False
        Also score every query of the qrels that the run lacks, as an empty ranking, so that
        it enters every mean (trec_eval's ``-c``).
    n_threads : int, optional
        Threads for the kernels (default: every core; clamped, see
        :func:`rank._validate.resolve_threads`).

    Returns
    -------
    dict of float, or dict of dict of float (see `per_query`). Aggregates are those trec_eval
    prints: the arithmetic mean over the evaluated queries, the geometric mean for gm_map and
    gm_bpref (``exp`` of the mean log), the sum for num_ret, num_rel, num_rel_ret and
    num_nonrel_judged_ret, and the number of queries for num_q.

    Complexity: one pass over the run's dict items, then O(n log n) per query of n documents
    (sorted in parallel without the GIL, ties included) and O(n + j log j) per measure (j
    judged documents).

    Raises DTypeError (a score or grade is not a number, a document id is not a str),
    NonFiniteError (NaN score), ShapeError (empty run or qrels, or no query in common),
    UnknownMethodError (unknown measure; the message suggests the nearest and lists the valid
    ones), InvalidValueError (bad cutoff, parameter, gains, level or option).

    >>> qrels = {"q1": {"d1": 2, "d2": 0, "d3": 1}}
    >>> run = {"q1": {"d1": 0.5, "d2": 0.9, "d4": 0.1}}
    >>> evaluate(qrels, run, ["map", "mrr", "precision@2", "P_2", "num_rel_ret"])
    {'map': 0.25, 'mrr': 0.5, 'precision@2': 0.5, 'P_2': 0.5, 'num_rel_ret': 1.0}
    >>> evaluate(qrels, run, "ndcg.1=3,2=9")["ndcg.1=3,2=9"] == evaluate(qrels, run, "ndcg", gains={1: 3, 2: 9})["ndcg"]
    True
    """
    plan, qids, cols = _evaluated(qrels, run, metrics, gains, relevance_level, max_docs, complete, n_threads)
    keys = [o[0] for o in plan.outputs]
    if per_query:
        rows = cols.tolist()
        return {q: dict(zip(keys, row)) for q, row in zip(qids, rows)}
    return dict(zip(keys, _aggregate(plan, cols)))


def format_trec_eval(qrels: Qrels, run: Run, metrics: Union[str, Sequence[str]], *, per_query: bool = False,
                     relevance_level: int = 1, gains: Optional[Mapping[int, float]] = None,
                     max_docs: Optional[int] = None, complete: bool = False,
                     n_threads: int | None = None) -> str:
    """The evaluation as ``trec_eval`` prints it, so that the two outputs can be diffed.

    One line per measure: its trec_eval name (``ndcg@10`` prints as ``ndcg_cut_10``, ``P.5``
    as ``P_5``) left-aligned in 22 columns, a tab, the query id (``all`` for the summary), a
    tab, and the value with 4 decimals (counts such as num_ret as integers). With `per_query`
    (trec_eval's ``-q``) every query's lines come first, queries in trec_eval's order (sorted
    by id, byte order), without the measures trec_eval reports only in the summary (num_q,
    gm_map, gm_bpref). Measures keep the order given (trec_eval's own order is fixed; sort
    both outputs to compare them line by line when the orders differ). runid and relstring
    are not computed. Arguments as for :func:`evaluate`. O(evaluate).

    >>> print(format_trec_eval({"q1": {"d1": 1}}, {"q1": {"d1": 0.5, "d2": 0.9}}, ["map", "num_ret", "P.1"]), end="")
    map                   	all	0.5000
    num_ret               	all	2
    P_1                   	all	0.0000
    """
    plan, qids, cols = _evaluated(qrels, run, metrics, gains, relevance_level, max_docs, complete, n_threads)
    summary = _aggregate(plan, cols)

    def line(name, qid, value, agg):
        text = f"{int(round(value))}" if agg in ("sum", "count") else f"{value:6.4f}"
        return f"{name:<22}\t{qid}\t{text}\n"

    lines = []
    if per_query:
        order = sorted(range(len(qids)), key=lambda i: str(qids[i]).encode("utf-8"))
        for i in order:
            for j, (_, _, agg, name) in enumerate(plan.outputs):
                if agg not in ("gm", "count"):
                    lines.append(line(name, qids[i], cols[i, j], agg))
    for j, (_, _, agg, name) in enumerate(plan.outputs):
        lines.append(line(name, "all", summary[j], agg))
    return "".join(lines)
