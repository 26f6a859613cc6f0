"""The ``hififace`` command line."""
