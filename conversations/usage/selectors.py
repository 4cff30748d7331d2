"""Reads of usage: what answers cost in tokens, time and money, for one answer, a conversation
and a user over a period. Every total is one grouped query (plus one for the prices), whatever
the number of answers."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, QuerySet, Sum

from conversations.models import Conversation, Message
from conversations.usage.models import ModelPrice
from conversations.usage.pricing import cost_display, tokens_cost

# A user's usage page lists at most this many models (the most used first).
MODELS_SHOWN = 100


def model_prices() -> dict[str, ModelPrice]:
    return {price.model: price for price in ModelPrice.objects.all()}


def _cost(
    prices: dict[str, ModelPrice], model: str, prompt: int | None, completion: int | None
) -> Decimal | None:
    price = prices.get(model)
    if price is None:
        return None
    return tokens_cost(
        prompt_tokens=prompt,
        completion_tokens=completion,
        input_per_million=price.input_per_million,
        output_per_million=price.output_per_million,
    )


def duration_display(duration: timedelta) -> str:
    seconds = max(duration.total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


@dataclass(frozen=True)
class AnswerUsage:
    """One answer's tokens, time to answer (from its start to its end) and cost."""

    prompt_tokens: int | None
    completion_tokens: int | None
    duration: timedelta | None
    cost: Decimal | None

    @property
    def has_tokens(self) -> bool:
        return self.prompt_tokens is not None or self.completion_tokens is not None

    @property
    def duration_text(self) -> str:
        return duration_display(self.duration) if self.duration is not None else ""

    @property
    def cost_text(self) -> str:
        return cost_display(self.cost) if self.cost is not None else ""


def answer_usage(*, message: Message, prices: dict[str, ModelPrice]) -> AnswerUsage | None:
    """None for a message that is not a finished answer."""
    if message.role != Message.Role.ASSISTANT or message.completed_at is None:
        return None
    cost = None
    if message.prompt_tokens is not None or message.completion_tokens is not None:
        cost = _cost(prices, message.model, message.prompt_tokens, message.completion_tokens)
    return AnswerUsage(
        prompt_tokens=message.prompt_tokens,
        completion_tokens=message.completion_tokens,
        duration=message.completed_at - message.created_at if message.created_at else None,
        cost=cost,
    )


@dataclass(frozen=True)
class ModelUsage:
    model: str
    answers: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal | None

    @property
    def cost_text(self) -> str:
        return cost_display(self.cost) if self.cost is not None else ""


@dataclass(frozen=True)
class UsageTotals:
    rows: list[ModelUsage] = field(default_factory=list)

    @property
    def answers(self) -> int:
        return sum(row.answers for row in self.rows)

    @property
    def prompt_tokens(self) -> int:
        return sum(row.prompt_tokens for row in self.rows)

    @property
    def completion_tokens(self) -> int:
        return sum(row.completion_tokens for row in self.rows)

    @property
    def priced(self) -> bool:
        return any(row.cost is not None for row in self.rows)

    @property
    def fully_priced(self) -> bool:
        return all(row.cost is not None for row in self.rows)

    @property
    def cost_text(self) -> str:
        """The sum of the priced models' exact costs, rounded once; blank when none is priced."""
        if not self.priced:
            return ""
        return cost_display(
            sum((row.cost for row in self.rows if row.cost is not None), Decimal(0))
        )


def _totals(answers: QuerySet[Message], prices: dict[str, ModelPrice]) -> UsageTotals:
    grouped = (
        answers.values("model")
        .annotate(
            answers=Count("id"),
            prompt=Sum("prompt_tokens", default=0),
            completion=Sum("completion_tokens", default=0),
        )
        .order_by("-answers", "model")[:MODELS_SHOWN]
    )
    return UsageTotals(
        rows=[
            ModelUsage(
                model=row["model"],
                answers=row["answers"],
                prompt_tokens=row["prompt"],
                completion_tokens=row["completion"],
                cost=_cost(prices, row["model"], row["prompt"], row["completion"]),
            )
            for row in grouped
        ]
    )


def _answers() -> QuerySet[Message]:
    return Message.objects.filter(role=Message.Role.ASSISTANT).exclude(completed_at=None)


def usage_for_conversation(
    *, conversation: Conversation, prices: dict[str, ModelPrice] | None = None
) -> UsageTotals:
    """Every answer of the conversation, on all its branches: each one was paid for."""
    prices = model_prices() if prices is None else prices
    return _totals(_answers().filter(conversation=conversation), prices)


def usage_for_user(*, user: AbstractBaseUser, since: datetime) -> UsageTotals:
    """The user's answers started at or after `since`, per model. Walks the user's
    conversations (conv_owner_recent), then each one's answers by time (msg_conv_created)."""
    answers = _answers().filter(
        # Not a conversation half imported or being deleted (its owner does not see it either).
        conversation__owner=user,
        conversation__hidden_since=None,
        created_at__gte=since,
    )
    return _totals(answers, model_prices())
