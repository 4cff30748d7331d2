from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models


class ModelPrice(models.Model):
    """What a model costs, set by an admin: answers of this model show their cost."""

    # Matched against the model an answer names (Message.model), exactly.
    model = models.CharField(max_length=200, unique=True)
    input_per_million = models.DecimalField(
        "input price per 1M tokens",
        max_digits=12,
        decimal_places=4,
        validators=[MinValueValidator(Decimal(0))],
        help_text="US dollars per million prompt tokens.",
    )
    output_per_million = models.DecimalField(
        "output price per 1M tokens",
        max_digits=12,
        decimal_places=4,
        validators=[MinValueValidator(Decimal(0))],
        help_text="US dollars per million answer tokens.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]

    def __str__(self) -> str:
        return self.model
