from django.apps import AppConfig


class MlopsConfig(AppConfig):
    name = "mlops"
    verbose_name = "Models"

    def ready(self) -> None:
        from . import registry, signals  # noqa: F401  (connects worker_process_init, registers the warmers)
