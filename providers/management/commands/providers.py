"""Scripted provider set-up: `providers list`, `providers set NAME ...`, `providers check [NAME]`.

A token is only ever read from stdin (`--token-stdin`), never from the command line, where it
would land in shell history and in every user's process list.
"""

import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction

from providers.admin import token_hint
from providers.errors import ProviderNotFoundError
from providers.models import ProviderConfig
from providers.registry import get_provider
from providers.selectors import provider_config_models
from providers.services import apply_token, provider_config_check


class Command(BaseCommand):
    help = "List, create or update, and check provider configurations."
    # Lets tests hand in a stdin of their own through call_command.
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("list", help="Show every configuration.")

        set_parser = actions.add_parser("set", help="Create or update a configuration.")
        set_parser.add_argument("name")
        set_parser.add_argument(
            "--class", dest="provider_class", help="Provider class (needed to create)."
        )
        set_parser.add_argument("--api-base", dest="api_base")
        set_parser.add_argument("--model", dest="model", help="The default model.")
        set_parser.add_argument(
            "--token-stdin",
            action="store_true",
            help="Read the token from stdin (an empty input clears it).",
        )
        state = set_parser.add_mutually_exclusive_group()
        state.add_argument("--enable", dest="enabled", action="store_true", default=None)
        state.add_argument("--disable", dest="enabled", action="store_false")
        set_parser.add_argument(
            "--default", action="store_true", help="Make this the default configuration."
        )

        check_parser = actions.add_parser(
            "check", help="Make one tiny request per configuration and show the latency."
        )
        check_parser.add_argument("name", nargs="?")

    def handle(self, *args, **options):
        action = options["action"]
        if action == "list":
            self._list()
        elif action == "set":
            self._set(options)
        else:
            self._check(options.get("name"))

    def _list(self):
        configs = ProviderConfig.objects.order_by("sort_order", "name")
        if not configs:
            self.stdout.write("No provider configurations yet.")
            return
        for config in configs:
            flags = ("enabled" if config.enabled else "disabled") + (
                ", default" if config.is_default else ""
            )
            last = (
                "never checked"
                if config.last_check_ok is None
                else ("OK " if config.last_check_ok else "FAILED ") + config.last_check_detail
            )
            models = ", ".join(provider_config_models(config=config)) or "-"
            self.stdout.write(
                f"{config.name}\t{config.provider_class}\t{flags}\t"
                f"{config.api_base or '-'}\tmodels: {models}\ttoken: {token_hint(config)}\t{last}"
            )

    def _set(self, options):
        name = options["name"]
        provider_class = options.get("provider_class")
        if provider_class:
            try:
                get_provider(provider_class)
            except ProviderNotFoundError as exc:
                raise CommandError(str(exc)) from None
        token = None
        if options.get("token_stdin"):
            stdin = options.get("stdin") or sys.stdin
            token = stdin.read().strip()
        with transaction.atomic():
            config = ProviderConfig.objects.select_for_update().filter(name=name).first()
            created = config is None
            if created:
                if not provider_class:
                    raise CommandError(f"{name} does not exist yet: --class is needed.")
                config = ProviderConfig(name=name)
            if provider_class:
                config.provider_class = provider_class
            if options.get("api_base") is not None:
                config.api_base = options["api_base"]
            if options.get("model") is not None:
                config.default_model = options["model"]
            if options.get("enabled") is not None:
                config.enabled = options["enabled"]
            if options.get("default"):
                ProviderConfig.objects.exclude(pk=config.pk).filter(is_default=True).update(
                    is_default=False
                )
                config.is_default = True
            try:
                if token is not None:
                    apply_token(config=config, token=token)
                config.full_clean()
                config.save()
            except ValidationError as exc:
                raise CommandError(f"Invalid settings for {name}: {exc.messages}") from None
            except IntegrityError as exc:
                raise CommandError(f"Could not save {name}: {exc}") from None
        verb = "Created" if created else "Updated"
        self.stdout.write(f"{verb} {name} ({config.provider_class}), token: {token_hint(config)}")

    def _check(self, name):
        configs = ProviderConfig.objects.order_by("sort_order", "name")
        configs = configs.filter(name=name) if name else configs.filter(enabled=True)
        if name and not configs:
            raise CommandError(f"No configuration called {name}.")
        failed = []
        for config in configs:
            result = provider_config_check(config=config)
            if result.ok:
                self.stdout.write(f"{config.name}: {result.detail}")
            else:
                self.stdout.write(f"{config.name}: FAILED {result.detail}")
                failed.append(config.name)
        if failed:
            raise CommandError(f"Check failed for: {', '.join(failed)}")
