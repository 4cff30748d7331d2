"""Values every page's template may use."""

from django.utils.functional import SimpleLazyObject

from conversations.selectors import user_theme


def theme(request) -> dict:
    # Lazy: only base.html reads it, so fragments (sidebar pages, older messages) cost no query.
    return {"theme": SimpleLazyObject(lambda: user_theme(user=request.user))}
