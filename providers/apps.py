from django.apps import AppConfig


class ProvidersConfig(AppConfig):
    name = "providers"
    verbose_name = "Providers"

    def ready(self) -> None:
        # Import the provider modules at start-up, not on the first chat (inside the event loop).
        from providers.registry import all_providers

        all_providers()
