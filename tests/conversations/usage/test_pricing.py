from decimal import Decimal

from conversations.usage.pricing import cost_display, tokens_cost


def test_cost_is_exact_then_rounded_half_up_to_a_hundredth_of_a_cent():
    cost = tokens_cost(
        prompt_tokens=1000,
        completion_tokens=500,
        input_per_million=Decimal("0.15"),
        output_per_million=Decimal("0.60"),
    )
    assert cost == Decimal("0.00045")
    assert cost_display(cost) == "$0.0005"
    assert cost_display(Decimal("4000")) == "$4,000.0000"


def test_a_tiny_cost_is_never_shown_as_zero():
    assert cost_display(Decimal("0.00001")) == "< $0.0001"
    assert cost_display(Decimal(0)) == "$0.0000"


def test_missing_token_counts_cost_nothing():
    cost = tokens_cost(
        prompt_tokens=None,
        completion_tokens=2_000_000,
        input_per_million=Decimal(1),
        output_per_million=Decimal("2.5"),
    )
    assert cost == Decimal(5)
