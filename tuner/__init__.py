"""tuner: hyperparameter search for language models."""

__version__ = "0.1.0"


def version() -> str:
    """The installed version (from package metadata, which every kind of install has)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("tuner")
    except PackageNotFoundError:
        return __version__
