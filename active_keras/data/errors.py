"""Errors raised for missing or malformed data."""


class MissingDataError(FileNotFoundError):
    """A data set's files are missing; the message says how to install them."""

    def __init__(self, dataset, path, debian_package):
        super().__init__(
            f"{dataset} not found: {path} does not exist. It comes from the Debian package "
            f"{debian_package!r}; install it with:\n"
            f"    apt-get update && apt-get install -y {debian_package}\n"
            "(as root, or with sudo)."
        )
        self.debian_package = debian_package
