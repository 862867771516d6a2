"""What every page of the services shares: vendored front-end libraries and the language catalogues."""
