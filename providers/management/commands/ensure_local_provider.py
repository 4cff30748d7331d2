"""First start: with no provider configured yet, make the packaged offline model the default.

`make run` calls this after migrating, so that the first chat works with no API key and no
network. It leaves alone any installation that has a provider configuration, even a disabled one:
whoever deleted or replaced the Local provider meant it.
"""

from django.core.management.base import BaseCommand
from django.db import IntegrityError, transaction

from providers.errors import ProviderError, ProviderNotFoundError
from providers.models import ProviderConfig
from providers.registry import get_provider

LOCAL_NAME = "Local"
ADD_A_PROVIDER = (
    "No provider is configured: add one at /admin/ or with `manage.py providers set NAME "
    "--class OpenAICompatible --api-base URL --model MODEL --default`."
)


class Command(BaseCommand):
    help = "Create the Local provider (the packaged offline model) when no provider exists yet."

    def handle(self, *args, **options):
        if ProviderConfig.objects.exists():
            return
        try:
            get_provider("LlamaCpp")
        except ProviderNotFoundError:
            # llama-cpp-python (the `local` dependency group) is not installed.
            self.stdout.write(ADD_A_PROVIDER)
            return
        from providers.llamacpp import PACKAGED_MODEL, packaged_model_path, packaged_model_target

        # Assembled now rather than during the first chat, which would otherwise wait for it.
        if not packaged_model_target().exists():
            self.stdout.write(
                "Preparing the packaged local model (about 250 MB, first run only)..."
            )
        try:
            packaged_model_path()
        except (ProviderError, OSError, ValueError) as exc:
            self.stderr.write(f"The packaged local model is not usable: {exc}")
            self.stdout.write(ADD_A_PROVIDER)
            return
        try:
            with transaction.atomic():
                if ProviderConfig.objects.exists():
                    return
                ProviderConfig.objects.create(
                    name=LOCAL_NAME,
                    provider_class="LlamaCpp",
                    default_model=PACKAGED_MODEL,
                    is_default=True,
                )
        except IntegrityError:
            # Another process starting at the same moment created it.
            return
        self.stdout.write(
            f"Created the provider {LOCAL_NAME}, the default: a small offline model (Gemma 3 270M) "
            "whose answers are weak. Add a better provider at /admin/."
        )
