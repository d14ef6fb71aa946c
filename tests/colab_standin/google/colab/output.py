"""Stands in for ``google.colab.output``, which Colab loads at kernel start (jax imports it from there)."""


def enable_custom_widget_manager() -> None:
    """On Colab: let third-party widgets render. Nothing to do without Colab's frontend."""


def disable_custom_widget_manager() -> None:
    """On Colab: back to the built-in widgets only. Nothing to do without Colab's frontend."""
