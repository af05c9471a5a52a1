"""Loading a ruleset: TOML text -> validated :class:`RulesetFile` -> a
:class:`CompiledRuleset` of closures.

Invariants:
* Every failure is a :class:`RulesetError` (a ConfigError: the CLI answers
  exit 2) whose message names the file and the field (``rules[2]
  (id "card-day").max_amount_minor: ...``); never a traceback, never a value
  that could be a card hash.
* A disabled rule is validated but not compiled: it costs nothing at run time.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from posp.errors import ConfigError
from posp.risk import kinds_counter as kc
from posp.risk import kinds_simple as ks
from posp.risk.compiled import Check, CompiledRule, Fusion, single
from posp.risk.engine import CompiledRuleset
from posp.risk.model import DEFAULT_CODES, Action, RiskCode, Rule, RulesetFile, ScopeKind

DEFAULT_RULESET_NAME = "default_ruleset.toml"

_SCOPE_ATTRS: dict[ScopeKind, str | None] = {
    ScopeKind.ALL: None,
    ScopeKind.MERCHANT_GROUP: "merchant_group",
    ScopeKind.MCC: "mcc",
    ScopeKind.MERCHANT: "merchant_id",
    ScopeKind.TERMINAL: "terminal_id",
}


class RulesetError(ConfigError):
    """A ruleset file that cannot be read, parsed or validated."""


def parse_ruleset(text: str, *, source: str = "ruleset") -> RulesetFile:
    """Validate TOML ``text``; errors name ``source`` and each bad field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesetError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return RulesetFile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(error, data) for error in exc.errors()[:10])
        raise RulesetError(f"{source}: {problems}") from exc


def read_ruleset(path: str | Path) -> RulesetFile:
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesetError(f"{path}: cannot read the ruleset ({type(exc).__name__})") from exc
    return parse_ruleset(text, source=str(path))


def default_ruleset_text() -> str:
    return resources.files("posp.risk").joinpath(DEFAULT_RULESET_NAME).read_text("utf-8")


def load_ruleset(path: str | Path | None = None) -> CompiledRuleset:
    """The compiled ruleset of ``path``, or the shipped default when None."""
    if path is None:
        return compile_ruleset(parse_ruleset(default_ruleset_text(), source=DEFAULT_RULESET_NAME))
    return compile_ruleset(read_ruleset(path))


def compile_ruleset(ruleset: RulesetFile) -> CompiledRuleset:
    compiled = [compile_rule(rule) for rule in ruleset.rules if rule.enabled]
    return CompiledRuleset(
        ruleset.version,
        ruleset.business_day_rollover,
        frozenset(ruleset.counted_txn_types),
        compiled,
    )


def compile_rule(rule: Rule) -> CompiledRule:
    """One validated rule as closures (see posp.risk.compiled)."""
    base: dict[str, Any] = {
        "id": rule.id,
        "kind": rule.kind,
        "action": rule.action,
        "code": rule.code or DEFAULT_CODES[rule.kind],
        "explicit_code": rule.code is not None,
        "txn_types": frozenset(rule.txn_types),
        "scope_attr": _SCOPE_ATTRS[rule.scope.kind],
        "scope_values": frozenset(rule.scope.values),
    }
    parts = _counter_parts(rule)
    if parts is not None:
        caps = parts.caps if rule.action is Action.DECLINE else ()
        return CompiledRule(
            **base, check=parts.check, families=parts.families, caps=caps, fusion=parts.fusion
        )
    fuse = _FUSED_SIMPLE_KINDS.get(rule.kind)
    if fuse is not None:
        fusion = fuse(rule)
        return CompiledRule(**base, check=single(fusion), fusion=fusion)
    return CompiledRule(**base, check=_simple_check(rule))


#: Rule kind -> its compiler (principle 2: the kinds are a table).
_COUNTER_KINDS: dict[str, Callable[[Any, RiskCode | None], kc.CounterParts]] = {
    "velocity": kc.compile_velocity,
    "interval": kc.compile_interval,
    "pair_months": kc.compile_pair_months,
    "night": kc.compile_night,
    "fallback": kc.compile_fallback,
    "merchant_spike": kc.compile_merchant_spike,
}
_SIMPLE_KINDS: dict[str, Callable[[Any], Check]] = {
    "region": ks.compile_region,
    "block_list": ks.compile_block_list,
}
#: Kinds without counters whose rules fuse (see posp.risk.compiled.Fusion).
_FUSED_SIMPLE_KINDS: dict[str, Callable[[Any], Fusion]] = {
    "single_amount": ks.fuse_single_amount,
    "round_amount": ks.fuse_round_amount,
    "odd_amount": ks.fuse_odd_amount,
}


def _counter_parts(rule: Rule) -> kc.CounterParts | None:
    compiler = _COUNTER_KINDS.get(rule.kind)
    return None if compiler is None else compiler(rule, rule.code)


def _simple_check(rule: Rule) -> Check:
    return _SIMPLE_KINDS[rule.kind](rule)


def _describe(error: Any, data: Any) -> str:
    """``rules[2] (id "x").max_minor: Input should be ...`` for one pydantic error."""
    loc = list(error.get("loc", ()))
    parts: list[str] = []
    node: Any = data
    for index, step in enumerate(loc):
        if isinstance(step, int):
            parts.append(f"[{step}]")
            node = node[step] if isinstance(node, list) and step < len(node) else None
            if index == 1 and loc[0] == "rules" and isinstance(node, dict) and "id" in node:
                parts.append(f' (id "{str(node["id"])[:48]}")')
            continue
        if index == 2 and loc[0] == "rules":
            continue  # the discriminator tag pydantic adds (the rule's kind)
        parts.append(f".{step}" if parts else str(step))
        node = node.get(step) if isinstance(node, dict) else None
    where = "".join(parts) or "file"
    return f"{where}: {error.get('msg', 'invalid')}"
