"""First start: with no provider configured yet, make the offline model the default, once it has
shown that it runs on this machine.

`make run` calls this (through `manage.py prepare`) after migrating, so that the first chat works
with no API key and no network. Before creating Local, and at every start while a local model is
the default, it generates a few tokens in a worker process (providers.llamacpp.local_model_check).
When that fails (typically a llama.cpp build this CPU cannot run: SIGILL), it prints one paragraph
saying what failed and how to rebuild, and the site starts without a broken default: Local is not
created, or an existing local default is disabled (the admin enables it again after rebuilding).
It leaves alone any installation that has other provider configurations, even disabled ones:
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
REBUILD = (
    "The usual cause is a llama.cpp build that uses instructions this CPU (or its hypervisor) "
    "does not allow. Rebuild it with `make clean && make run`, which builds for any x86-64 CPU "
    "with AVX2; if it was built with `make run LOCAL_NATIVE=1` (for this CPU only), leave that out."
)


def failure_paragraph(*, failure: ProviderError, outcome: str) -> str:
    from providers.llamacpp_supervisor import WorkerDiedError

    if isinstance(failure, WorkerDiedError):
        what = f"the model's worker process died ({failure.cause}) during a short test answer."
        return f"The local model failed its start-up check: {what} {outcome} {REBUILD}"
    return f"The local model failed its start-up check: {failure} {outcome}"


class Command(BaseCommand):
    help = (
        "Create the Local provider (the packaged offline model) when no provider exists yet, "
        "after checking that the model runs; disable a local default that no longer does."
    )

    def handle(self, *args, **options):
        if ProviderConfig.objects.exists():
            self._check_local_default()
        else:
            self._create_local()

    def _create_local(self) -> None:
        try:
            get_provider("LlamaCpp")
        except ProviderNotFoundError:
            # llama-cpp-python (the `local` dependency group) is not installed.
            self.stdout.write(ADD_A_PROVIDER)
            return
        from providers.llamacpp import PACKAGED_MODEL, local_model_check

        failure = local_model_check()
        if failure is not None:
            outcome = (
                f"The {LOCAL_NAME} provider was not created, so the site starts without an "
                "offline default; add a provider at /admin/, or rebuild and start again."
            )
            self.stderr.write(failure_paragraph(failure=failure, outcome=outcome))
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
            f"Created the provider {LOCAL_NAME}, the default: a small offline model "
            "(SmolLM2-135M-Instruct) for short questions. Add a stronger provider at /admin/."
        )

    def _check_local_default(self) -> None:
        config = ProviderConfig.objects.filter(
            provider_class="LlamaCpp", is_default=True, enabled=True
        ).first()
        if config is None:
            return
        try:
            get_provider("LlamaCpp")
        except ProviderNotFoundError:
            return  # nothing to check with; its answers say the provider is missing
        from providers.llamacpp import PACKAGED_MODEL, local_model_check

        failure = local_model_check(
            model=config.default_model or PACKAGED_MODEL, options=config.options
        )
        if failure is None:
            return
        ProviderConfig.objects.filter(pk=config.pk).update(enabled=False, is_default=False)
        outcome = (
            f"The provider {config.name} was disabled so that no chat goes to it; after "
            "rebuilding, enable it again (and make it the default) at /admin/."
        )
        self.stderr.write(failure_paragraph(failure=failure, outcome=outcome))
