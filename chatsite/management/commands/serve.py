import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Start Daphne on BIND_ADDRESS:PORT (the settings), serving HTTP and WebSockets."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=None, help="Overrides the PORT setting.")

    def handle(self, *args, port=None, **options):
        port = port or settings.PORT
        # Answers left `streaming` by a process that died are marked interrupted (keeping their
        # last checkpoint) before anyone can open them and wait for a stream that will never come.
        from conversations.recovery import generation_recover_on_start

        interrupted = generation_recover_on_start()
        if interrupted:
            self.stdout.write(f"Marked {interrupted} unfinished answer(s) as interrupted.")
        self.stdout.write(f"Serving on http://{settings.BIND_ADDRESS}:{port}/", ending="\n")
        self.stdout.flush()
        # exec, not a child process: signals from the terminal or a supervisor reach Daphne itself.
        # Daphne, with request limits it has no options for (chatsite.server).
        argv = [sys.executable, "-m", "chatsite.server", "--bind", settings.BIND_ADDRESS]
        argv += ["--port", str(port), "chatsite.asgi:application"]
        os.execv(sys.executable, argv)
