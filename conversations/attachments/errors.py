from conversations.errors import ChatError


class AttachmentError(ChatError):
    """A file that cannot be attached, with the reason its user is told."""
