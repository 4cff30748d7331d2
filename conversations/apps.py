from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = "Conversations"

    def ready(self) -> None:
        # Connects the receivers that close a user's sockets when their session ends.
        from conversations import sessions  # noqa: F401
