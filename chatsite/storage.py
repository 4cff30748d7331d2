from django.contrib.staticfiles.storage import HashedFilesMixin
from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    """Hashed, compressed static files, with the imports between the script's ES modules
    rewritten to the hashed names too, so that each module is cached for a year like the rest
    and a new release never mixes old and new modules."""

    support_js_module_import_aggregation = True
    # Django rewrites imports in *.js only; the modules under js/ are *.mjs and import each
    # other, so the same rules apply to them (else a hashed module would import an unhashed one,
    # a second copy of it with its own state and a short cache). Two limits of Django's rules:
    # the modules must not depend on each other in a cycle (collectstatic fails), and the word
    # "import" followed by a space in a comment hides the next real import from the rewriting
    # (tests/browser/test_weight.py checks every module is reached under its hashed name).
    patterns = (
        *HashedFilesMixin.patterns,
        ("*.mjs", HashedFilesMixin._js_module_import_aggregation_patterns[1]),
    )
