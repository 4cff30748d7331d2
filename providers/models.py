from django.db import models


class ProviderConfig(models.Model):
    """One configured upstream: a provider class plus its endpoint, token and limits."""

    name = models.SlugField(max_length=64, unique=True, help_text="Shown to users in the picker.")
    provider_class = models.CharField(
        max_length=64, help_text="Name of a provider class in providers.registry."
    )
    enabled = models.BooleanField(default=True)
    is_default = models.BooleanField(
        default=False, help_text="Used for new conversations when the user picks nothing."
    )
    api_base = models.CharField(
        max_length=500, blank=True, help_text="Overrides the provider's default origin."
    )
    # Fernet ciphertext (see providers.crypto); never the plain token. Not editable in forms: the
    # admin has its own write-only field.
    token_ciphertext = models.TextField(blank=True, default="", editable=False)
    token_last4 = models.CharField(max_length=4, blank=True, default="", editable=False)
    proxy = models.CharField(max_length=500, blank=True)
    default_model = models.CharField(max_length=200, blank=True)
    allowed_models = models.JSONField(
        default=list, blank=True, help_text="Models users may pick; empty means the default only."
    )
    options = models.JSONField(
        default=dict, blank=True, help_text="Extra keyword arguments for the provider class."
    )
    vision = models.BooleanField(
        default=False,
        help_text="The model reads images: users may attach PNG, JPEG, WebP and GIF files "
        "(sent as image_url content parts). Only for provider classes that support it.",
    )
    timeout = models.FloatField(default=60.0, help_text="Seconds.")
    sort_order = models.IntegerField(default=0)
    last_check_ok = models.BooleanField(null=True, editable=False)
    last_check_detail = models.CharField(max_length=300, blank=True, editable=False)
    last_check_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sort_order", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="providers_one_default_config",
            )
        ]

    def __str__(self) -> str:
        return self.name


class FallbackChain(models.Model):
    """An ordered list of configs: the next is tried when one fails before its first token."""

    name = models.SlugField(max_length=64, unique=True)
    enabled = models.BooleanField(default=True)
    members = models.ManyToManyField(ProviderConfig, through="FallbackChainMember")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class FallbackChainMember(models.Model):
    chain = models.ForeignKey(FallbackChain, on_delete=models.CASCADE, related_name="links")
    config = models.ForeignKey(ProviderConfig, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["chain", "config"], name="providers_chain_member_once")
        ]

    def __str__(self) -> str:
        return f"{self.chain_id}#{self.position}: {self.config_id}"


class ProviderAuthState(models.Model):
    """AsyncAuthedProvider's auth cache, shared by every server process (encrypted JSON)."""

    key = models.CharField(max_length=200, unique=True)
    ciphertext = models.TextField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.key
