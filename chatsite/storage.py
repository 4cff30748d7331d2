from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    """Hashed, compressed static files, with the imports between the script's ES modules
    rewritten to the hashed names too, so that each module is cached for a year like the rest
    and a new release never mixes old and new modules."""

    support_js_module_import_aggregation = True
