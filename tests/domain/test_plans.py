"""Plan terms: which rule applies to a model, what it replaces, and what it leaves."""

from __future__ import annotations

from decimal import Decimal

from openmaas.domain.plans import PLAN_SCOPE, Metric, Plan, PlanRule


def _pro() -> Plan:
    llama = PlanRule(
        models=("llama-*",),
        name="llama",
        limits={"requests_per_minute": 60, "output_tokens_per_minute": 1000},
        prices={"price_per_1k_output_tokens": 1.5},
    )
    everything = PlanRule(models=("*",), limits={"requests_per_minute": 1})
    return Plan(
        id=1,
        name="pro",
        requests_per_minute=600,
        tokens_per_minute=100_000,
        price_per_1k_input_tokens=0.1,
        price_per_1k_output_tokens=0.2,
        rules=(llama, everything),
    )


def test_the_first_matching_rule_replaces_what_it_sets() -> None:
    plan = _pro()
    terms = plan.terms_for("llama-3")
    assert (terms.plan, terms.rule, terms.rule_name) == ("pro", 0, "llama")
    assert terms.limit("requests_per_minute") == 60
    assert terms.limit("tokens_per_minute") == 100_000  # left to the plan
    # Prices are exact: the float 0.1 given became Decimal("0.1"), not 0.1000000000000000055.
    assert terms.price_per_1k_output_tokens == Decimal("1.5")
    assert terms.price_per_1k_input_tokens == Decimal("0.1")
    scopes = {limit.name: limit.scope for limit in terms.limits}
    assert scopes["tokens_per_minute"] == PLAN_SCOPE
    assert scopes["requests_per_minute"] == plan.rules[0].scope != PLAN_SCOPE
    assert [x.metric for x in terms.token_limits] == [
        Metric.OUTPUT_TOKENS,
        Metric.TOTAL_TOKENS,
    ]
    assert terms.caps_output
    other = plan.terms_for("mistral")
    assert other.rule == 1 and other.limit("requests_per_minute") == 1
    assert plan.terms_for("llama-3") is terms  # cached per model name


def test_without_rules_the_defaults_apply() -> None:
    plan = Plan(id=2, name="free", requests_per_day=10)
    terms = plan.terms_for("anything")
    assert terms.rule is None and terms.rule_name is None
    assert [limit.name for limit in terms.limits] == ["requests_per_day"]
    assert not terms.token_limits and not terms.caps_output


def test_rules_round_trip_as_stored() -> None:
    stored = {
        "models": ["tiny-*"],
        "name": "tiny",
        "input_tokens_per_day": 5,
        "price_per_request": "0.0005",
    }
    rule = PlanRule.from_dict(stored)
    assert rule.prices == {"price_per_request": Decimal("0.0005")}
    assert rule.to_dict() == stored  # prices stored (and shown) as exact decimal strings
    assert rule.matches("tiny-chat") and not rule.matches("huge")
    # The counter scope follows the models, not the position or the name.
    assert rule.scope == PlanRule(models=("tiny-*",)).scope
