"""Small display helpers of the chat pages."""

from datetime import datetime, timedelta

from django import template
from django.utils import timezone

from conversations.protocol import CLOSE_UNAUTHENTICATED, PLACEHOLDER_ID

register = template.Library()


@register.simple_tag
def placeholder_id() -> str:
    return str(PLACEHOLDER_ID)


@register.simple_tag
def close_unauthenticated() -> int:
    return CLOSE_UNAUTHENTICATED


@register.filter
def recency(moment: datetime | None) -> str:
    """The sidebar group of a conversation's last activity: Today, Yesterday, ..."""
    if moment is None:
        return "Older"
    today = timezone.localdate()
    day = timezone.localtime(moment).date()
    if day >= today:
        return "Today"
    if day == today - timedelta(days=1):
        return "Yesterday"
    if day > today - timedelta(days=7):
        return "Previous 7 days"
    if day > today - timedelta(days=30):
        return "Previous 30 days"
    return "Older"
