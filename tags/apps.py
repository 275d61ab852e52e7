from django.apps import AppConfig


class TagsConfig(AppConfig):
    name = "tags"
    verbose_name = "Ticket tags"

    def ready(self) -> None:
        from . import hooks  # noqa: F401  (scores tags in the routing micro-batch, see tags.hooks)
