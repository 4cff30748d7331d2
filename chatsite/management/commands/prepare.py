from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Everything `make run` does before serving: migrate, create the Local provider (once a "
        "short test answer shows the local model runs here) and the first administrator when "
        "there are none, collect static files."
    )

    def handle(self, *args, **options):
        # One process for all four steps: each `manage.py` start costs about two seconds of
        # imports, and a second `make run` should start in seconds.
        call_command("migrate", interactive=False, verbosity=0)
        call_command("ensure_local_provider", stdout=self.stdout, stderr=self.stderr)
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("ensure_admin", stdout=self.stdout, stderr=self.stderr)
