"""What tokens cost, and how a cost is written.

Rounding: a cost is computed exactly (Decimal) and rounded half up to four decimal places
(a hundredth of a cent) only when shown; totals add exact costs, then round once. A cost that
is above zero but below $0.00005 is shown as "< $0.0001", never as $0.0000.
"""

from decimal import ROUND_HALF_UP, Decimal

MILLION = Decimal(1_000_000)
SHOWN = Decimal("0.0001")


def tokens_cost(
    *,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    input_per_million: Decimal,
    output_per_million: Decimal,
) -> Decimal:
    return (
        Decimal(prompt_tokens or 0) * input_per_million
        + Decimal(completion_tokens or 0) * output_per_million
    ) / MILLION


def cost_display(cost: Decimal) -> str:
    rounded = cost.quantize(SHOWN, rounding=ROUND_HALF_UP)
    if cost > 0 and rounded == 0:
        return "< $0.0001"
    return f"${rounded:,}"
